// Registering handlers and dispatching a message to one.
//
//   handler({ subject: "orders.order.created", decode: OrderCreated }, (order, msg) => ...)
//   handler({ subjects: ["orders.>", "payments.>"], raw: true }, (msg) => ...)
//
// A typed handler (the default) gets the payload parsed as JSON (see json.js)
// and, when `decode` is given, passed through it (see decode.js); a payload
// that does not parse or decode is a `PermanentError` and the function is not
// called. A raw handler gets the whole `Message`. The function returns an
// array of `Outgoing`, one `Outgoing`, or nothing; it may return a promise
// of one of those.
//
// A plugin may register several handlers: the component subscribes to every
// subject, and a message goes to the first handler whose subject matches it.
// With one handler, every message goes to it (the manifest's `subjects` may
// override the subscription).

import { PermanentError, TransientError } from "./errors.js";
import { parseJson } from "./json.js";
import { Message, outputs } from "./message.js";
import { matches } from "./subjects.js";

const OPTIONS = new Set(["subject", "subjects", "raw", "decode", "type"]);

/** A set of handlers and the dispatch of messages to them. */
export class Registry {
  constructor() {
    this.handlers = [];
    // subject -> the handler chosen for it (a message's subject is matched
    // against the patterns once, not on every message).
    this.chosen = new Map();
  }

  /** Registers `fn` for the subjects of `options` (see `handler`). */
  register(options, fn) {
    if (options === null || typeof options !== "object") {
      throw new TypeError("handler(options, fn): options must be an object such as { subject: \"orders.order.created\" }");
    }
    for (const key of Object.keys(options)) {
      if (!OPTIONS.has(key)) {
        throw new TypeError(`handler(options, fn): unknown option ${JSON.stringify(key)} (known: ${[...OPTIONS].join(", ")})`);
      }
    }
    if (typeof fn !== "function") {
      throw new TypeError("handler(options, fn): fn must be a function");
    }
    const subjects = [];
    for (const s of [options.subject, options.subjects].flat()) {
      if (s === undefined) continue;
      if (typeof s !== "string" || s === "") {
        throw new TypeError(`handler ${fn.name || "(anonymous)"}: a subject must be a non-empty string, not ${JSON.stringify(s)}`);
      }
      subjects.push(s);
    }
    if (subjects.length === 0) {
      throw new TypeError(`handler ${fn.name || "(anonymous)"} has no subject: give { subject: "..." } or { subjects: [...] }`);
    }
    if (options.decode !== undefined && typeof options.decode !== "function") {
      throw new TypeError(`handler ${fn.name || "(anonymous)"}: decode must be a function`);
    }
    if (options.raw && options.decode) {
      throw new TypeError(`handler ${fn.name || "(anonymous)"}: a raw handler takes the whole message; it has no decode`);
    }
    const decode = options.decode;
    this.chosen.clear();
    this.handlers.push({
      subjects,
      fn,
      raw: Boolean(options.raw),
      decode,
      typeName: options.type ?? decode?.typeName ?? (decode?.name || "JSON"),
    });
    return fn;
  }

  /** The subjects the component asks for, each once, in order. */
  subscriptions() {
    const seen = [];
    for (const h of this.handlers) {
      for (const s of h.subjects) if (!seen.includes(s)) seen.push(s);
    }
    return seen;
  }

  /** The handler for `subject`: the only one, else the first that matches. */
  choose(subject) {
    if (this.handlers.length === 1) return this.handlers[0];
    let chosen = this.chosen.get(subject);
    if (chosen === undefined) {
      chosen = this.handlers.find((h) => h.subjects.some((p) => matches(p, subject))) ?? null;
      if (this.chosen.size >= 1024) this.chosen.clear();
      this.chosen.set(subject, chosen);
    }
    return chosen ?? undefined;
  }

  /**
   * Runs the handler of `msg` (a `Message`) and returns what it returned
   * (or a promise of it). Throws `PermanentError` for a message no handler
   * takes or a payload that does not decode; whatever the function throws
   * propagates.
   */
  dispatch(msg) {
    const chosen = this.choose(msg.subject);
    if (!chosen) throw new PermanentError(`no handler for subject ${msg.subject}`);
    if (chosen.raw) return chosen.fn(msg);
    let value;
    try {
      value = parseJson(msg.payload);
      if (chosen.decode) value = chosen.decode(value);
    } catch (err) {
      const why = err && err.message ? err.message : String(err);
      throw new PermanentError(`payload does not decode as ${chosen.typeName}: ${why}`);
    }
    return chosen.fn(value, msg);
  }

  /**
   * The world's `handle` over this registry: `wire` is the message as the
   * bindings pass it. Returns `{tag: "ok", val: outgoing[]}` or `{tag:
   * "err", val: {tag: "transient" | "permanent", val}}` (or a promise of
   * one, for an async handler). Any other exception goes to `crash(err)`,
   * whose return value is returned instead (in a component, it reports the
   * exception and makes the call trap; see trap.js).
   */
  handle(wire, crash) {
    let result;
    try {
      const msg = new Message(wire.subject, wire.headers, wire.payload, wire.replyTo, wire.attempt);
      result = this.dispatch(msg);
      if (result && typeof result.then === "function") {
        return Promise.resolve(result).then(
          (value) => this.done(value, crash),
          (err) => failed(err, crash),
        );
      }
    } catch (err) {
      return failed(err, crash);
    }
    return this.done(result, crash);
  }

  /** The result of a handler that returned `result`. */
  done(result, crash) {
    try {
      return { tag: "ok", val: outputs(result) };
    } catch (err) {
      return crash(err);
    }
  }
}

/** The result of a handler that threw `err`. */
function failed(err, crash) {
  const kind = errorKind(err);
  if (kind) return { tag: "err", val: { tag: kind, val: err.message } };
  return crash(err);
}

/** `"transient"`, `"permanent"`, or `undefined` for any other exception. */
export function errorKind(err) {
  if (err instanceof TransientError) return "transient";
  if (err instanceof PermanentError) return "permanent";
  return undefined;
}
