// {{name}}: an evhost handler. Build it with `evhost build`, try it with
// `evhost invoke {{name}}.wasm --subject greetings.requested --payload @events/greetings.requested.json`.
//
// `evhost-sdk/` is a copy of evhost's JavaScript SDK: componentize-js sees
// only the folder it runs in, and imports by path.
import { Outgoing, PermanentError, handler, log, t } from "./evhost-sdk/index.js";

export { subscriptions, handle } from "./evhost-sdk/index.js"; // the component's exports

// The event this handler takes (events/greetings.requested.json).
const GreetingRequested = t.object({ name: t.string }, "GreetingRequested");

handler({ subject: "greetings.requested", decode: GreetingRequested }, (request, msg) => {
  if (request.name === "") {
    // Dead-lettered; `throw new TransientError(...)` is retried with backoff.
    throw new PermanentError("a greeting needs a name");
  }
  log.info("greeting %s (attempt %d)", request.name, msg.attempt);
  return Outgoing.json("greetings.greeted", { message: `hello, ${request.name}` });
});
