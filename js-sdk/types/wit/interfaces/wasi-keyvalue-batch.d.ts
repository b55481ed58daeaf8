/// <reference path="./wasi-keyvalue-store.d.ts" />
declare module 'wasi:keyvalue/batch@0.2.0-draft2' {
  /**
   * The values of `keys`, in the order asked: `none` for a key with no
   * value. A value written meanwhile by someone else may or may not be
   * seen.
   */
  export function getMany(bucket: Bucket, keys: Array<string>): Array<[string, Uint8Array] | undefined>;
  /**
   * Writes every pair, overwriting what the keys held; in no particular
   * order.
   */
  export function setMany(bucket: Bucket, keyValues: Array<[string, Uint8Array]>): void;
  /**
   * Removes every key; a key with no value is skipped. In no particular
   * order.
   */
  export function deleteMany(bucket: Bucket, keys: Array<string>): void;
  export type Bucket = import('wasi:keyvalue/store@0.2.0-draft2').Bucket;
  export type Error = import('wasi:keyvalue/store@0.2.0-draft2').Error;
}
