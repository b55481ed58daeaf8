//! Why a handler could not handle a message.

use std::fmt;

use crate::bindings::evhost::plugin::types as wit;

/// A handler's failure: evhost retries transient ones and dead-letters
/// permanent ones. The text lands in the log and in the dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    /// May work later (a dependency is down): retried with backoff.
    Transient(String),
    /// Can never work (bad payload, broken rule): dead-lettered at once.
    Permanent(String),
}

impl HandlerError {
    /// A failure worth retrying.
    pub fn transient(reason: impl fmt::Display) -> Self {
        HandlerError::Transient(reason.to_string())
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(reason: impl fmt::Display) -> Self {
        HandlerError::Permanent(reason.to_string())
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerError::Transient(r) => write!(f, "transient: {r}"),
            HandlerError::Permanent(r) => write!(f, "permanent: {r}"),
        }
    }
}

impl std::error::Error for HandlerError {}

impl From<HandlerError> for wit::HandlerError {
    fn from(e: HandlerError) -> Self {
        match e {
            HandlerError::Transient(r) => wit::HandlerError::Transient(r),
            HandlerError::Permanent(r) => wit::HandlerError::Permanent(r),
        }
    }
}
