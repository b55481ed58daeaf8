// Types of evhost-sdk (src/index.js). The world's own types (the message and
// outgoing records, the host and key-value imports) are generated from
// evhost's WIT by jco into ../types/wit/ (`npm run types`).

/// <reference path="../types/wit/handler.d.ts" />

import type { Message as WitMessage, Outgoing as WitOutgoing, HandlerError as WitHandlerError } from "evhost:plugin/types@0.2.0";

/** A message header: its name and its value. */
export type Header = [string, string];

/** A handler's failure; its message lands in the log and in `Evhost-Error`. */
export class HandlerError extends Error {
  constructor(message: string);
}
/** It may work if tried again later: evhost retries with backoff. */
export class TransientError extends HandlerError {}
/** It will never work: evhost dead-letters the message at once. */
export class PermanentError extends HandlerError {}

/** One delivery of one message. */
export class Message {
  constructor(subject: string, headers?: Header[], payload?: Uint8Array | string, replyTo?: string, attempt?: number);
  /** The NATS subject it was published to. */
  subject: string;
  /** Its headers, in the order they arrived (a name may repeat). */
  headers: Header[];
  /** The body, exactly as published. */
  payload: Uint8Array;
  /** Where a requester waits for a reply, when it was a request. */
  replyTo: string | undefined;
  /** 1 on the first delivery, 2 on the first retry, and so on. */
  attempt: number;
  /** The first value of header `name` (compared without case). */
  header(name: string): string | undefined;
  /** The payload as text (invalid UTF-8 becomes U+FFFD). */
  text(): string;
  /** The payload parsed as JSON; a `PermanentError` when it is not JSON. */
  json(): unknown;
}

/** A message to publish if, and only if, the handler succeeds. */
export class Outgoing {
  /** A string payload is sent as UTF-8. */
  constructor(subject: string, payload?: string | Uint8Array | ArrayBuffer | ArrayBufferView, headers?: Header[]);
  subject: string;
  payload: Uint8Array;
  headers: Header[];
  /** `value` as compact JSON, with `content-type: application/json` unless
   * `headers` names one; a value JSON cannot encode is a `PermanentError`. */
  static json(subject: string, value: unknown, headers?: Header[]): Outgoing;
}

/** What a handler may return (or a promise of it). */
export type Outputs =
  | Outgoing
  | { subject: string; payload?: string | Uint8Array; headers?: Header[] }
  | Array<Outgoing | { subject: string; payload?: string | Uint8Array; headers?: Header[] }>
  | undefined
  | null
  | void;

/** Why a payload does not have the shape a decoder expects. */
export class DecodeError extends Error {}

/** Checks a parsed JSON value and returns it typed, or throws. */
export interface Decoder<T> {
  (value: unknown, path?: string): T;
  /** How errors name the type (`payload does not decode as NAME`). */
  typeName?: string;
  optional?: boolean;
}

type Decoded<F> = { [K in keyof F]: F[K] extends Decoder<infer T> ? T : never };

/** Decoders, checking a payload as serde checks a Rust struct. */
export const t: {
  string: Decoder<string>;
  boolean: Decoder<boolean>;
  number: Decoder<number>;
  u8: Decoder<number>;
  u16: Decoder<number>;
  u32: Decoder<number>;
  /** Beyond 2^53 a JavaScript number loses precision. */
  u64: Decoder<number>;
  i32: Decoder<number>;
  /** Beyond ±2^53 a JavaScript number loses precision. */
  i64: Decoder<number>;
  any: Decoder<unknown>;
  /** Absent or null give `undefined` (Rust's `Option`). */
  optional<T>(inner: Decoder<T>): Decoder<T | undefined>;
  array<T>(inner: Decoder<T>): Decoder<T[]>;
  record<T>(inner: Decoder<T>): Decoder<Record<string, T>>;
  literal<const V extends readonly (string | number | boolean | null)[]>(...values: V): Decoder<V[number]>;
  /** A struct: unknown fields are ignored, missing ones fail unless optional;
   * `check` may throw to refuse a decoded value. */
  object<F extends Record<string, Decoder<unknown>>>(
    fields: F,
    name?: string,
    check?: (value: Decoded<F>) => void,
  ): Decoder<Decoded<F>>;
};

