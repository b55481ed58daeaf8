// parseJson accepts and refuses what serde_json does (the Rust SDK, the
// Rust audit): each case here was checked against serde_json 1.
import assert from "node:assert/strict";
import test from "node:test";

import { DecodeError, MAX_DEPTH, parseJson, parseJsonText } from "../src/json.js";

const bytes = (s) => new TextEncoder().encode(s);

test("parses JSON values", () => {
  assert.deepEqual(parseJson(bytes(' {"event_id":"e-7","n":[1,2.5,-3e2]}\n')), {
    event_id: "e-7",
    n: [1, 2.5, -300],
  });
  assert.equal(parseJson(bytes('"\\ud83d\\ude00"')), "😀");
  assert.equal(parseJson(bytes("1e-400")), 0);
  assert.deepEqual(parseJson(bytes('{"a":1,"a":2}')), { a: 2 });
});

test("refuses what is not UTF-8, or starts with a byte-order mark", () => {
  assert.throws(() => parseJson(new Uint8Array([0x7b, 0xff, 0x7d])), DecodeError);
  assert.throws(() => parseJson(new Uint8Array([0xef, 0xbb, 0xbf, 0x31])), /not JSON/);
  assert.equal(parseJson(bytes('"\u00ff"')), "\u00ff", "valid UTF-8 parses");
});

test("refuses malformed JSON", () => {
  for (const text of ["", "{", "{'a':1}", "[1,]", "01", "NaN", "1 2", '{"a":1}x', '"\u0001"']) {
    assert.throws(() => parseJsonText(text), DecodeError, JSON.stringify(text));
  }
});

test("refuses nesting deeper than serde_json's limit", () => {
  const nest = (n) => "[".repeat(n) + "]".repeat(n);
  assert.deepEqual(parseJsonText(nest(MAX_DEPTH)).length, 1);
  assert.throws(() => parseJsonText(nest(MAX_DEPTH + 1)), /recursion limit/);
  const objects = (n) => '{"a":'.repeat(n) + "1" + "}".repeat(n);
  parseJsonText(objects(MAX_DEPTH));
  assert.throws(() => parseJsonText(objects(MAX_DEPTH + 1)), /recursion limit/);
  // Brackets inside strings do not count.
  parseJsonText(JSON.stringify("[".repeat(500)));
});

test("refuses lone surrogates in escapes", () => {
  assert.throws(() => parseJsonText('"\\ud800"'), /lone leading surrogate/);
  assert.throws(() => parseJsonText('"\\ud800x"'), /lone leading surrogate/);
  assert.throws(() => parseJsonText('"\\ud800\\u0041"'), /lone leading surrogate/);
  assert.throws(() => parseJsonText('{"k\\udc00":1}'), /lone trailing surrogate/);
  assert.equal(parseJsonText('"\\\\ud800"'), "\\ud800", "an escaped backslash is not an escape");
});

test("refuses numbers out of a double's range", () => {
  assert.throws(() => parseJsonText("1e400"), /out of range/);
  assert.throws(() => parseJsonText('{"n":-1e309}'), /out of range/);
  assert.equal(parseJsonText("1" + "0".repeat(30)), 1e30);
});
