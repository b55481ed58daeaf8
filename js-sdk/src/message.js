// The messages a handler receives (`Message`) and publishes (`Outgoing`).

import { PermanentError } from "./errors.js";
import { DecodeError, parseJson } from "./json.js";

const encoder = new TextEncoder();
const lenientUtf8 = new TextDecoder("utf-8");

/** `value` (a string, `Uint8Array`, `ArrayBuffer`, other typed array, or
 * nothing) as bytes. */
export function toBytes(value, what = "payload") {
  if (value === undefined || value === null) return new Uint8Array(0);
  if (typeof value === "string") return encoder.encode(value);
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  throw new TypeError(
    `${what} must be a string, a Uint8Array or an ArrayBuffer, not ${describeType(value)}`,
  );
}

function describeType(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return value.constructor?.name ?? "an object";
  return typeof value;
}

/** One delivery of one message. */
export class Message {
  /**
   * @param {string} subject the NATS subject it was published to
   * @param {[string, string][]} headers in the order they arrived
   * @param {Uint8Array} payload the body, exactly as published
   * @param {string | undefined} replyTo where a requester waits, if any
   * @param {number} attempt 1 on the first delivery, 2 on the first retry...
   */
  constructor(subject, headers = [], payload = new Uint8Array(0), replyTo = undefined, attempt = 1) {
    this.subject = subject;
    this.headers = headers;
    this.payload = toBytes(payload);
    this.replyTo = replyTo ?? undefined;
    this.attempt = attempt;
  }

  /** The first value of header `name` (compared without case), or `undefined`. */
  header(name) {
    const wanted = name.toLowerCase();
    for (const [key, value] of this.headers) {
      if (key.toLowerCase() === wanted) return value;
    }
    return undefined;
  }

  /** The payload as text (invalid UTF-8 becomes U+FFFD). */
  text() {
    return lenientUtf8.decode(this.payload);
  }

  /** The payload decoded as JSON (a `PermanentError` when it is not). */
  json() {
    try {
      return parseJson(this.payload);
    } catch (err) {
      if (err instanceof DecodeError) throw new PermanentError(`payload is ${err.message}`);
      throw err;
    }
  }
}

/** A message to publish if, and only if, the handler succeeds. */
export class Outgoing {
  /**
   * @param {string} subject where to publish
   * @param {string | Uint8Array | ArrayBuffer} [payload] the body (a string is UTF-8)
   * @param {[string, string][]} [headers]
   */
  constructor(subject, payload = new Uint8Array(0), headers = []) {
    if (typeof subject !== "string") {
      throw new TypeError(`an Outgoing's subject must be a string, not ${describeType(subject)}`);
    }
    this.subject = subject;
    this.payload = toBytes(payload, `the payload of the Outgoing to ${subject}`);
    this.headers = checkHeaders(headers, subject);
  }

  /**
   * `value` encoded as compact JSON, with `content-type: application/json`
   * unless `headers` names one. A value JSON cannot encode (a BigInt, a
   * cycle, `undefined`) is a `PermanentError`.
   */
  static json(subject, value, headers = []) {
    let payload;
    try {
      payload = encodeJson(value);
    } catch (err) {
      throw new PermanentError(`cannot encode the output as JSON: ${err && err.message ? err.message : err}`);
    }
    const all = [...headers];
    if (!all.some(([k]) => k.toLowerCase() === "content-type")) {
      all.push(["content-type", "application/json"]);
    }
    return new Outgoing(subject, payload, all);
  }
}

/** Compact JSON bytes (as serde_json writes them). */
export function encodeJson(value) {
  const text = JSON.stringify(value);
  if (text === undefined) {
    throw new TypeError(`${value === undefined ? "undefined" : typeof value} is not JSON`);
  }
  return encoder.encode(text);
}

/**
 * A handler's return value as a list of outgoing messages: an array of
 * them, one, or `undefined`/`null` for none. Plain objects of the same shape
 * (`{subject, payload, headers}`) are taken too. Anything else is a
 * `TypeError` (a crash, as a Rust type error would not compile).
 */
export function outputs(result, name = "handler") {
  if (result === undefined || result === null) return [];
  if (result instanceof Outgoing) return [result];
  const list = Array.isArray(result) ? result : [result];
  let plain = false;
  for (let i = 0; i < list.length; i++) {
    if (!(list[i] instanceof Outgoing)) {
      plain = true;
      break;
    }
  }
  // Outgoing's constructor checked its parts already.
  if (!plain) return list;
  return list.map((o, i) => {
    if (o instanceof Outgoing) return o;
    if (o === null || typeof o !== "object" || typeof o.subject !== "string") {
      throw new TypeError(
        `${name} returned ${Array.isArray(result) ? `an array whose item ${i} is ` : ""}` +
          `${describeType(o)}: return an array of Outgoing, one Outgoing, or nothing`,
      );
    }
    return new Outgoing(o.subject, o.payload, o.headers ?? []);
  });
}

/** `headers`, checked to be an array of [name, value] string pairs. */
function checkHeaders(headers, subject) {
  if (!Array.isArray(headers)) {
    throw new TypeError(`the headers of the Outgoing to ${subject} are not an array of [name, value] string pairs`);
  }
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i];
    if (!Array.isArray(h) || h.length !== 2 || typeof h[0] !== "string" || typeof h[1] !== "string") {
      throw new TypeError(`the headers of the Outgoing to ${subject} are not an array of [name, value] string pairs`);
    }
  }
  return headers;
}
