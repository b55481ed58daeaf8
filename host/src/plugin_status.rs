//! What `GET /plugins` shows an operator: every plugin of the folder with
//! the version serving (its subjects, delivery mode, main limits, when it
//! was loaded), its counters, and the last error its files were rejected
//! with, so a dropped file that is not serving says why. The `Registry`
//! writes it as it loads, reloads, rejects and removes plugins; the
//! listener reads it as JSON.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use crate::manifest::Isolation;
use crate::metrics::Counters;
use crate::outcome::DeadLetterKind;
use crate::plugin::Plugin;

/// The state of every plugin the registry knows, by name.
#[derive(Default)]
pub struct PluginBoard {
    plugins: Mutex<BTreeMap<String, Known>>,
}

#[derive(Default)]
struct Known {
    serving: Option<Serving>,
    last_error: Option<Rejection>,
}

/// The version serving.
struct Serving {
    version: String,
    loaded_at: SystemTime,
    subjects: Vec<String>,
    queue_group: String,
    /// The stream consumed, for a JetStream plugin; `None` on core NATS.
    stream: Option<String>,
    durable: Option<String>,
    limits: Limits,
    delivery: Delivery,
    counters: Arc<Counters>,
}

/// Why the plugin's files were last refused.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rejection {
    /// The file at fault.
    pub file: String,
    /// The cause, one line.
    pub error: String,
    /// When, RFC 3339 (UTC).
    pub at: String,
}

/// The limits an operator most often asks about.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Limits {
    /// Messages handled at once.
    pub concurrency: usize,
    /// Time one call may take.
    pub timeout_ms: u64,
    /// Linear memory cap.
    pub memory_mb: usize,
    /// `reuse` or `message`.
    pub isolation: &'static str,
}

/// Retries and dead letters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Delivery {
    /// Deliveries before giving up on transient failures.
    pub max_attempts: u32,
    /// Prefix of dead-letter subjects.
    pub dead_letter_prefix: String,
}

/// One plugin as `/plugins` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PluginView {
    /// The plugin's name.
    pub name: String,
    /// `serving`, or `rejected` when no version of it has loaded.
    pub status: &'static str,
    /// The version serving (16 hex digits of the `.wasm`'s SHA-256).
    pub version: Option<String>,
    /// When that version was loaded, RFC 3339 (UTC).
    pub loaded_at: Option<String>,
    /// The subjects it serves.
    pub subjects: Vec<String>,
    /// Its queue group (core NATS).
    pub queue_group: Option<String>,
    /// `core` or `jetstream`.
    pub mode: Option<&'static str>,
    /// JetStream: the stream consumed.
    pub stream: Option<String>,
    /// JetStream: the durable name.
    pub durable: Option<String>,
    /// Its main limits.
    pub limits: Option<Limits>,
    /// Its retry policy.
    pub delivery: Option<Delivery>,
    /// What happened to its messages since the host started.
    pub counters: Option<CounterView>,
    /// The last time its files were refused, while the files on disk are
    /// the ones refused.
    pub last_error: Option<Rejection>,
}

/// A plugin's counters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CounterView {
    /// Handled.
    pub ok: u64,
    /// Failed attempts tried again.
    pub retried: u64,
    /// Acked without a call (already handled).
    pub duplicate: u64,
    /// Dead letters by kind.
    pub dead_letters: BTreeMap<&'static str, u64>,
}

