import assert from "node:assert/strict";
import test from "node:test";

import { format } from "../src/format.js";

test("formats like util.format", () => {
  assert.equal(format("order %s: %d cents", "o-1", 6499), "order o-1: 6499 cents");
  assert.equal(format("%i%% of %f", 42.9, "1.5"), "42% of 1.5");
  assert.equal(format("value %j", { a: [1] }), 'value {"a":[1]}');
  assert.equal(format("extra", 1, "two", { three: 3 }), 'extra 1 two {"three":3}');
  assert.equal(format("missing %s"), "missing %s");
  assert.equal(format("100%% kept alone"), "100%% kept alone", "one argument is written as it is");
  assert.equal(format({ a: 1 }, 2), '{"a":1} 2');
  assert.equal(format("e: %s", new TypeError("bad")), "e: TypeError: bad");
});
