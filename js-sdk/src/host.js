// What the host offers a handler besides the message: the plugin's
// configuration, the idempotency key of the message being handled, and the
// host's log. These call the component's imports (`evhost:plugin/host`), so
// this module loads only inside a component built with componentize-js.

import {
  config as hostConfig,
  idempotencyKey as hostIdempotencyKey,
  log as hostLog,
  logEnabled as hostLogEnabled,
} from "evhost:plugin/host@0.2.0";
import { format } from "./format.js";

const configs = new Map();

/**
 * The value of `key` in the `[config]` table of the plugin's manifest
 * (`NAME.toml` beside `NAME.wasm`), or `undefined` when it is absent.
 * Numbers and booleans come back in their TOML spelling (`"3"`, `"true"`).
 * Asked of the host once per key (a value holds for the life of the instance).
 */
export function config(key) {
  if (!configs.has(key)) configs.set(key, hostConfig(key));
  return configs.get(key);
}

/**
 * The idempotency key of the message being handled: the same on every
 * delivery of it, so an external effect (a charge, an e-mail) can be made
 * safe to repeat by sending it as `Idempotency-Key`. Asked of the host when
 * called; the empty string outside a call to a handler.
 */
export function idempotencyKey() {
  return hostIdempotencyKey();
}

const LEVELS = ["trace", "debug", "info", "warn", "error"];
const enabledLevels = new Map();

function enabled(level) {
  if (!LEVELS.includes(level)) {
    throw new TypeError(`log level must be one of ${LEVELS.join(", ")}, not ${JSON.stringify(level)}`);
  }
  if (!enabledLevels.has(level)) enabledLevels.set(level, hostLogEnabled(level));
  return enabledLevels.get(level);
}

function write(level, args) {
  if (enabled(level)) hostLog(level, format(...args));
}

/**
 * The host's log, tagged with the plugin and the message. Each level formats
 * its arguments like `console.log` (`log.info("order %s", id)`), and only
 * when the host records that level. `console.log` and `console.error` work
 * too: stdout and stderr lines land in the host's log.
 */
export const log = {
  trace: (...args) => write("trace", args),
  debug: (...args) => write("debug", args),
  info: (...args) => write("info", args),
  warn: (...args) => write("warn", args),
  error: (...args) => write("error", args),
  /** Whether a line at `level` would be recorded (asked once per level). */
  enabled,
};
