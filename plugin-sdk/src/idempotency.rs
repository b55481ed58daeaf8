//! The idempotency key of the message being handled, asked of the host
//! (`host.idempotency-key`) only when a handler or [`crate::http`] needs it:
//! a handler that never uses it costs the host nothing.

/// The idempotency key of the message being handled, the same on every
/// delivery of it; `None` outside a handler call.
pub fn current() -> Option<String> {
    let key = crate::bindings::evhost::plugin::host::idempotency_key();
    (!key.is_empty()).then_some(key)
}
