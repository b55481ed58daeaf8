// Outbound HTTP for handlers: `fetch` with evhost's rules, to the destinations
// the plugin's manifest grants (`[capabilities] http`). The component must
// import wasi:http (built without componentize-js's `-d http`).
//
//   const charge = await http.post(`${url}/charges`, { json: { order_id } });
//   charge.errorForStatus();       // 5xx, 408 and 429 transient, other 4xx permanent
//   const { charge_id } = charge.json();
//
// Every request but GET, HEAD and OPTIONS carries the message's idempotency
// key as `Idempotency-Key` unless the caller sets one or passes
// `idempotencyKey: false`. A fetch that fails (the host refused the
// destination, or no connection: fetch does not say which) is a
// `TransientError`; the host logs a refused destination.

import { PermanentError, TransientError } from "./errors.js";
import { DecodeError, parseJson } from "./json.js";
import { encodeJson } from "./message.js";

/** Methods that send no idempotency key by default: safe to repeat anyway. */
const SAFE_METHODS = ["GET", "HEAD", "OPTIONS"];

/**
 * The request's headers: the caller's (an object or `[name, value]` pairs),
 * then `content-type` when the body has one and the caller set none, and
 * `idempotency-key` (`key`) for an unsafe method unless the caller set it.
 */
export function headersToSend(method, headers, contentType, key) {
  const sent = Array.isArray(headers) ? headers.map(([k, v]) => [k, String(v)]) : Object.entries(headers ?? {}).map(([k, v]) => [k, String(v)]);
  const names = new Set(sent.map(([k]) => k.toLowerCase()));
  if (contentType !== undefined && !names.has("content-type")) sent.push(["content-type", contentType]);
  if (key && !SAFE_METHODS.includes(method.toUpperCase()) && !names.has("idempotency-key")) {
    sent.push(["idempotency-key", key]);
  }
  return sent;
}

/** The handler error for an answer with `status`, if it is one. */
export function statusError(status, bodyText) {
  if (status < 400) return undefined;
  const text = (bodyText ?? "").slice(0, 200);
  const message = text ? `HTTP ${status}: ${text}` : `HTTP ${status}`;
  return status >= 500 || status === 408 || status === 429 ? new TransientError(message) : new PermanentError(message);
}

/** What the server answered: `status`, `headers` (`[name, value]` pairs) and the whole `body`. */
export class Response {
  constructor(status, headers, body) {
    this.status = status;
    this.headers = headers;
    this.body = body;
  }

  /** The first value of header `name` (any case), or `undefined`. */
  header(name) {
    const lowered = name.toLowerCase();
    const found = this.headers.find(([k]) => k.toLowerCase() === lowered);
    return found === undefined ? undefined : found[1];
  }

  /** The body as UTF-8 (a `PermanentError` when it is not). */
  text() {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(this.body);
    } catch {
      throw new PermanentError("HTTP response body is not UTF-8");
    }
  }

  /** The body parsed as JSON (a `PermanentError` when it does not parse). */
  json() {
    try {
      return parseJson(this.body);
    } catch (err) {
      if (err instanceof DecodeError) throw new PermanentError(`HTTP response body is not JSON: ${err.message}`);
      throw err;
    }
  }

  /** A 2xx status. */
  isSuccess() {
    return this.status >= 200 && this.status < 300;
  }

  /** This response when it is below 400; else throws (see `statusError`). */
  errorForStatus() {
    const error = statusError(this.status, new TextDecoder().decode(this.body));
    if (error !== undefined) throw error;
    return this;
  }
}

/**
 * The SDK's `http`, sending `keyOf()` (the message's idempotency key) as
 * `Idempotency-Key`: `request(method, url, options)` and `get`, `post`,
 * `put`, `delete`. Options: `headers`, `body` (a string or bytes) or `json`,
 * `idempotencyKey: false`.
 */
export function createHttp(keyOf) {
  async function request(method, url, options = {}) {
    let { body } = options;
    let contentType;
    if (options.json !== undefined) {
      if (body !== undefined) throw new PermanentError("invalid HTTP request: give body or json, not both");
      try {
        body = encodeJson(options.json);
      } catch (err) {
        throw new PermanentError(`invalid HTTP request: the body does not encode as JSON: ${err.message}`);
      }
      contentType = "application/json";
    }
    const key = options.idempotencyKey === false ? undefined : keyOf();
    const headers = headersToSend(method, options.headers, contentType, key);
    let res;
    try {
      res = await fetch(url, { method: method.toUpperCase(), headers, body });
    } catch (err) {
      throw new TransientError(`HTTP ${method.toUpperCase()} ${url} failed: ${err.message}`);
    }
    let bytes;
    try {
      bytes = new Uint8Array(await res.arrayBuffer());
    } catch (err) {
      // The body broke off, or is over the host's `http_max_response_bytes`.
      throw new TransientError(`HTTP ${method.toUpperCase()} ${url} failed reading the answer: ${err.message}`);
    }
    return new Response(res.status, [...res.headers.entries()], bytes);
  }
  return {
    request,
    get: (url, options) => request("GET", url, options),
    post: (url, options) => request("POST", url, options),
    put: (url, options) => request("PUT", url, options),
    delete: (url, options) => request("DELETE", url, options),
  };
}
