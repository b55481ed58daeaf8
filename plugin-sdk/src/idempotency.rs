//! The idempotency key of the message being handled, kept per thread for the
//! length of one handler call so that [`crate::http`] can send it without the
//! handler passing it along.

use std::cell::RefCell;

thread_local! {
    /// The key of the message being handled; `None` outside a handler call.
    static CURRENT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records `key` as the current message's: `Some` as a handler call starts,
/// `None` once it ends.
pub(crate) fn set(key: Option<String>) {
    CURRENT.with_borrow_mut(|current| *current = key);
}

/// The idempotency key of the message being handled, the same on every
/// delivery of it; `None` outside a handler call.
pub fn current() -> Option<String> {
    CURRENT.with_borrow(Clone::clone)
}
