declare module 'evhost:plugin/host@0.2.0' {
  /**
   * Writes a line to the host's log, tagged with the plugin's name and the
   * message being handled.
   */
  export function log(level: Level, message: string): void;
  /**
   * Whether a line at `level` would be recorded: a handler may skip
   * formatting a line nobody reads. The answer holds for the life of the
   * instance, so a handler may ask once and remember.
   */
  export function logEnabled(level: Level): boolean;
  /**
   * The idempotency key of the message being handled: the same on every
   * delivery and redelivery of it, so a handler can make an external
   * effect (a charge, an e-mail) safe to repeat: send it as
   * `Idempotency-Key`. It is `<plugin>:<id>`, so two plugins handling one
   * event get different keys. The id is, on JetStream, the message's dedup
   * id when the manifest configures `jetstream.dedup`, else
   * `<stream>:<sequence>`; on core NATS, the `Nats-Msg-Id` header when the
   * publisher set one, else an id the host made when the message first
   * arrived (the same on the host's retries of it; a publisher that sends
   * the message again should set `Nats-Msg-Id`). Made only when asked for,
   * so a handler that never asks pays nothing. Outside a call to `handle`,
   * the empty string.
   */
  export function idempotencyKey(): string;
  /**
   * Reads a value from the `[config]` table of the plugin's manifest
   * (`NAME.toml` beside `NAME.wasm`), or `none` when the key is absent.
   * Numbers and booleans come back in their TOML spelling (`3`, `true`).
   * A value holds for the life of the instance (a changed manifest loads
   * new instances), so a handler may read it once and remember it.
   */
  export function config(key: string): string | undefined;
  /**
   * How important a log line is.
   * # Variants
   * 
   * ## `"trace"`
   * 
   * ## `"debug"`
   * 
   * ## `"info"`
   * 
   * ## `"warn"`
   * 
   * ## `"error"`
   */
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
}
