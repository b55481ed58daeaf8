// `noop-js`: the benchmark's `noop` in JavaScript (see `plugins/noop`).
//
// Does nothing with the messages on `bench.noop`. When a message is a
// request (it has a reply subject) it answers with an empty reply, so the
// benchmark can time what was handled; otherwise it returns nothing. The
// benchmark's measure of what the host and the JavaScript engine cost, with
// no work of the handler's.
//
// The benchmark builds it (`host/benches/overhead.rs`); by hand, from the
// repository's root (componentize-js maps the folder it runs in into the
// build, so the SDK must be under it):
//
//   js-sdk/node_modules/.bin/componentize-js host/benches/plugins/noop-js/app.js \
//     -w wit -n handler -d http -d fetch-event -o noop-js.wasm

import { handler, Outgoing } from "../../../../js-sdk/src/index.js";

export { subscriptions, handle } from "../../../../js-sdk/src/index.js";

handler({ subject: "bench.noop", raw: true }, function ignore(msg) {
  return msg.replyTo === undefined ? undefined : new Outgoing(msg.replyTo);
});
