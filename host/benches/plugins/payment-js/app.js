// `payment-js`: the benchmark's `payment` in JavaScript: charges an order
// when it is created.
//
// The same handler as the Rust `plugins/payment` (and the Python
// `plugins/payment-py`), on the same events with the same outputs, subjects
// and error kinds, in its simulated mode. On `orders.order.created` it
// decodes the order as the Rust struct does (`t.u32`, `t.u64` refuse what
// serde refuses), validates it (items present, every quantity positive,
// `total_cents` equal to the sum of the items), charges a simulated provider
// and emits `payments.payment.completed`, or `payments.payment.failed` when
// the order is over the configured limit.
//
// A broken business rule or a declined card is a permanent error; the
// provider being unavailable is transient. The simulated provider follows
// `[config]`:
// - `decline_customers = "c-1,c-2"`: these customers' cards are declined;
// - `fail_attempts = 2`: the provider is unavailable on attempts 1 and 2;
// - `unavailable = true`: the provider is always unavailable;
// - `limit_cents = 100000`: larger orders fail as a business outcome;
// - `version = "v2"`: copied into every output as `handler_version`.
//
// `provider_url` (a real provider over HTTP) is not supported: the component
// is built without HTTP (`-d http`), so it is a permanent error, as in the
// Python example.
//
// The benchmark builds it (`host/benches/overhead.rs`); by hand, from the
// repository's root:
//
//   js-sdk/node_modules/.bin/componentize-js host/benches/plugins/payment-js/app.js \
//     -w wit -n handler -d http -d fetch-event -o payment-js.wasm

import {
  Outgoing,
  PermanentError,
  TransientError,
  config,
  handler,
  log,
  t,
} from "../../../../js-sdk/src/index.js";

export { subscriptions, handle } from "../../../../js-sdk/src/index.js";

const U32_MAX = 4294967295;

/** One line of an order. */
const Item = t.object({ product_id: t.string, quantity: t.u32, price_cents: t.u64 }, "Item");

/** `orders.order.created`. */
const OrderCreated = t.object(
  {
    event_id: t.string,
    order_id: t.string,
    customer_id: t.string,
    items: t.array(Item),
    total_cents: t.u64,
    created_at: t.string,
  },
  "OrderCreated",
);

/** The business rule `order` breaks, named, or `undefined`. */
function validate(order) {
  if (order.items.length === 0) return `order ${order.order_id} has no items`;
  for (const item of order.items) {
    if (item.quantity === 0) {
      return `order ${order.order_id}: item ${item.product_id} has quantity 0`;
    }
  }
  let sum = 0;
  for (const item of order.items) sum += item.quantity * item.price_cents;
  if (sum !== order.total_cents) {
    return `order ${order.order_id}: total_cents ${order.total_cents} does not match the items (${sum})`;
  }
  return undefined;
}

const APPROVED = "approved";
const DECLINED = "declined";
const UNAVAILABLE = "unavailable";

/** The simulated provider's answer for `customer` on delivery `attempt`. */
function charge(customer, attempt, declined, failAttempts, unavailable) {
  if (unavailable || attempt <= failAttempts) return UNAVAILABLE;
  if (declined !== undefined && declined.split(",").some((c) => c.trim() === customer)) {
    return DECLINED;
  }
  return APPROVED;
}

/** `fail_attempts` from `[config]` (0 when absent), as the Rust plugin reads a u32. */
function failAttempts() {
  const raw = config("fail_attempts");
  if (raw === undefined) return 0;
  if (!/^\+?[0-9]+$/.test(raw) || Number(raw) > U32_MAX) {
    throw new PermanentError(`config fail_attempts ${JSON.stringify(raw)}: not a number from 0 to ${U32_MAX}`);
  }
  return Number(raw);
}

/** `limit_cents` from `[config]`, or `undefined` when absent or not a number (as in Rust). */
function limitCents() {
  const raw = config("limit_cents");
  return raw !== undefined && /^\+?[0-9]+$/.test(raw) ? Number(raw) : undefined;
}

/** The time in RFC 3339 with milliseconds, as the Rust plugin writes it. */
function now() {
  return new Date().toISOString();
}

/** `event` with `handler_version` when `version` is set. */
function versioned(event, version) {
  if (version !== undefined) event.handler_version = version;
  return event;
}

handler({ subject: "orders.order.created", decode: OrderCreated }, function onOrderCreated(order, msg) {
  const broken = validate(order);
  if (broken !== undefined) throw new PermanentError(broken);
  const fail = failAttempts();
  const unavailable = config("unavailable") === "true";
  const version = config("version");
  const limit = limitCents();

  if (limit !== undefined && order.total_cents > limit) {
    log.info("order %s over the limit of %d cents", order.order_id, limit);
    const failed = {
      event_id: crypto.randomUUID(),
      order_id: order.order_id,
      reason: `amount ${order.total_cents} over the limit of ${limit} cents`,
      causation_id: order.event_id,
      created_at: now(),
    };
    return Outgoing.json("payments.payment.failed", versioned(failed, version));
  }

  if (config("provider_url") !== undefined) {
    throw new PermanentError("provider_url is not supported by the JavaScript payment (built without HTTP)");
  }
  const outcome = charge(order.customer_id, msg.attempt, config("decline_customers"), fail, unavailable);
  if (outcome === UNAVAILABLE) {
    throw new TransientError(`payment provider unavailable (attempt ${msg.attempt})`);
  }
  if (outcome === DECLINED) {
    throw new PermanentError(`card declined for customer ${order.customer_id}`);
  }
  log.debug("charged %d cents for order %s", order.total_cents, order.order_id);
  const completed = {
    event_id: crypto.randomUUID(),
    order_id: order.order_id,
    customer_id: order.customer_id,
    amount_cents: order.total_cents,
    causation_id: order.event_id,
    created_at: now(),
  };
  return Outgoing.json("payments.payment.completed", versioned(completed, version));
});
