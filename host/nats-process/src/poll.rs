//! The one polling helper: call a check every so often until it yields a
//! value, or give up when the time is up. The check always runs at least
//! once, and once more at the deadline, so a condition that holds when the
//! time runs out is still seen.
//!
//! [`blocking`] sleeps the thread between checks; [`until`] (feature `tokio`)
//! sleeps the task, and its check may itself be async.

use std::time::{Duration, Instant};

/// When polling for `timeout` from now ends; `None` when it never does
/// (`Duration::MAX`, or any timeout too long to add to now).
fn deadline(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// Calls `check` every `every` until it returns `Some`, for at most
/// `timeout` (`Duration::MAX`: no limit); `None` when the time ran out.
pub fn blocking<T>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = deadline(timeout);
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if expired(deadline) {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Like [`blocking`], between tokio sleeps, with an async `check`.
#[cfg(feature = "tokio")]
pub async fn until<T, F>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> F,
) -> Option<T>
where
    F: Future<Output = Option<T>>,
{
    let deadline = deadline(timeout);
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if expired(deadline) {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value() {
        let mut calls = 0;
        let got = blocking(Duration::from_secs(5), Duration::from_millis(1), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(got, Some(3));
    }

    #[test]
    fn checks_at_least_once_and_gives_up_after_the_timeout() {
        let mut calls = 0;
        let started = Instant::now();
        let got: Option<()> = blocking(Duration::ZERO, Duration::from_millis(1), || {
            calls += 1;
            None
        });
        assert_eq!(got, None);
        assert_eq!(calls, 1);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn no_limit_does_not_overflow() {
        assert_eq!(
            blocking(Duration::MAX, Duration::from_millis(1), || Some(1)),
            Some(1)
        );
    }
}
