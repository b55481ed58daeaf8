import assert from "node:assert/strict";
import test from "node:test";

import { describe, frames, location, report } from "../src/crash.js";

class DeliberateCrash extends Error {}
class Named extends Error {
  constructor(m) {
    super(m);
    this.name = "NamedError";
  }
}

test("describe: the exception's name and message, on one line", () => {
  assert.equal(describe(new TypeError("x is\nundefined")), "TypeError: x is undefined");
  assert.equal(describe(new DeliberateCrash("boom")), "DeliberateCrash: boom");
  assert.equal(describe(new Named("n")), "NamedError: n");
  assert.equal(describe(new Error("")), "Error");
  assert.equal(describe("a string"), 'uncaught exception: "a string"');
  assert.equal(describe({ code: 7 }), 'uncaught exception: {"code":7}');
  assert.equal(describe(undefined), "uncaught exception: undefined");
});

test("location: the first frame of SpiderMonkey's or V8's stack that is no constructor", () => {
  const sm = new Error("x");
  sm.stack = "echo@tests/plugins-js/echo-js/echo.js:42:13\ndispatch@js-sdk/src/registry.js:90:12\n";
  assert.deepEqual(frames(sm), [
    { fn: "echo", at: "tests/plugins-js/echo-js/echo.js:42:13" },
    { fn: "dispatch", at: "js-sdk/src/registry.js:90:12" },
  ]);
  assert.equal(location(sm), "tests/plugins-js/echo-js/echo.js:42:13");
  const anonymous = new Error("x");
  anonymous.stack = "@app.js:3:9\n";
  assert.equal(location(anonymous), "app.js:3:9");
  const constructed = new DeliberateCrash("boom");
  constructed.stack = "DeliberateCrash@echo.js:28:8\necho@echo.js:47:13\n";
  assert.equal(location(constructed), "echo.js:47:13", "the class's constructor is not where it was thrown");
  const v8 = new Error("x");
  v8.stack = "Error: x\n    at new Named (file:///a/app.js:5:5)\n    at run (file:///a/app.js:9:11)\n    at file:///a/app.js:12:1";
  assert.deepEqual(frames(v8).map((f) => f.fn), ["Named", "run", ""]);
  assert.match(location(new Error("here")), /crash\.test\.js:\d+:\d+$/);
  assert.equal(location("thrown string"), "<unknown>");
});

test("report: the stack, then the panic lines evhost quotes", () => {
  const e = new DeliberateCrash("deliberate crash in echo-js v1");
  e.stack = "echo@echo.js:42:13\n";
  assert.equal(
    report(e),
    "Uncaught DeliberateCrash: deliberate crash in echo-js v1\necho@echo.js:42:13\n" +
      "thread '<unnamed>' panicked at echo.js:42:13:\nDeliberateCrash: deliberate crash in echo-js v1\n",
  );
  assert.equal(report(42), "thread '<unnamed>' panicked at <unknown>:\nuncaught exception: 42\n");
});
