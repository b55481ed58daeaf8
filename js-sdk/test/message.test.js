import assert from "node:assert/strict";
import test from "node:test";

import { PermanentError } from "../src/errors.js";
import { Message, Outgoing, encodeJson, outputs, toBytes } from "../src/message.js";

const text = (b) => new TextDecoder().decode(b);

test("Outgoing.json writes compact JSON with a content-type", () => {
  const out = Outgoing.json("payments.payment.completed", { order_id: "o-1", amount_cents: 6499, ok: true, n: null });
  assert.equal(out.subject, "payments.payment.completed");
  assert.equal(text(out.payload), '{"order_id":"o-1","amount_cents":6499,"ok":true,"n":null}');
  assert.deepEqual(out.headers, [["content-type", "application/json"]]);
});

test("Outgoing.json keeps a content-type it is given, and other headers", () => {
  const out = Outgoing.json("a.b", [1], [["x-a", "1"], ["Content-Type", "application/cloudevents+json"]]);
  assert.deepEqual(out.headers, [["x-a", "1"], ["Content-Type", "application/cloudevents+json"]]);
});

test("what JSON cannot encode is a PermanentError", () => {
  assert.throws(() => Outgoing.json("a.b", 1n), PermanentError);
  assert.throws(() => Outgoing.json("a.b", undefined), PermanentError);
  const cycle = {};
  cycle.self = cycle;
  assert.throws(() => Outgoing.json("a.b", cycle), /cannot encode the output as JSON/);
  assert.equal(text(encodeJson({ x: NaN })), '{"x":null}', "like serde_json, NaN is null");
});

test("payloads may be strings, bytes or buffers", () => {
  assert.equal(text(new Outgoing("a", "héllo").payload), "héllo");
  assert.deepEqual(new Outgoing("a").payload, new Uint8Array(0));
  assert.deepEqual(toBytes(new Uint8Array([1, 2]).buffer), new Uint8Array([1, 2]));
  assert.deepEqual(toBytes(new Uint16Array([0x0201])), new Uint8Array([1, 2]));
  assert.throws(() => toBytes(42), /must be a string, a Uint8Array or an ArrayBuffer, not number/);
});

test("Message: headers without case, text and JSON", () => {
  const msg = new Message("orders.order.created", [["X-A", "1"], ["x-a", "2"]], new TextEncoder().encode('{"a":1}'), undefined, 2);
  assert.equal(msg.header("x-a"), "1");
  assert.equal(msg.header("missing"), undefined);
  assert.equal(msg.text(), '{"a":1}');
  assert.deepEqual(msg.json(), { a: 1 });
  assert.equal(msg.attempt, 2);
  const bad = new Message("s", [], new Uint8Array([0xff]));
  assert.throws(() => bad.json(), (e) => e instanceof PermanentError && /payload is not JSON/.test(e.message));
});

test("outputs: an array, one, or nothing; plain objects of the same shape", () => {
  assert.deepEqual(outputs(undefined), []);
  assert.deepEqual(outputs(null), []);
  const one = new Outgoing("a.b", "x");
  assert.deepEqual(outputs(one), [one]);
  const two = [one, new Outgoing("c.d")];
  assert.equal(outputs(two), two, "an array of Outgoing is taken as it is");
  assert.deepEqual(outputs([{ subject: "c.d", payload: "y" }]), [new Outgoing("c.d", "y", [])]);
  assert.throws(() => outputs("a.b"), /returned string/);
  assert.throws(() => outputs([one, 5]), /item 1 is number/);
  assert.throws(() => outputs({ subject: "a", headers: [["k"]] }), /headers of the Outgoing to a are not/);
  assert.throws(() => new Outgoing("a", "x", [["k", 1]]), /headers of the Outgoing to a are not/);
  assert.throws(() => new Outgoing(5), /subject must be a string, not number/);
  assert.throws(() => new Outgoing("a", 5), /the payload of the Outgoing to a must be a string/);
});
