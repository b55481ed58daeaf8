// `audit`, in JavaScript: logs every domain event of the shop.
//
// The same handler as the Rust `plugins/audit`, on the same events with the
// same log lines. Subscribed to `orders.>`, `payments.>` and `inventory.>`,
// it logs each event's subject, size and `event_id` (when the payload is
// JSON with one). It publishes nothing and never fails, whatever the payload.
//
// Build, from the repository's root (componentize-js maps the folder it runs
// in into the build, so the SDK must be under it):
//
//   js-sdk/node_modules/.bin/componentize-js plugins/audit-js/app.js \
//     -w wit -n handler -d http -d fetch-event -o audit-js.wasm

import { handler, log } from "../../js-sdk/src/index.js";
import { describe } from "./describe.js";

export { subscriptions, handle } from "../../js-sdk/src/index.js";

handler({ subjects: ["orders.>", "payments.>", "inventory.>"], raw: true }, function onEvent(msg) {
  log.info(describe(msg));
});
