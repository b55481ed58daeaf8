// Compiles with the SDK's types (`npx tsc -p test/types`): not run, only
// checked, so index.d.ts and the generated WIT types stay usable.
import { Bucket, Outgoing, PermanentError, TransientError, config, handler, idempotencyKey, log, t } from "../../src/index.js";

export { handle, subscriptions } from "../../src/index.js";

const Item = t.object({ product_id: t.string, quantity: t.u32, price_cents: t.u64 }, "Item");
const OrderCreated = t.object(
  { order_id: t.string, items: t.array(Item), note: t.optional(t.string), status: t.literal("new", "paid") },
  "OrderCreated",
);

handler({ subject: "orders.order.created", decode: OrderCreated }, (order, msg) => {
  const quantity: number = order.items[0].quantity;
  const note: string | undefined = order.note;
  const status: "new" | "paid" = order.status;
  if (config("down") === "true") throw new TransientError(`down (attempt ${msg.attempt})`);
  if (quantity === 0) throw new PermanentError("no quantity");
  log.info("order %s %s", order.order_id, note ?? "", status);
  const stock = Bucket.open("stock");
  stock.update<{ available: number }>("p-1", (s) => ({ available: (s?.available ?? 1) - 1 }));
  return [Outgoing.json("payments.payment.completed", { order_id: order.order_id, key: idempotencyKey() })];
});

handler({ subjects: ["audit.>"], raw: true }, (msg) => {
  const size: number = msg.payload.length;
  log.debug(`${msg.subject} ${size}`);
});

handler({ subject: "async.x" }, async (value) => {
  return { subject: "async.out", payload: JSON.stringify(value) };
});
