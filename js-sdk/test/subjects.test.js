import assert from "node:assert/strict";
import test from "node:test";

import { matches } from "../src/subjects.js";

test("literal subjects match only themselves", () => {
  assert.ok(matches("orders.order.created", "orders.order.created"));
  assert.ok(!matches("orders.order.created", "orders.order.updated"));
  assert.ok(!matches("orders.order", "orders.order.created"));
  assert.ok(!matches("orders.order.created", "orders.order"));
});

test("* matches one token, > the rest (at least one)", () => {
  assert.ok(matches("orders.*.created", "orders.order.created"));
  assert.ok(!matches("orders.*", "orders.order.created"));
  assert.ok(matches("orders.>", "orders.order.created"));
  assert.ok(matches("orders.>", "orders.x"));
  assert.ok(!matches("orders.>", "orders"));
  assert.ok(matches(">", "anything.at.all"));
});
