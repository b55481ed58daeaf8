// The pure parts of `http.js`: the headers sent, how statuses become handler
// errors, reading a response. (Sending goes through the host's wasi:http;
// tests/tests/javascript.rs sends through it to a real server.)
import assert from "node:assert/strict";
import test from "node:test";

import { PermanentError, TransientError } from "../src/errors.js";
import { Response, headersToSend, statusError } from "../src/http.js";

const bytes = (s) => new TextEncoder().encode(s);

test("the idempotency key goes on unsafe methods unless set", () => {
  assert.deepEqual(headersToSend("post", { accept: "*/*" }, "application/json", "p:1"), [
    ["accept", "*/*"],
    ["content-type", "application/json"],
    ["idempotency-key", "p:1"],
  ]);
  assert.deepEqual(headersToSend("GET", undefined, undefined, "p:1"), []);
  assert.deepEqual(headersToSend("PUT", [["Idempotency-Key", "mine"]], undefined, "p:1"), [["Idempotency-Key", "mine"]]);
  assert.deepEqual(headersToSend("DELETE", {}, undefined, undefined), []);
  assert.deepEqual(headersToSend("POST", { "Content-Type": "text/plain" }, "application/json", undefined), [["Content-Type", "text/plain"]]);
});

test("statuses sort into transient and permanent", () => {
  assert.equal(statusError(200, ""), undefined);
  assert.equal(statusError(302, ""), undefined);
  for (const status of [500, 503, 408, 429]) assert.ok(statusError(status, "busy") instanceof TransientError, String(status));
  for (const status of [400, 402, 404]) assert.ok(statusError(status, "no") instanceof PermanentError, String(status));
  assert.equal(statusError(402, "declined").message, "HTTP 402: declined");
});

test("a response reads as text, JSON and by header", () => {
  const ok = new Response(201, [["Content-Type", "application/json"]], bytes('{"id":1}'));
  assert.equal(ok.errorForStatus(), ok);
  assert.equal(ok.header("content-type"), "application/json");
  assert.deepEqual(ok.json(), { id: 1 });
  assert.ok(ok.isSuccess());
  assert.throws(() => new Response(503, [], bytes("down")).errorForStatus(), TransientError);
  assert.throws(() => new Response(200, [], new Uint8Array([0xff])).text(), PermanentError);
  assert.throws(() => new Response(200, [], bytes("{")).json(), PermanentError);
});
