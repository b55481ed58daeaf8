/// <reference path="./wasi-keyvalue-store.d.ts" />
declare module 'wasi:keyvalue/atomics@0.2.0-draft2' {
  /**
   * Adds `delta` to the number stored at `key` (decimal text; a missing
   * key counts as 0) and returns the result.
   */
  export function increment(bucket: Bucket, key: string, delta: bigint): bigint;
  /**
   * Writes `value` to the handle's key only if nobody wrote the key since
   * the handle read it.
   */
  export function swap(cas: Cas, value: Uint8Array): void;
  export type Bucket = import('wasi:keyvalue/store@0.2.0-draft2').Bucket;
  export type Error = import('wasi:keyvalue/store@0.2.0-draft2').Error;
  /**
   * Why a `swap` did not happen.
   */
  export type CasError = CasErrorStoreError | CasErrorCasFailed;
  /**
   * The store failed.
   */
  export interface CasErrorStoreError {
    tag: 'store-error',
    val: Error,
  }
  /**
   * Someone wrote the key after the handle read it: nothing was
   * written. The new handle holds the key as it is now, to try again.
   */
  export interface CasErrorCasFailed {
    tag: 'cas-failed',
    val: Cas,
  }
  
  export class Cas implements Disposable {
    /**
     * This type does not have a public constructor.
     */
    private constructor();
    /**
    * Reads `key` and remembers its revision for a later `swap`.
    */
    static 'new'(bucket: Bucket, key: string): Cas;
    /**
    * The value read when the handle was made (`none`: the key had none).
    */
    current(): Uint8Array | undefined;
    [Symbol.dispose](): void;
  }
}
