// What happens when an exception other than `TransientError` or
// `PermanentError` escapes a handler: like a Rust panic, the component traps
// and evhost dead-letters the message as `trap`.
//
// evhost quotes a trapping guest's last panic line in the dead letter's
// `Evhost-Error`: it looks for Rust's shape among the last lines the guest
// wrote to stderr, `... panicked at FILE:LINE:COL:` followed by the message
// on the next line. So a crash writes the stack (for the log), then the
// exception in that shape, as one write, and then traps at once, so nothing
// written after it pushes those lines out of the host's view.

/** `Name: message` on one line (`TypeError: x is undefined`). A subclass of
 * `Error` that does not set `name` is named after its class. A thrown value
 * that is not an `Error` is quoted (`uncaught exception: "text"`). */
export function describe(exc) {
  let text;
  if (exc instanceof Error) {
    let name = exc.name || "Error";
    const cls = exc.constructor && exc.constructor.name;
    if (name === "Error" && cls && cls !== "Error") name = cls;
    const message = oneLine(String(exc.message ?? ""));
    text = message ? `${name}: ${message}` : name;
  } else {
    let shown;
    try {
      shown = typeof exc === "string" ? JSON.stringify(exc) : (JSON.stringify(exc) ?? String(exc));
    } catch {
      shown = Object.prototype.toString.call(exc);
    }
    text = `uncaught exception: ${oneLine(shown)}`;
  }
  return text;
}

function oneLine(s) {
  return s.split(/\s+/).filter(Boolean).join(" ");
}

/** The frames of `exc.stack` (SpiderMonkey's `fn@file:line:col` lines, or
 * V8's `    at fn (file:line:col)`), as `{ fn, at }` (`at`: `file:line:col`). */
export function frames(exc) {
  const stack = exc instanceof Error && typeof exc.stack === "string" ? exc.stack : "";
  const found = [];
  for (const line of stack.split("\n")) {
    const sm = /^([^@\s]*)@(.+:\d+:\d+)\s*$/.exec(line);
    const v8 = /^\s*at (?:(.+?) \()?([^()\s]+:\d+:\d+)\)?\s*$/.exec(line);
    const m = sm ?? v8;
    if (m) found.push({ fn: (m[1] ?? "").replace(/^new /, ""), at: m[2] });
  }
  return found;
}

/** `FILE:LINE:COL` where `exc` was thrown, or `<unknown>`: the first frame
 * of its stack that is not one of its classes' constructors (SpiderMonkey
 * lists `class DeliberateCrash extends Error {}`'s constructor first). */
export function location(exc) {
  const classes = new Set();
  for (let c = exc instanceof Error ? exc.constructor : null; typeof c === "function" && c.name; c = Object.getPrototypeOf(c)) {
    classes.add(c.name);
  }
  const all = frames(exc);
  const thrower = all.find((f) => !classes.has(f.fn)) ?? all[0];
  return thrower ? thrower.at : "<unknown>";
}

/** What a crash writes to stderr: the stack, then the panic lines. */
export function report(exc) {
  const stack = exc instanceof Error && typeof exc.stack === "string" && exc.stack.trim()
    ? `Uncaught ${describe(exc)}\n${exc.stack.trimEnd()}\n`
    : "";
  return `${stack}thread '<unnamed>' panicked at ${location(exc)}:\n${describe(exc)}\n`;
}