impl CounterView {
    fn of(c: &Counters) -> Self {
        CounterView {
            ok: c.ok(),
            retried: c.retried(),
            duplicate: c.duplicates(),
            dead_letters: DeadLetterKind::ALL
                .iter()
                .map(|k| (k.as_str(), c.dead_letters(*k)))
                .collect(),
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl PluginBoard {
    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<String, Known>) -> R) -> R {
        f(&mut self.plugins.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `plugin` is the version serving, counting into `counters`; its
    /// files are good.
    pub fn serving(&self, plugin: &Plugin, counters: Arc<Counters>) {
        let s = &plugin.settings;
        let serving = Serving {
            version: plugin.version.clone(),
            loaded_at: SystemTime::now(),
            subjects: plugin.subjects.clone(),
            queue_group: s.queue_group.clone(),
            stream: s.jetstream.as_ref().map(|j| j.stream.clone()),
            durable: s.jetstream.as_ref().map(|j| j.durable.clone()),
            limits: Limits {
                concurrency: s.concurrency,
                timeout_ms: s.timeout.as_millis() as u64,
                memory_mb: s.memory_bytes >> 20,
                isolation: match s.isolation {
                    Isolation::Reuse => "reuse",
                    Isolation::Message => "message",
                },
            },
            delivery: Delivery {
                max_attempts: s.max_attempts,
                dead_letter_prefix: s.dead_letter_prefix.clone(),
            },
            counters,
        };
        self.with(|plugins| {
            let known = plugins.entry(plugin.name.to_string()).or_default();
            known.serving = Some(serving);
            known.last_error = None;
        });
    }

    /// The files of `name` were refused: `file` for `error` (which may
    /// start with the file's name, as a log line's does; `file` says it).
    /// A version already serving keeps serving.
    pub fn rejected(&self, name: &str, file: &Path, error: &str) {
        let file = file.display().to_string();
        let cause = error
            .strip_prefix(&file)
            .and_then(|rest| rest.strip_prefix(':'))
            .map_or(error, str::trim_start);
        let rejection = Rejection {
            error: cause.to_string(),
            file,
            at: rfc3339(SystemTime::now()),
        };
        self.with(|plugins| {
            plugins.entry(name.to_string()).or_default().last_error = Some(rejection)
        });
    }

    /// The files of `name` are good again (put back as the version serving).
    pub fn files_valid(&self, name: &str) {
        self.with(|plugins| {
            if let Some(known) = plugins.get_mut(name) {
                known.last_error = None;
            }
        });
    }

    /// `name` is no longer in the folder.
    pub fn removed(&self, name: &str) {
        self.with(|plugins| plugins.remove(name));
    }

    /// Every plugin, by name.
    pub fn views(&self) -> Vec<PluginView> {
        self.with(|plugins| {
            plugins
                .iter()
                .map(|(name, known)| view(name, known))
                .collect()
        })
    }

    /// `{"plugins": [...]}`, as `/plugins` serves it.
    pub fn to_json(&self) -> String {
        let body = serde_json::json!({ "plugins": self.views() });
        let mut text = serde_json::to_string_pretty(&body).unwrap_or_else(|_| "{}".into());
        text.push('\n');
        text
    }
}

fn view(name: &str, known: &Known) -> PluginView {
    let s = known.serving.as_ref();
    PluginView {
        name: name.to_string(),
        status: if s.is_some() { "serving" } else { "rejected" },
        version: s.map(|s| s.version.clone()),
        loaded_at: s.map(|s| rfc3339(s.loaded_at)),
        subjects: s.map(|s| s.subjects.clone()).unwrap_or_default(),
        queue_group: s
            .filter(|s| s.stream.is_none())
            .map(|s| s.queue_group.clone()),
        mode: s.map(|s| {
            if s.stream.is_some() {
                "jetstream"
            } else {
                "core"
            }
        }),
        stream: s.and_then(|s| s.stream.clone()),
        durable: s.and_then(|s| s.durable.clone()),
        limits: s.map(|s| s.limits.clone()),
        delivery: s.map(|s| s.delivery.clone()),
        counters: s.map(|s| CounterView::of(&s.counters)),
        last_error: known.last_error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_never_loaded_shows_as_rejected_with_its_error() {
        let board = PluginBoard::default();
        board.rejected("broken", Path::new("/p/broken.wasm"), "not a component");
        let views = board.views();
        assert_eq!(views.len(), 1);
        let v = &views[0];
        assert_eq!((v.name.as_str(), v.status), ("broken", "rejected"));
        assert!(v.version.is_none() && v.counters.is_none());
        let err = v.last_error.as_ref().unwrap();
        assert_eq!(err.file, "/p/broken.wasm");
        assert_eq!(err.error, "not a component");
        let json: serde_json::Value = serde_json::from_str(&board.to_json()).unwrap();
        assert_eq!(json["plugins"][0]["status"], "rejected");
        assert_eq!(json["plugins"][0]["version"], serde_json::Value::Null);
        // The file's name is not repeated in the cause.
        board.rejected(
            "broken",
            Path::new("/p/broken.toml"),
            "/p/broken.toml:2:1: unknown field",
        );
        assert_eq!(
            board.views()[0].last_error.as_ref().unwrap().error,
            "2:1: unknown field"
        );
        board.files_valid("broken");
        assert!(board.views()[0].last_error.is_none());
        board.removed("broken");
        assert!(board.views().is_empty());
    }

    #[test]
    fn counters_show_every_dead_letter_kind() {
        let c = crate::metrics::Metrics::default().plugin("p");
        c.handled();
        c.dead_lettered(DeadLetterKind::Trap);
        let v = CounterView::of(&c);
        assert_eq!(v.ok, 1);
        assert_eq!(v.dead_letters.len(), DeadLetterKind::ALL.len());
        assert_eq!(v.dead_letters["trap"], 1);
        assert_eq!(v.dead_letters["invalid-output"], 0);
    }
}
