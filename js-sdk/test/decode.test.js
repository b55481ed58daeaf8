import assert from "node:assert/strict";
import test from "node:test";

import { DecodeError, t } from "../src/decode.js";

const Item = t.object({ product_id: t.string, quantity: t.u32, price_cents: t.u64 }, "Item");
const Order = t.object(
  { order_id: t.string, items: t.array(Item), note: t.optional(t.string), tags: t.record(t.boolean) },
  "Order",
);

test("decodes a matching value, dropping unknown fields", () => {
  const order = Order({
    order_id: "o-1",
    items: [{ product_id: "p", quantity: 2, price_cents: 1250, colour: "red" }],
    tags: { gift: true },
    extra: 1,
  });
  assert.deepEqual(order, {
    order_id: "o-1",
    items: [{ product_id: "p", quantity: 2, price_cents: 1250 }],
    note: undefined,
    tags: { gift: true },
  });
  assert.equal(Order.typeName, "Order");
});

test("names what is wrong, and where, as serde does", () => {
  const base = { order_id: "o-1", items: [], tags: {} };
  const cases = [
    [{ ...base, order_id: undefined }, "missing field `order_id`"],
    [{ ...base, order_id: 7 }, "invalid type: integer `7`, expected a string at order_id"],
    [{ ...base, items: [{ product_id: "p", quantity: -2, price_cents: 1 }] },
      "invalid value: integer `-2`, expected u32 at items[0].quantity"],
    [{ ...base, items: [{ product_id: "p", quantity: 1.5, price_cents: 1 }] },
      "invalid type: floating point `1.5`, expected u32 at items[0].quantity"],
    [{ ...base, items: [{ product_id: "p", quantity: 1 }] }, "missing field `price_cents` at items[0]"],
    [{ ...base, items: {} }, "invalid type: map, expected a sequence at items"],
    [{ ...base, tags: { a: "yes" } }, 'invalid type: string "yes", expected a boolean at tags.a'],
    [{ ...base, note: 3 }, "invalid type: integer `3`, expected a string at note"],
    [[1], "invalid type: sequence, expected struct Order"],
    [null, "invalid type: null, expected struct Order"],
  ];
  for (const [value, message] of cases) {
    if (value && value.order_id === undefined && !Array.isArray(value)) delete value.order_id;
    assert.throws(() => Order(value), (e) => e instanceof DecodeError && e.message === message, message);
  }
});

test("optional takes absent and null", () => {
  const D = t.object({ n: t.optional(t.i32) });
  assert.deepEqual(D({}), { n: undefined });
  assert.deepEqual(D({ n: null }), { n: undefined });
  assert.deepEqual(D({ n: -4 }), { n: -4 });
});

test("integers keep to their Rust ranges", () => {
  assert.equal(t.u8(255), 255);
  assert.throws(() => t.u8(256), /expected u8/);
  assert.throws(() => t.i32(2 ** 31), /expected i32/);
  assert.equal(t.i32(-(2 ** 31)), -(2 ** 31));
  assert.throws(() => t.u64(-1), /expected u64/);
  assert.throws(() => t.u64("1"), /invalid type: string "1", expected u64/);
  assert.throws(() => t.number(true), /invalid type: boolean `true`, expected f64/);
});

test("literal and a validating check", () => {
  const Status = t.literal("paid", "failed");
  assert.equal(Status("paid"), "paid");
  assert.throws(() => Status("lost"), /expected one of "paid", "failed"/);
  const Positive = t.object({ n: t.number }, "Positive", (v) => {
    if (v.n <= 0) throw new RangeError(`n must be positive, not ${v.n}`);
  });
  assert.deepEqual(Positive({ n: 1 }), { n: 1 });
  assert.throws(() => Positive({ n: 0 }), (e) => e instanceof DecodeError && e.message === "n must be positive, not 0");
});
