// The two ways a handler says it could not handle a message.
//
// Throw `TransientError` for a failure worth retrying (evhost delivers the
// message again, with backoff, up to the plugin's `max_attempts`), and
// `PermanentError` for a message that can never succeed (evhost dead-letters
// it at once). Any other exception escaping a handler is a crash: the
// component traps and the message is dead-lettered as `trap` (see crash.js).

/** A handler's failure; its message lands in the log and in `Evhost-Error`. */
export class HandlerError extends Error {
  constructor(message) {
    super(String(message));
    this.name = new.target.name;
  }
}

/** It may work if tried again later: evhost retries with backoff. */
export class TransientError extends HandlerError {}

/** It will never work: evhost dead-letters the message at once. */
export class PermanentError extends HandlerError {}
