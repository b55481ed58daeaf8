/// <reference path="./interfaces/evhost-plugin-host.d.ts" />
/// <reference path="./interfaces/evhost-plugin-http.d.ts" />
/// <reference path="./interfaces/evhost-plugin-types.d.ts" />
/// <reference path="./interfaces/wasi-keyvalue-atomics.d.ts" />
/// <reference path="./interfaces/wasi-keyvalue-batch.d.ts" />
/// <reference path="./interfaces/wasi-keyvalue-store.d.ts" />
declare module 'evhost:plugin/handler@0.2.0' {
  export type Message = import('evhost:plugin/types@0.2.0').Message;
  export type Outgoing = import('evhost:plugin/types@0.2.0').Outgoing;
  export type HandlerError = import('evhost:plugin/types@0.2.0').HandlerError;
  export type * as EvhostPluginHost020 from 'evhost:plugin/host@0.2.0'; // import evhost:plugin/host@0.2.0
  export type * as EvhostPluginHttp020 from 'evhost:plugin/http@0.2.0'; // import evhost:plugin/http@0.2.0
  export type * as EvhostPluginTypes020 from 'evhost:plugin/types@0.2.0'; // import evhost:plugin/types@0.2.0
  export type * as WasiKeyvalueAtomics020Draft2 from 'wasi:keyvalue/atomics@0.2.0-draft2'; // import wasi:keyvalue/atomics@0.2.0-draft2
  export type * as WasiKeyvalueBatch020Draft2 from 'wasi:keyvalue/batch@0.2.0-draft2'; // import wasi:keyvalue/batch@0.2.0-draft2
  export type * as WasiKeyvalueStore020Draft2 from 'wasi:keyvalue/store@0.2.0-draft2'; // import wasi:keyvalue/store@0.2.0-draft2
  /**
  * The subjects this handler wants by default, such as
  * `["orders.order.created"]`. NATS wildcards work: `*` matches one token
  * and `>` the rest. The manifest's `subjects` key overrides this list.
  */
  export function subscriptions(): Array<string>;
  /**
  * Handles one delivery of one message. Return the messages to publish on
  * success, or a handler-error saying whether to retry.
  */
  export function handle(msg: Message): Array<Outgoing>;
  export type Result<T, E> = { tag: 'ok', val: T } | { tag: 'err', val: E };
}
