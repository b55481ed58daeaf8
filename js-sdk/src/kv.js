// Key-value state: JSON values in a bucket the plugin's manifest grants
// (`[capabilities] keyvalue = ["stock"]`), shared by every host and kept
// across restarts (evhost backs buckets with NATS JetStream).
//
//   const stock = Bucket.open("stock");
//   const visits = stock.increment("visits", 1);             // atomic
//   stock.update("p-1", (s) => {                             // compare-and-swap loop
//     s ??= { available: 0 };
//     if (s.available === 0) throw new PermanentError("sold out");
//     return { ...s, available: s.available - 1 };
//   });
//   const [a, b] = stock.getMany(["a", "b"]);                // one call, ≤ 1000 keys
//
// A write happens when it is made: it is not undone when the handler later
// fails and the message is retried. Failures are thrown as the errors a
// handler may let through: a bucket not granted, an invalid key, a value
// over the limit or one that does not decode are `PermanentError`s; a store
// that is unreachable, or a key fought over, `TransientError`s.

import { increment, swap, Cas } from "wasi:keyvalue/atomics@0.2.0-draft2";
import { deleteMany, getMany, setMany } from "wasi:keyvalue/batch@0.2.0-draft2";
import { open } from "wasi:keyvalue/store@0.2.0-draft2";
import { PermanentError, TransientError } from "./errors.js";
import { DecodeError, parseJson } from "./json.js";
import { encodeJson, toBytes } from "./message.js";

/** How many times `update` reads again after losing a race. */
const UPDATE_TRIES = 1000;

/** A store error (the `error` variant of wasi:keyvalue) as a handler error. */
function storeError(bucket, err) {
  const e = err && err.payload;
  if (!e || typeof e !== "object" || typeof e.tag !== "string") return err;
  switch (e.tag) {
    case "no-such-store":
      return new PermanentError(
        `key-value bucket ${JSON.stringify(bucket)} is not granted to this plugin ([capabilities] keyvalue)`,
      );
    case "access-denied":
      return new PermanentError("key-value access denied");
    default: {
      const m = String(e.val);
      if (m.startsWith("invalid key") || m.includes("over the limit")) {
        return new PermanentError(`key-value: ${m}`);
      }
      return new TransientError(`key-value store: ${m}`);
    }
  }
}

function decodeValue(key, bytes) {
  try {
    return parseJson(bytes);
  } catch (err) {
    if (err instanceof DecodeError) {
      throw new PermanentError(`key-value: the value of ${JSON.stringify(key)} does not decode: ${err.message}`);
    }
    throw err;
  }
}

function encodeValue(key, value) {
  try {
    return encodeJson(value);
  } catch (err) {
    throw new PermanentError(`key-value: the value for ${JSON.stringify(key)} does not encode as JSON: ${err.message}`);
  }
}

/** An open bucket. */
export class Bucket {
  constructor(name, inner) {
    this.name = name;
    this.inner = inner;
  }

  /** Opens `name`, which the plugin's manifest must grant. */
  static open(name) {
    try {
      return new Bucket(name, open(name));
    } catch (err) {
      throw storeError(name, err);
    }
  }

  #call(f) {
    try {
      return f();
    } catch (err) {
      throw storeError(this.name, err);
    }
  }

  /** The bytes stored at `key`, or `undefined`. */
  getRaw(key) {
    return this.#call(() => this.inner.get(key));
  }

  /** The JSON value stored at `key`, or `undefined`. */
  get(key) {
    const bytes = this.getRaw(key);
    return bytes === undefined ? undefined : decodeValue(key, bytes);
  }

  /** Stores bytes (or a string, as UTF-8) at `key`. */
  setRaw(key, value) {
    const bytes = toBytes(value, "a key-value value");
    this.#call(() => this.inner.set(key, bytes));
  }

  /** Stores `value` as JSON at `key`. */
  set(key, value) {
    const bytes = encodeValue(key, value);
    this.#call(() => this.inner.set(key, bytes));
  }

  /** Removes `key` (no error when it has no value). */
  delete(key) {
    this.#call(() => this.inner.delete(key));
  }

  /** Whether `key` has a value. */
  exists(key) {
    return this.#call(() => this.inner.exists(key));
  }

  /** Every key of the bucket. */
  keys() {
    const all = [];
    let cursor;
    for (;;) {
      const page = this.#call(() => this.inner.listKeys(cursor));
      all.push(...page.keys);
      if (page.cursor === undefined) return all;
      cursor = page.cursor;
    }
  }

  /** The JSON values at `keys`, in the order asked (`undefined` for a key
   * with no value), read in one call. At most 1000 keys. */
  getMany(keys) {
    const found = this.#call(() => getMany(this.inner, keys));
    if (found.length !== keys.length) {
      throw new TransientError(`key-value: get-many of ${keys.length} keys answered ${found.length} values`);
    }
    return found.map((pair, i) => (pair === undefined ? undefined : decodeValue(keys[i], pair[1])));
  }

  /** Stores each `[key, value]` of `pairs` as JSON, in one call. At most
   * 1000 pairs; every key and value is checked first (an invalid one writes
   * nothing), but a store failing part way may leave some written. */
  setMany(pairs) {
    const encoded = pairs.map(([key, value]) => [key, encodeValue(key, value)]);
    this.#call(() => setMany(this.inner, encoded));
  }

  /** Removes every key of `keys` (those with no value are skipped), in one
   * call. At most 1000 keys. */
  deleteMany(keys) {
    this.#call(() => deleteMany(this.inner, keys));
  }

  /** Adds `delta` (default 1) to the number at `key` (0 when absent),
   * atomically, and returns the new number (a BigInt beyond 2^53). */
  increment(key, delta = 1) {
    const n = this.#call(() => increment(this.inner, key, BigInt(delta)));
    return Number.isSafeInteger(Number(n)) ? Number(n) : n;
  }

  /**
   * Reads `key`, passes its value (`undefined` when absent) to `change`,
   * and writes what `change` returns (`undefined`: leave the key as it is)
   * only if nobody wrote the key in between; otherwise reads again and
   * calls `change` again. Returns the value written (or `undefined`).
   * `change` may throw (a `PermanentError`, say) to end the update with
   * nothing written.
   */
  update(key, change) {
    let cas = this.#call(() => Cas.new(this.inner, key));
    for (let i = 0; i < UPDATE_TRIES; i++) {
      const raw = this.#call(() => cas.current());
      const next = change(raw === undefined ? undefined : decodeValue(key, raw));
      if (next === undefined) return undefined;
      const bytes = encodeValue(key, next);
      try {
        swap(cas, bytes);
        return next;
      } catch (err) {
        const e = err && err.payload;
        if (e && e.tag === "cas-failed") {
          cas = e.val;
          continue;
        }
        if (e && e.tag === "store-error") throw storeError(this.name, { payload: e.val });
        throw err;
      }
    }
    throw new TransientError(
      `key-value: update of ${JSON.stringify(key)} lost ${UPDATE_TRIES} races to other writers`,
    );
  }
}
