// Write evhost event handlers in JavaScript.
//
//   import { handler, Outgoing, PermanentError, t, log } from "./node_modules/evhost-sdk/src/index.js";
//   export { subscriptions, handle } from "./node_modules/evhost-sdk/src/index.js";
//
//   const OrderCreated = t.object({ order_id: t.string, total_cents: t.u64 }, "OrderCreated");
//
//   handler({ subject: "orders.order.created", decode: OrderCreated }, (order, msg) => {
//     if (order.total_cents === 0) throw new PermanentError(`order ${order.order_id} has no amount`);
//     log.info("charging order %s (attempt %d)", order.order_id, msg.attempt);
//     return Outgoing.json("payments.payment.completed", { order_id: order.order_id });
//   });
//
// Build it into a component with componentize-js against evhost's WIT:
// `componentize-js app.js -w wit -n handler -d http -d fetch-event -o app.wasm`.
// The module must export `subscriptions` and `handle` (re-export them from
// here): they are the component's exports.
//
// A payload that does not decode is a `PermanentError` and the function is
// not called. Throw `TransientError` to be retried, `PermanentError` to be
// dead-lettered; any other exception traps, like a Rust panic.

import { Registry } from "./registry.js";
import { crash } from "./trap.js";

export { HandlerError, PermanentError, TransientError } from "./errors.js";
export { Message, Outgoing } from "./message.js";
export { DecodeError, t } from "./decode.js";
export { parseJson } from "./json.js";
export { config, idempotencyKey, log } from "./host.js";
export { Bucket } from "./kv.js";

import { idempotencyKey } from "./host.js";
import { createHttp } from "./http.js";

/** `fetch` with evhost's rules (see `http.js`): `http.post(url, { json })`. */
export const http = createHttp(idempotencyKey);

const registry = new Registry();

/**
 * Registers `fn` as the handler of `options.subject` (or `options.subjects`;
 * NATS wildcards work). By default `fn(value, msg)` gets the payload parsed
 * as JSON, passed through `options.decode` when given; with `raw: true`,
 * `fn(msg)` gets the whole `Message`. Returns `fn`.
 */
export function handler(options, fn) {
  return registry.register(options, fn);
}

/** The world's export: the subjects of the registered handlers. */
export function subscriptions() {
  return registry.subscriptions();
}

/** The world's export: one delivery of one message. */
export function handle(msg) {
  return registry.handle(msg, crash);
}
