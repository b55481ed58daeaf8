// `spin-js`: computes forever on every message on `bench.spin`, until the
// host's time limit (`timeout_ms`) interrupts it.
//
// The benchmark's way of holding messages in flight in JavaScript, each in
// an instance of its own (a guest that computes yields its thread at every
// epoch tick, and the next message takes another instance): the host's
// memory with `concurrency` of them in flight, less its memory idle, is what
// the instances cost. The rest of the component is `noop-js`'s (the engine
// and the SDK, initialised).
//
// The benchmark builds it (`host/benches/overhead.rs`); by hand, from the
// repository's root:
//
//   js-sdk/node_modules/.bin/componentize-js host/benches/plugins/spin-js/app.js \
//     -w wit -n handler -d http -d fetch-event -o spin-js.wasm

import { handler } from "../../../../js-sdk/src/index.js";

export { subscriptions, handle } from "../../../../js-sdk/src/index.js";

handler({ subject: "bench.spin", raw: true }, function spin() {
  for (;;) {
    // Nothing: only the host's time limit ends this.
  }
});
