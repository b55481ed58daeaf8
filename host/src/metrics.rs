//! Per-plugin counters of what happened to each message, and their
//! Prometheus text (served at `/metrics` by [`crate::listener`]). Counting is a relaxed atomic add: nothing on the hot path allocates
//! or locks. A plugin's counters outlive its versions, so a reload does not
//! reset them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::outcome::DeadLetterKind;

/// How each message a plugin took ended, counted since the host started.
#[derive(Debug, Default)]
pub struct Counters {
    /// Handled: outputs published, input acked.
    pub ok: AtomicU64,
    /// Attempts that failed and were retried (or NAKed for redelivery).
    pub retried: AtomicU64,
    /// Acked without a call: the event id was already handled.
    pub duplicate: AtomicU64,
    /// Dead-lettered, by why.
    dead_lettered: [AtomicU64; DEAD_LETTER_KINDS.len()],
}

/// Every dead-letter kind, in the order [`Counters`] stores them.
const DEAD_LETTER_KINDS: [DeadLetterKind; 5] = [
    DeadLetterKind::Permanent,
    DeadLetterKind::Exhausted,
    DeadLetterKind::Trap,
    DeadLetterKind::Timeout,
    DeadLetterKind::InvalidOutput,
];

impl Counters {
    /// Counts one handled message.
    pub fn handled(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one failed attempt that will be tried again.
    pub fn retry(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one duplicate acked without a call.
    pub fn duplicate(&self) {
        self.duplicate.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one dead letter of `kind`.
    pub fn dead_lettered(&self, kind: DeadLetterKind) {
        self.dead_letter_counter(kind)
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Dead letters of `kind` so far.
    pub fn dead_letters(&self, kind: DeadLetterKind) -> u64 {
        self.dead_letter_counter(kind).load(Ordering::Relaxed)
    }

    fn dead_letter_counter(&self, kind: DeadLetterKind) -> &AtomicU64 {
        let index = DEAD_LETTER_KINDS
            .iter()
            .position(|k| *k == kind)
            .expect("every kind is listed");
        &self.dead_lettered[index]
    }
}

/// The counters of every plugin the host has served, by name.
#[derive(Debug, Default)]
pub struct Metrics {
    plugins: Mutex<BTreeMap<String, Arc<Counters>>>,
}

impl Metrics {
    /// The counters of plugin `name`, made on first use and kept across
    /// reloads.
    pub fn plugin(&self, name: &str) -> Arc<Counters> {
        let mut plugins = self.plugins.lock().unwrap_or_else(|e| e.into_inner());
        plugins.entry(name.to_string()).or_default().clone()
    }

    /// Every counter in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let plugins = self.plugins.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        out.push_str(
            "# HELP evhost_messages_total Messages taken, by plugin and how they ended.\n\
             # TYPE evhost_messages_total counter\n",
        );
        for (name, c) in plugins.iter() {
            let name = escape(name);
            let line = |out: &mut String, outcome: &str, value: u64| {
                let _ = writeln!(
                    out,
                    "evhost_messages_total{{plugin=\"{name}\",outcome=\"{outcome}\"}} {value}"
                );
            };
            line(&mut out, "ok", c.ok.load(Ordering::Relaxed));
            line(&mut out, "duplicate", c.duplicate.load(Ordering::Relaxed));
            for kind in DEAD_LETTER_KINDS {
                let outcome = format!("dead-letter-{}", kind.as_str());
                line(&mut out, &outcome, c.dead_letters(kind));
            }
        }
        out.push_str(
            "# HELP evhost_retries_total Failed attempts that were tried again.\n\
             # TYPE evhost_retries_total counter\n",
        );
        for (name, c) in plugins.iter() {
            let _ = writeln!(
                out,
                "evhost_retries_total{{plugin=\"{}\"}} {}",
                escape(name),
                c.retried.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// A label value with `\`, `"` and newlines escaped as Prometheus requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_survive_lookups_and_render() {
        let metrics = Metrics::default();
        metrics.plugin("payment").handled();
        metrics.plugin("payment").handled();
        metrics.plugin("payment").retry();
        metrics
            .plugin("payment")
            .dead_lettered(DeadLetterKind::Permanent);
        metrics.plugin("audit").duplicate();
        let text = metrics.render();
        assert!(text.contains("evhost_messages_total{plugin=\"payment\",outcome=\"ok\"} 2\n"));
        assert!(text.contains(
            "evhost_messages_total{plugin=\"payment\",outcome=\"dead-letter-permanent\"} 1\n"
        ));
        assert!(text.contains(
            "evhost_messages_total{plugin=\"payment\",outcome=\"dead-letter-trap\"} 0\n"
        ));
        assert!(text.contains("evhost_messages_total{plugin=\"audit\",outcome=\"duplicate\"} 1\n"));
        assert!(text.contains("evhost_retries_total{plugin=\"payment\"} 1\n"));
        assert!(text.contains("evhost_retries_total{plugin=\"audit\"} 0\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
