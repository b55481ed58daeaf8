import assert from "node:assert/strict";
import test from "node:test";

import { t } from "../src/decode.js";
import { PermanentError, TransientError } from "../src/errors.js";
import { Message, Outgoing } from "../src/message.js";
import { Registry } from "../src/registry.js";

const enc = (s) => new TextEncoder().encode(s);
const wire = (subject, payload, attempt = 1) => ({ subject, headers: [["h", "v"]], payload: enc(payload), replyTo: undefined, attempt });
const noCrash = (err) => {
  throw new Error(`unexpected crash: ${err}`);
};

test("subscriptions: every handler's subjects, each once, in order", () => {
  const r = new Registry();
  r.register({ subject: "a.b" }, () => {});
  r.register({ subjects: ["c.>", "a.b"] }, () => {});
  assert.deepEqual(r.subscriptions(), ["a.b", "c.>"]);
});

test("register refuses what cannot work, at build time", () => {
  const r = new Registry();
  assert.throws(() => r.register({}, () => {}), /has no subject/);
  assert.throws(() => r.register({ subject: "" }, () => {}), /non-empty string/);
  assert.throws(() => r.register({ subject: "a", subjet: "b" }, () => {}), /unknown option "subjet"/);
  assert.throws(() => r.register({ subject: "a" }), /fn must be a function/);
  assert.throws(() => r.register({ subject: "a", raw: true, decode: t.any }, () => {}), /raw handler/);
  assert.throws(() => r.register("a.b", () => {}), /options must be an object/);
});

test("a typed handler gets the decoded payload and the message", () => {
  const r = new Registry();
  let seen;
  r.register({ subject: "orders.order.created", decode: t.object({ id: t.string }, "Order") }, (order, msg) => {
    seen = [order, msg];
    return Outgoing.json("out.x", { id: order.id });
  });
  const res = r.handle(wire("orders.order.created", '{"id":"o-1","x":1}', 3), noCrash);
  assert.equal(res.tag, "ok");
  assert.equal(res.val.length, 1);
  assert.equal(new TextDecoder().decode(res.val[0].payload), '{"id":"o-1"}');
  assert.deepEqual(seen[0], { id: "o-1" });
  assert.ok(seen[1] instanceof Message);
  assert.equal(seen[1].attempt, 3);
  assert.equal(seen[1].header("H"), "v");
});

test("a payload that does not decode is permanent, and the function is not called", () => {
  const r = new Registry();
  let called = false;
  r.register({ subject: "x", decode: t.object({ id: t.string }, "Order") }, () => {
    called = true;
  });
  for (const [payload, why] of [
    ["{not json", "payload does not decode as Order: not JSON: "],
    ['{"ID":"x"}', "payload does not decode as Order: missing field `id`"],
    ["[[".repeat(64) + "]]".repeat(64), "payload does not decode as Order: not JSON: recursion limit exceeded"],
  ]) {
    const res = r.handle(wire("x", payload), noCrash);
    assert.equal(res.tag, "err");
    assert.equal(res.val.tag, "permanent");
    assert.ok(res.val.val.startsWith(why), res.val.val);
  }
  assert.equal(called, false);
});

test("without decode, any JSON is taken; a decode function's own errors are decode errors", () => {
  const r = new Registry();
  r.register({ subject: "a", decode: function parseThing(v) { if (!v.ok) throw new Error("not ok"); return v; } }, (v) => Outgoing.json("a.out", v));
  r.register({ subject: "b" }, (v) => Outgoing.json("b.out", v));
  assert.equal(r.handle(wire("a", '{"ok":false}'), noCrash).val.val, "payload does not decode as parseThing: not ok");
  assert.equal(r.handle(wire("b", "[1, 2]"), noCrash).val[0].subject, "b.out");
  assert.match(r.handle(wire("b", "\u00ff"), noCrash).val.val, /^payload does not decode as JSON: not JSON/);
});

test("a raw handler gets the whole message, whatever its payload", () => {
  const r = new Registry();
  r.register({ subject: "x", raw: true }, (msg) => new Outgoing("x.out", msg.payload, [["n", String(msg.payload.length)]]));
  const res = r.handle({ subject: "x", headers: [], payload: new Uint8Array([0xff, 0]), attempt: 1 }, noCrash);
  assert.deepEqual(res.val[0].payload, new Uint8Array([0xff, 0]));
  assert.deepEqual(res.val[0].headers, [["n", "2"]]);
});

test("several handlers: the first that matches; none is permanent", () => {
  const r = new Registry();
  r.register({ subject: "a.*", raw: true }, () => new Outgoing("first"));
  r.register({ subject: "a.b", raw: true }, () => new Outgoing("second"));
  r.register({ subject: "c.>", raw: true }, () => new Outgoing("third"));
  assert.equal(r.handle(wire("a.b", ""), noCrash).val[0].subject, "first");
  assert.equal(r.handle(wire("c.d.e", ""), noCrash).val[0].subject, "third");
  assert.deepEqual(r.handle(wire("z", ""), noCrash).val, { tag: "permanent", val: "no handler for subject z" });
});

test("with one handler, every message goes to it", () => {
  const r = new Registry();
  r.register({ subject: "a", raw: true }, (m) => new Outgoing(`${m.subject}.out`));
  assert.equal(r.handle(wire("other", ""), noCrash).val[0].subject, "other.out");
});

test("TransientError and PermanentError become handler errors; anything else crashes", () => {
  const r = new Registry();
  r.register({ subject: "x", raw: true }, (msg) => {
    const text = msg.text();
    if (text === "t") throw new TransientError("busy");
    if (text === "p") throw new PermanentError("never");
    if (text === "bad-return") return 42;
    throw new RangeError("boom");
  });
  assert.deepEqual(r.handle(wire("x", "t"), noCrash), { tag: "err", val: { tag: "transient", val: "busy" } });
  assert.deepEqual(r.handle(wire("x", "p"), noCrash), { tag: "err", val: { tag: "permanent", val: "never" } });
  const crashed = [];
  const trap = (err) => {
    crashed.push(err);
    return "trapped";
  };
  assert.equal(r.handle(wire("x", "boom"), trap), "trapped");
  assert.equal(r.handle(wire("x", "bad-return"), trap), "trapped");
  assert.ok(crashed[0] instanceof RangeError);
  assert.match(String(crashed[1]), /returned number/);
});

test("an async handler's result and errors are handled the same", async () => {
  const r = new Registry();
  r.register({ subject: "x", raw: true }, async (msg) => {
    const text = msg.text();
    if (text === "t") throw new TransientError("later");
    if (text === "boom") throw new Error("async boom");
    return new Outgoing("x.out", text);
  });
  const ok = await r.handle(wire("x", "hi"), noCrash);
  assert.equal(ok.tag, "ok");
  assert.equal(new TextDecoder().decode(ok.val[0].payload), "hi");
  assert.deepEqual(await r.handle(wire("x", "t"), noCrash), { tag: "err", val: { tag: "transient", val: "later" } });
  assert.equal(await r.handle(wire("x", "boom"), (e) => `trapped: ${e.message}`), "trapped: async boom");
});
