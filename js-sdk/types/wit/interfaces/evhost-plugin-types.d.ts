declare module 'evhost:plugin/types@0.2.0' {
  /**
   * One message header: its name and its value. A message may carry the
   * same name more than once; order is kept.
   */
  export type Header = [string, string];
  /**
   * A message delivered to the handler.
   */
  export interface Message {
    /**
     * The NATS subject the message was published to, such as
     * `orders.order.created`.
     */
    subject: string,
    /**
     * The message's headers, in the order they arrived. Trace context
     * (`traceparent`, `tracestate`) arrives here, as does `Nats-Msg-Id`.
     */
    headers: Array<Header>,
    /**
     * The message body, exactly as published.
     */
    payload: Uint8Array,
    /**
     * The subject a requester waits on for a reply, when the message was
     * sent as a request. A handler may include an outgoing message to this
     * subject to answer it.
     */
    replyTo?: string,
    /**
     * Which delivery of this message this is: 1 on the first, 2 on the
     * first retry, and so on.
     */
    attempt: number,
  }
  /**
   * A message the handler wants published if, and only if, it succeeds.
   */
  export interface Outgoing {
    /**
     * Where to publish. It must be a plain subject (no `*` or `>`), must
     * not be a system subject (any subject starting with `$`, such as
     * `$JS.`, `$KV.`, `$SYS.`, `$O.`, even when it is the input's
     * reply-to; `_INBOX.` other than the input's own reply-to) and must
     * be allowed by the plugin's `[publish] allow` list when it has one
     * (an `_INBOX.` reply-to needs no entry there).
     */
    subject: string,
    /**
     * Headers to send. When the input carries a `traceparent` header and
     * this list does not, the host copies it over, so traces continue.
     */
    headers: Array<Header>,
    /**
     * The message body.
     */
    payload: Uint8Array,
  }
  /**
   * Why a handler could not handle a message. The string says why, for
   * people: it lands in the log and in the dead letter's `Evhost-Error`.
   */
  export type HandlerError = HandlerErrorTransient | HandlerErrorPermanent;
  /**
   * It may work if tried again later: the host retries with backoff.
   */
  export interface HandlerErrorTransient {
    tag: 'transient',
    val: string,
  }
  /**
   * It will never work: the host dead-letters the message at once.
   */
  export interface HandlerErrorPermanent {
    tag: 'permanent',
    val: string,
  }
}