/** `bytes` parsed as JSON with serde_json's rules; a `DecodeError` when not. */
export function parseJson(bytes: Uint8Array): unknown;

/** Options of a typed handler: the payload is parsed as JSON, then decoded. */
export interface TypedOptions<T> {
  subject?: string | string[];
  subjects?: string[];
  raw?: false;
  /** Checks the parsed payload; whatever it throws makes a permanent error. */
  decode?: (value: unknown) => T;
  /** The type's name in decode errors (default: the decoder's). */
  type?: string;
}

/** Options of a raw handler: it gets the whole `Message`. */
export interface RawOptions {
  subject?: string | string[];
  subjects?: string[];
  raw: true;
}

/** Registers a raw handler (`fn(msg)`) and returns it. */
export function handler(options: RawOptions, fn: (msg: Message) => Outputs | Promise<Outputs>): typeof fn;
/** Registers a typed handler (`fn(value, msg)`) and returns it. */
export function handler<T = unknown>(
  options: TypedOptions<T>,
  fn: (value: T, msg: Message) => Outputs | Promise<Outputs>,
): typeof fn;

/** A value of the plugin's `[config]`, or `undefined` (TOML spelling: `"3"`, `"true"`). */
export function config(key: string): string | undefined;

/** The idempotency key of the message being handled (`<plugin>:<id>`). */
export function idempotencyKey(): string;

type LogFn = (format?: unknown, ...args: unknown[]) => void;
/** The host's log; each level formats like `console.log`, only when recorded. */
export const log: {
  trace: LogFn;
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  enabled(level: "trace" | "debug" | "info" | "warn" | "error"): boolean;
};

/** A key-value bucket the manifest grants (`[capabilities] keyvalue`).
 * Errors are thrown as `PermanentError` (not granted, invalid key, too
 * large, does not decode) or `TransientError` (store unreachable, contended). */
export class Bucket {
  static open(name: string): Bucket;
  readonly name: string;
  get(key: string): unknown;
  getRaw(key: string): Uint8Array | undefined;
  set(key: string, value: unknown): void;
  setRaw(key: string, value: string | Uint8Array): void;
  delete(key: string): void;
  exists(key: string): boolean;
  keys(): string[];
  getMany(keys: string[]): unknown[];
  setMany(pairs: Array<[string, unknown]>): void;
  deleteMany(keys: string[]): void;
  increment(key: string, delta?: number | bigint): number | bigint;
  update<T>(key: string, change: (current: T | undefined) => T | undefined): T | undefined;
}

/** What a server answered, read whole. */
export class HttpResponse {
  readonly status: number;
  readonly headers: Array<[string, string]>;
  readonly body: Uint8Array;
  header(name: string): string | undefined;
  text(): string;
  json(): unknown;
  isSuccess(): boolean;
  /** Throws `TransientError` for 5xx, 408 and 429, `PermanentError` for other 4xx. */
  errorForStatus(): HttpResponse;
}

export interface HttpOptions {
  headers?: Record<string, string> | Array<[string, string]>;
  body?: string | Uint8Array;
  json?: unknown;
  /** `false`: send no `Idempotency-Key`. */
  idempotencyKey?: boolean;
}

/** `fetch` with evhost's rules: the message's idempotency key on unsafe
 * methods, a failed fetch as `TransientError`. Needs a component built with
 * wasi:http (without `-d http`). */
export const http: {
  request(method: string, url: string, options?: HttpOptions): Promise<HttpResponse>;
  get(url: string, options?: HttpOptions): Promise<HttpResponse>;
  post(url: string, options?: HttpOptions): Promise<HttpResponse>;
  put(url: string, options?: HttpOptions): Promise<HttpResponse>;
  delete(url: string, options?: HttpOptions): Promise<HttpResponse>;
};

/** The component's export (re-export it from your module). */
export function subscriptions(): string[];
/** The component's export (re-export it from your module). */
export function handle(
  msg: WitMessage,
): { tag: "ok"; val: WitOutgoing[] } | { tag: "err"; val: WitHandlerError } | Promise<unknown>;
