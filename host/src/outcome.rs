//! What a handler call came to, and what the host does about it: publish,
//! retry, or dead-letter with which kind. Pure decision logic, no I/O.

use std::fmt;

/// Why one attempt at a message did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The handler returned `transient`, or its outputs could not be published.
    Transient,
    /// The handler ran past its time limit and was interrupted.
    Timeout,
    /// The handler returned `permanent`.
    Permanent,
    /// The guest trapped: a panic, `unreachable`, out-of-bounds, the memory cap.
    Trap,
    /// The handler succeeded but its outputs break the plugin's rules.
    InvalidOutput,
}

/// One failed attempt: its kind and a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What sort of failure.
    pub kind: FailureKind,
    /// Why, for people: the handler's message or the host's.
    pub message: String,
}

impl Failure {
    /// A failure of `kind` saying `message`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl FailureKind {
    /// The name used in logs and in `evhost invoke`'s output.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Transient => "transient",
            FailureKind::Timeout => "timeout",
            FailureKind::Permanent => "permanent",
            FailureKind::Trap => "trap",
            FailureKind::InvalidOutput => "invalid-output",
        }
    }

    /// Whether another attempt might succeed: the tests' statement of what
    /// [`decide`] does.
    #[cfg(test)]
    fn is_retryable(self) -> bool {
        matches!(self, FailureKind::Transient | FailureKind::Timeout)
    }
}

/// The `Evhost-Error-Kind` of a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterKind {
    /// The handler said the message can never succeed.
    Permanent,
    /// Every attempt failed transiently.
    Exhausted,
    /// The guest trapped.
    Trap,
    /// Every attempt failed and the last one ran out of time.
    Timeout,
    /// The handler's outputs were refused.
    InvalidOutput,
}

impl DeadLetterKind {
    /// Every kind.
    pub const ALL: [DeadLetterKind; 5] = [
        DeadLetterKind::Permanent,
        DeadLetterKind::Exhausted,
        DeadLetterKind::Trap,
        DeadLetterKind::Timeout,
        DeadLetterKind::InvalidOutput,
    ];

    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Permanent => "permanent",
            DeadLetterKind::Exhausted => "exhausted",
            DeadLetterKind::Trap => "trap",
            DeadLetterKind::Timeout => "timeout",
            DeadLetterKind::InvalidOutput => "invalid-output",
        }
    }
}

/// What to do with a message after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Deliver it again (after a backoff delay).
    Retry,
    /// Give up and dead-letter it as this kind.
    DeadLetter(DeadLetterKind),
}

/// Decides the fate of a message whose attempt number `attempt` (1-based)
/// failed with `kind`, given at most `max_attempts` deliveries.
pub fn decide(kind: FailureKind, attempt: u32, max_attempts: u32) -> Decision {
    match kind {
        FailureKind::Permanent => Decision::DeadLetter(DeadLetterKind::Permanent),
        FailureKind::Trap => Decision::DeadLetter(DeadLetterKind::Trap),
        FailureKind::InvalidOutput => Decision::DeadLetter(DeadLetterKind::InvalidOutput),
        FailureKind::Transient | FailureKind::Timeout if attempt < max_attempts => Decision::Retry,
        FailureKind::Transient => Decision::DeadLetter(DeadLetterKind::Exhausted),
        FailureKind::Timeout => Decision::DeadLetter(DeadLetterKind::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_trap_and_invalid_output_dead_letter_at_once() {
        assert_eq!(
            decide(FailureKind::Permanent, 1, 5),
            Decision::DeadLetter(DeadLetterKind::Permanent)
        );
        assert_eq!(
            decide(FailureKind::Trap, 1, 5),
            Decision::DeadLetter(DeadLetterKind::Trap)
        );
        assert_eq!(
            decide(FailureKind::InvalidOutput, 1, 5),
            Decision::DeadLetter(DeadLetterKind::InvalidOutput)
        );
    }

    #[test]
    fn transient_retries_until_max_attempts_then_exhausts() {
        for attempt in 1..5 {
            assert_eq!(decide(FailureKind::Transient, attempt, 5), Decision::Retry);
        }
        assert_eq!(
            decide(FailureKind::Transient, 5, 5),
            Decision::DeadLetter(DeadLetterKind::Exhausted)
        );
        assert_eq!(
            decide(FailureKind::Transient, 1, 1),
            Decision::DeadLetter(DeadLetterKind::Exhausted)
        );
    }

    #[test]
    fn timeout_retries_and_its_last_failure_names_the_kind() {
        assert_eq!(decide(FailureKind::Timeout, 1, 2), Decision::Retry);
        assert_eq!(
            decide(FailureKind::Timeout, 2, 2),
            Decision::DeadLetter(DeadLetterKind::Timeout)
        );
    }

    #[test]
    fn kinds_have_stable_names() {
        assert_eq!(DeadLetterKind::InvalidOutput.as_str(), "invalid-output");
        assert_eq!(FailureKind::Timeout.as_str(), "timeout");
        assert!(FailureKind::Timeout.is_retryable());
        assert!(!FailureKind::Trap.is_retryable());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn kind() -> impl Strategy<Value = FailureKind> {
            prop_oneof![
                Just(FailureKind::Transient),
                Just(FailureKind::Timeout),
                Just(FailureKind::Permanent),
                Just(FailureKind::Trap),
                Just(FailureKind::InvalidOutput),
            ]
        }

        proptest! {
            /// Only transient failures and timeouts are retried, and only
            /// while attempts remain.
            #[test]
            fn retried_exactly_while_retryable_and_attempts_remain(
                kind in kind(), attempt in 1u32..1000, max in 1u32..1000,
            ) {
                let retried = decide(kind, attempt, max) == Decision::Retry;
                prop_assert_eq!(retried, kind.is_retryable() && attempt < max);
            }

            /// A message failing the same way every time is handled exactly
            /// `max_attempts` times if retryable, else once, then
            /// dead-lettered as the kind its last failure says.
            #[test]
            fn every_failing_message_ends_as_a_dead_letter(kind in kind(), max in 1u32..200) {
                let mut attempt = 1;
                let last = loop {
                    match decide(kind, attempt, max) {
                        Decision::Retry => attempt += 1,
                        Decision::DeadLetter(k) => break k,
                    }
                    prop_assert!(attempt <= max);
                };
                prop_assert_eq!(attempt, if kind.is_retryable() { max } else { 1 });
                let expected = match kind {
                    FailureKind::Transient => DeadLetterKind::Exhausted,
                    FailureKind::Timeout => DeadLetterKind::Timeout,
                    FailureKind::Permanent => DeadLetterKind::Permanent,
                    FailureKind::Trap => DeadLetterKind::Trap,
                    FailureKind::InvalidOutput => DeadLetterKind::InvalidOutput,
                };
                prop_assert_eq!(last, expected);
            }
        }
    }
}
