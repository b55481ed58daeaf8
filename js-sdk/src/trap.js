// Making the current call trap, as a Rust panic does, once the exception is
// reported (see crash.js).
//
// componentize-js offers no `abort()`; an exception thrown out of an export
// makes StarlingMonkey print it with its stack and abort, and those lines
// would push the panic lines out of the few evhost keeps. Returning a
// promise that never settles makes it print one line ("event loop error,
// but no exception is pending. Aborting") and trap: the panic lines stay
// among the last stderr lines, where evhost finds them.

import { report } from "./crash.js";

/** Writes the report of `exc` to stderr, as one write, and returns what
 * `handle` must return so that the call traps. */
export function crash(exc) {
  try {
    console.error(report(exc).trimEnd());
  } catch {
    console.error("thread '<unnamed>' panicked at <unknown>:\nan exception that cannot be described");
  }
  return new Promise(() => {});
}
