// The JavaScript audit's line is the Rust audit's (plugins/audit/src/lib.rs
// has the same two cases); the end-to-end test compares both on more payloads.
import assert from "node:assert/strict";
import test from "node:test";

import { describe } from "../describe.js";

const msg = (payload) => ({
  subject: "orders.order.created",
  payload: typeof payload === "string" ? new TextEncoder().encode(payload) : payload,
});

test("describes JSON and non-JSON events", () => {
  assert.equal(describe(msg('{"event_id":"e-7"}')), "audit orders.order.created (18 bytes) event_id=e-7");
  assert.equal(describe(msg(new Uint8Array([0xff, 0x00]))), "audit orders.order.created (2 bytes)");
});

test("only a string event_id of a JSON object counts", () => {
  assert.equal(describe(msg('{"event_id":42}')), "audit orders.order.created (15 bytes)");
  assert.equal(describe(msg('["event_id"]')), "audit orders.order.created (12 bytes)");
  assert.equal(describe(msg("null")), "audit orders.order.created (4 bytes)");
  assert.equal(describe(msg("")), "audit orders.order.created (0 bytes)");
  assert.equal(describe(msg('{"event_id":"é"}')), "audit orders.order.created (17 bytes) event_id=é");
});

test("what serde_json refuses has no event_id", () => {
  assert.equal(describe(msg('\ufeff{"event_id":"a"}')), "audit orders.order.created (19 bytes)");
  assert.equal(describe(msg('{"event_id":"a","x":"\\ud800"}')), "audit orders.order.created (29 bytes)");
  assert.equal(describe(msg('{"event_id":"a","n":1e400}')), "audit orders.order.created (26 bytes)");
});
