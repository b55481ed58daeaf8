declare module 'wasi:keyvalue/store@0.2.0-draft2' {
  /**
   * Opens the bucket named `identifier`.
   */
  export function open(identifier: string): Bucket;
  /**
   * Why an operation failed.
   */
  export type Error = ErrorNoSuchStore | ErrorAccessDenied | ErrorOther;
  /**
   * No bucket of that name may be opened (evhost: not granted by the
   * manifest, or not a valid bucket name).
   */
  export interface ErrorNoSuchStore {
    tag: 'no-such-store',
  }
  /**
   * The bucket exists, but this operation on it is not allowed.
   */
  export interface ErrorAccessDenied {
    tag: 'access-denied',
  }
  /**
   * Anything else (an invalid key, a value over the size limit, NATS
   * unavailable), said in words.
   */
  export interface ErrorOther {
    tag: 'other',
    val: string,
  }
  /**
   * One page of a bucket's keys.
   */
  export interface KeyResponse {
    /**
     * Keys of this page, in no particular order.
     */
    keys: Array<string>,
    /**
     * Pass this to `list-keys` for the next page; `none` on the last.
     */
    cursor?: string,
  }
  
  export class Bucket implements Disposable {
    /**
     * This type does not have a public constructor.
     */
    private constructor();
    /**
    * The value of `key`, or `none` when it has none.
    */
    get(key: string): Uint8Array | undefined;
    /**
    * Sets `key` to `value`, replacing what was there.
    */
    set(key: string, value: Uint8Array): void;
    /**
    * Removes `key`; removing a key that has no value is not an error.
    */
    'delete'(key: string): void;
    /**
    * Whether `key` has a value.
    */
    exists(key: string): boolean;
    /**
    * The bucket's keys, a page at a time, starting after `cursor`.
    */
    listKeys(cursor: string | undefined): KeyResponse;
    [Symbol.dispose](): void;
  }
}
