//! Waiting in tests: [`WAIT`], the bound of every wait, and [`eventually`],
//! which polls a check with `evhost_nats_process::poll` (the one polling
//! helper the harness, the nats-server kit and the benchmark share) and fails
//! the test with what it waited for.

use std::time::Duration;

use evhost_nats_process::poll;

/// The upper bound for anything a test waits for. Expected events arrive far
/// sooner; this only decides when a test gives up.
pub const WAIT: Duration = Duration::from_secs(20);

/// How often the harness checks what it waits for.
pub(crate) const EVERY: Duration = Duration::from_millis(10);

/// Polls `check` until it returns `Some`, or panics after `timeout` with
/// `what` and `context()`.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    polled(timeout, check).await.unwrap_or_else(|| {
        panic!(
            "timed out after {timeout:?} waiting for {what}\n{}",
            context()
        )
    })
}

/// Polls `check` every [`EVERY`] between tokio sleeps until it returns
/// `Some`, for at most `timeout`.
pub(crate) async fn polled<T>(
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    poll::until(timeout, EVERY, || std::future::ready(check())).await
}
