//! Plugins whose files are good but whose NATS side could not be set up,
//! with no version of them serving: a stream that is not there yet,
//! JetStream unavailable while the servers restart or elect, a dead-letter
//! stream or a replica count the server refuses. Such a plugin is loaded
//! again after a delay that doubles from [`FIRST`] to [`LAST`], until it
//! serves or its files change or go (a file event loads it at once, as
//! always). A plugin that serves and whose new version cannot bind keeps
//! its old version instead, and is not retried here.
//!
//! Pure bookkeeping: the registry records each failure and success, and the
//! host's loop asks when the next retry is due.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// The delay before the first retry.
pub const FIRST: Duration = Duration::from_secs(1);

/// The longest delay between retries.
pub const LAST: Duration = Duration::from_secs(30);

/// How long a retry that never reports back (its load overtaken or lost)
/// waits before the next.
const UNANSWERED: Duration = Duration::from_secs(60);

/// One plugin's retries.
#[derive(Debug, Clone, Copy)]
struct Retry {
    /// Failures in a row.
    failures: u32,
    /// When to load it again.
    due: Instant,
}

/// The plugins waiting to be loaded again.
#[derive(Debug, Default)]
pub struct Unbound {
    retries: HashMap<String, Retry>,
}

impl Unbound {
    /// Records that `name` could not bind at `now`; returns how long until
    /// it is tried again.
    pub fn failed(&mut self, name: &str, now: Instant) -> Duration {
        let failures = self.retries.get(name).map_or(0, |r| r.failures) + 1;
        let delay = delay(failures);
        self.retries.insert(
            name.to_string(),
            Retry {
                failures,
                due: now + delay,
            },
        );
        delay
    }

    /// Forgets `name`: it serves, or its files are wrong or gone.
    pub fn clear(&mut self, name: &str) {
        self.retries.remove(name);
    }

    /// The plugins waiting to bind, in name order.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.retries.keys().cloned().collect();
        names.sort();
        names
    }

    /// When the next retry is due, if any is waiting.
    pub fn next_due(&self) -> Option<Instant> {
        self.retries.values().map(|r| r.due).min()
    }

    /// The plugins due at `now`, in name order. Each is due again only
    /// after [`UNANSWERED`] unless its load reports back first.
    pub fn due(&mut self, now: Instant) -> Vec<String> {
        let mut names: Vec<String> = self
            .retries
            .iter_mut()
            .filter(|(_, r)| r.due <= now)
            .map(|(name, r)| {
                r.due = now + UNANSWERED;
                name.clone()
            })
            .collect();
        names.sort();
        names
    }
}

/// The delay after `failures` failures in a row: [`FIRST`], doubling, at
/// most [`LAST`].
fn delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST * 2u32.pow(doublings)).min(LAST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_from_one_second_to_thirty() {
        let delays: Vec<u64> = (1..=8).map(|n| delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(delay(u32::MAX), LAST);
    }

    #[test]
    fn a_plugin_is_due_after_its_delay_and_once_until_it_reports() {
        let start = Instant::now();
        let mut unbound = Unbound::default();
        assert_eq!(unbound.next_due(), None);
        assert_eq!(unbound.failed("b", start), FIRST);
        assert_eq!(unbound.failed("a", start), FIRST);
        assert_eq!(unbound.next_due(), Some(start + FIRST));
        assert!(unbound.due(start).is_empty(), "not before its delay");
        let then = start + FIRST;
        assert_eq!(unbound.due(then), ["a", "b"]);
        assert!(unbound.due(then).is_empty(), "once: its load is running");
        assert_eq!(unbound.next_due(), Some(then + UNANSWERED));
        // The load failed again: twice the delay.
        assert_eq!(unbound.failed("a", then), FIRST * 2);
        assert_eq!(unbound.next_due(), Some(then + FIRST * 2));
        // The other bound: forgotten.
        unbound.clear("b");
        assert_eq!(unbound.due(then + UNANSWERED), ["a"]);
        unbound.clear("a");
        assert_eq!(unbound.next_due(), None);
        // A fresh failure starts again from the first delay.
        assert_eq!(unbound.failed("a", then), FIRST);
    }
}
