// Decoders: the shape a handler expects of its JSON payload, checked the way
// serde checks a Rust struct, so a payload the Rust SDK refuses is refused
// here too (a permanent error, the handler not called).
//
//   const Item = t.object({ product_id: t.string, quantity: t.u32 });
//   const OrderCreated = t.object({ order_id: t.string, items: t.array(Item),
//                                  note: t.optional(t.string) }, "OrderCreated");
//   handler({ subject: "orders.order.created", decode: OrderCreated }, (order) => ...)
//
// Unknown fields are ignored (and dropped from the result), a missing field
// that is not `t.optional` fails, a value of the wrong JSON type fails, and
// integers must fit their Rust type (`t.u32` refuses -2 and 1.5). A decoder
// is a plain function `(value, path) => decoded` that throws a `DecodeError`;
// any function taking the parsed JSON value and throwing on a bad one will
// do as `decode` (a validation library's `parse`, wrapped in an arrow).

import { DecodeError } from "./json.js";

export { DecodeError };

/** How an error names a JSON value, as serde does. */
export function describeValue(value) {
  if (value === null) return "null";
  if (typeof value === "boolean") return `boolean \`${value}\``;
  if (typeof value === "number") {
    return Number.isInteger(value) ? `integer \`${value}\`` : `floating point \`${value}\``;
  }
  if (typeof value === "string") return `string ${JSON.stringify(value.length > 60 ? value.slice(0, 60) + "…" : value)}`;
  if (Array.isArray(value)) return "sequence";
  return "map";
}

const at = (path) => (path ? ` at ${path}` : "");
const join = (path, key) => (path ? `${path}.${key}` : key);

function invalidType(value, expected, path) {
  return new DecodeError(`invalid type: ${describeValue(value)}, expected ${expected}${at(path)}`);
}

function named(fn, typeName) {
  fn.typeName = typeName;
  return fn;
}

function integer(name, min, max) {
  return named((value, path = "") => {
    if (typeof value !== "number") throw invalidType(value, name, path);
    if (!Number.isInteger(value)) throw invalidType(value, name, path);
    if (value < min || value > max) {
      throw new DecodeError(`invalid value: ${describeValue(value)}, expected ${name}${at(path)}`);
    }
    return value;
  }, name);
}

/** The decoders. Each is `(value, path?) => decoded`, throwing `DecodeError`. */
export const t = {
  /** A JSON string. */
  string: named((value, path = "") => {
    if (typeof value !== "string") throw invalidType(value, "a string", path);
    return value;
  }, "string"),
  /** `true` or `false`. */
  boolean: named((value, path = "") => {
    if (typeof value !== "boolean") throw invalidType(value, "a boolean", path);
    return value;
  }, "boolean"),
  /** Any JSON number (Rust's f64). */
  number: named((value, path = "") => {
    if (typeof value !== "number") throw invalidType(value, "f64", path);
    return value;
  }, "number"),
  u8: integer("u8", 0, 255),
  u16: integer("u16", 0, 65535),
  u32: integer("u32", 0, 4294967295),
  /** Up to 2^64 - 1; beyond 2^53 a JavaScript number loses precision. */
  u64: integer("u64", 0, 18446744073709551615),
  i32: integer("i32", -2147483648, 2147483647),
  /** Beyond ±2^53 a JavaScript number loses precision. */
  i64: integer("i64", -9223372036854775808, 9223372036854775807),
  /** Any JSON value, unchecked (serde_json::Value). */
  any: named((value) => value, "any"),

  /** `inner`, or absent, or `null` (Rust's `Option`): absent and null give `undefined`. */
  optional(inner) {
    const d = named((value, path = "") => (value === null || value === undefined ? undefined : inner(value, path)),
      `${inner.typeName ?? "value"} | undefined`);
    d.optional = true;
    return d;
  },

  /** A JSON array of `inner` (Rust's `Vec`). */
  array(inner) {
    return named((value, path = "") => {
      if (!Array.isArray(value)) throw invalidType(value, "a sequence", path);
      return value.map((v, i) => inner(v, `${path}[${i}]`));
    }, `${inner.typeName ?? "value"}[]`);
  },

  /** A JSON object of any keys, each value `inner` (Rust's `HashMap<String, T>`). */
  record(inner) {
    return named((value, path = "") => {
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        throw invalidType(value, "a map", path);
      }
      const out = {};
      for (const [k, v] of Object.entries(value)) out[k] = inner(v, join(path, k));
      return out;
    }, `Record<string, ${inner.typeName ?? "value"}>`);
  },

  /** One of the given values, compared with `===` (a Rust unit enum). */
  literal(...values) {
    const expected = values.map((v) => JSON.stringify(v)).join(", ");
    return named((value, path = "") => {
      if (!values.includes(value)) {
        throw new DecodeError(`invalid value: ${describeValue(value)}, expected one of ${expected}${at(path)}`);
      }
      return value;
    }, values.map((v) => JSON.stringify(v)).join(" | "));
  },

  /**
   * A JSON object with these fields (a Rust struct). Unknown fields are
   * ignored; a missing field fails unless its decoder is `t.optional`.
   * `name` names the type in errors ("payload does not decode as NAME").
   * `check(decoded)` may throw (any error) to refuse a decoded value, like
   * a validating constructor; its message becomes the decode error.
   */
  object(fields, name = "object", check = undefined) {
    return named((value, path = "") => {
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        throw invalidType(value, `struct ${name}`, path);
      }
      const out = {};
      for (const [key, decoder] of Object.entries(fields)) {
        if (Object.hasOwn(value, key)) {
          out[key] = decoder(value[key], join(path, key));
        } else if (decoder.optional) {
          out[key] = undefined;
        } else {
          throw new DecodeError(`missing field \`${key}\`${at(path)}`);
        }
      }
      if (check) {
        try {
          check(out);
        } catch (err) {
          throw new DecodeError(`${err && err.message ? err.message : err}${at(path)}`);
        }
      }
      return out;
    }, name);
  },
};
