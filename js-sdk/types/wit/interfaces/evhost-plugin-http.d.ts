declare module 'evhost:plugin/http@0.2.0' {
  /**
   * Sends `request` and waits for the whole response.
   */
  export function send(request: Request): Response;
  /**
   * One request.
   */
  export interface Request {
    /**
     * The method, such as `GET` or `POST` (a token: letters, digits and
     * `!#$%&'*+-.^_|~`).
     */
    method: string,
    /**
     * An absolute `http://` or `https://` URL: `scheme://host[:port]`
     * and an optional path and query. It must be on the plugin's
     * `[capabilities] http` list, or the call fails with `denied`
     * before any name is resolved or connection made.
     */
    url: string,
    /**
     * Headers to send, in order; a name may repeat. `host` (set from
     * the URL), `connection`, `keep-alive`, `proxy-authenticate`,
     * `proxy-authorization`, `proxy-connection`, `transfer-encoding`,
     * `upgrade` and `http2-settings` are refused as `invalid`; so are
     * a `content-length` that is not the body's length, more than one
     * `content-length`, and more than 128 KiB of names and values. The host
     * adds `content-length` when the body is not empty or the method
     * is `POST`, `PUT` or `PATCH`.
     */
    headers: Array<[string, string]>,
    /**
     * The body, sent as it is.
     */
    body: Uint8Array,
    /**
     * A bound, in nanoseconds, on each wait: connecting, the first byte
     * of the response and the time between two chunks of its body.
     * Shorter than the manifest's `http_*_timeout_ms` or it has no
     * effect.
     */
    timeoutNs?: bigint,
  }
  /**
   * The whole response: any status, 4xx and 5xx included.
   */
  export interface Response {
    /**
     * The status code, such as 200.
     */
    status: number,
    /**
     * The headers, in order; a name may repeat. Values are bytes as
     * received (usually, but not always, text).
     */
    headers: Array<[string, Uint8Array]>,
    /**
     * The whole body, at most the manifest's `http_max_response_bytes`.
     */
    body: Uint8Array,
  }
  /**
   * Why no response came back. Each case carries a description for
   * people (the `wasi:http` error code it corresponds to, and details).
   */
  export type Failure = FailureDenied | FailureTimeout | FailureConnect | FailureTooLarge | FailureInvalid | FailureOther;
  /**
   * The destination is not on the plugin's `[capabilities] http`
   * list (or the plugin has no grant): nothing was resolved or sent.
   */
  export interface FailureDenied {
    tag: 'denied',
    val: string,
  }
  /**
   * Connecting, the first byte or the time between body chunks took
   * longer than allowed.
   */
  export interface FailureTimeout {
    tag: 'timeout',
    val: string,
  }
  /**
   * No connection: the name does not resolve, the connection was
   * refused or reset, TLS failed.
   */
  export interface FailureConnect {
    tag: 'connect',
    val: string,
  }
  /**
   * The response, or its body, is over the manifest's limit.
   */
  export interface FailureTooLarge {
    tag: 'too-large',
    val: string,
  }
  /**
   * The request cannot be sent as given: a bad URL, method, header
   * name or value, or a refused header.
   */
  export interface FailureInvalid {
    tag: 'invalid',
    val: string,
  }
  /**
   * Anything else.
   */
  export interface FailureOther {
    tag: 'other',
    val: string,
  }
}
