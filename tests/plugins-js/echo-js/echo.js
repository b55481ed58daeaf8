// `echo-js`: the JavaScript test plugin of the end-to-end tests
// (tests/tests/javascript.rs), built twice: `v1/app.js` and `v2/app.js`
// register these handlers with their version, so a reload is visible in the
// replies.
//
// - `test.jsecho` (raw): answers on `test.jsecho.out` with the payload and
//   an `echo-version` header. The payload `crash` throws an exception no
//   handler catches (a trap, like a Rust panic); a payload starting with
//   `async` is answered through a promise.
// - `test.jsorder` (typed: an order, decoded as the Rust payment decodes
//   it): accepts a valid order on `test.jsorder.accepted`, with the message's
//   idempotency key. Following `[config]`: `fail_attempts = N` fails
//   attempts 1 to N as transient, `unavailable = true` every attempt; an
//   order whose total is not the sum of its items is permanent.
// - `test.jstally` (raw): key-value state through the SDK's `Bucket`, in the
//   bucket `[config] bucket` names (default `tally`). The payload `KEY`
//   adds 1 at KEY with `update` (a compare-and-swap), `inc KEY` with
//   `increment`; `many K1 K2 …` reads them with one `getMany` and writes
//   each plus 1 with one `setMany`; `drop K1 K2 …` deletes them with one
//   `deleteMany`. It answers on `test.jstally.out`: the new counts,
//   space-separated, or `deleted N`.
// - `test.jsfetch` (raw): the payload is a URL; POSTs `charge` to it with the
//   SDK's `http` (over `fetch`: the component imports wasi:http), which sends
//   the message's idempotency key as `Idempotency-Key`, throws what
//   `errorForStatus` throws for a 4xx or 5xx, and answers on
//   `test.jsfetch.out` with `STATUS BODY`. A fetch that fails (refused by
//   the host, no connection) is transient.

import {
  Bucket,
  Outgoing,
  PermanentError,
  TransientError,
  config,
  handler,
  http,
  idempotencyKey,
  log,
  t,
} from "../../../js-sdk/src/index.js";

/** What `crash` throws. */
export class DeliberateCrash extends Error {}

const Item = t.object({ product_id: t.string, quantity: t.u32, price_cents: t.u64 }, "Item");
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

export function register(version) {
  handler({ subject: "test.jsecho", raw: true }, function echo(msg) {
    const text = msg.text();
    if (text === "crash") {
      throw new DeliberateCrash(`deliberate crash in echo-js v${version}`);
    }
    const reply = new Outgoing("test.jsecho.out", msg.payload, [["echo-version", version]]);
    return text.startsWith("async") ? Promise.resolve(reply) : reply;
  });

  handler({ subject: "test.jsorder", decode: OrderCreated }, function order(order, msg) {
    const failAttempts = Number(config("fail_attempts") ?? "0");
    if (config("unavailable") === "true" || msg.attempt <= failAttempts) {
      throw new TransientError(`order service unavailable (attempt ${msg.attempt})`);
    }
    const total = order.items.reduce((sum, i) => sum + i.quantity * i.price_cents, 0);
    if (total !== order.total_cents) {
      throw new PermanentError(
        `order ${order.order_id}: total_cents ${order.total_cents} does not match the items (${total})`,
      );
    }
    log.info("accepted order %s on attempt %d", order.order_id, msg.attempt);
    return [
      Outgoing.json("test.jsorder.accepted", {
        order_id: order.order_id,
        amount_cents: order.total_cents,
        causation_id: order.event_id,
        idempotency_key: idempotencyKey(),
        attempt: msg.attempt,
        version,
      }),
    ];
  });

  handler({ subject: "test.jstally", raw: true }, function tally(msg) {
    const bucket = Bucket.open(config("bucket") ?? "tally");
    const [verb, ...keys] = msg.text().split(" ");
    let answer;
    if (verb === "inc") {
      answer = String(bucket.increment(keys[0], 1));
    } else if (verb === "many") {
      const counts = bucket.getMany(keys).map((n) => (n ?? 0) + 1);
      bucket.setMany(keys.map((key, i) => [key, counts[i]]));
      answer = counts.join(" ");
    } else if (verb === "drop") {
      bucket.deleteMany(keys);
      answer = `deleted ${keys.length}`;
    } else {
      answer = String(bucket.update(verb, (n) => (n ?? 0) + 1));
    }
    return new Outgoing("test.jstally.out", answer);
  });

  handler({ subject: "test.jsfetch", raw: true }, async function charge(msg) {
    const res = await http.post(msg.text(), { body: "charge", headers: { "content-type": "text/plain" } });
    res.errorForStatus();
    return new Outgoing("test.jsfetch.out", `${res.status} ${res.text()}`);
  });
}
