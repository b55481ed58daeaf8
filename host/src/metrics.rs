//! The host's Prometheus metrics, kept with the `prometheus-client` crate and
//! encoded by it (served at `/metrics` by [`crate::listener`]):
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `evhost_messages_total` | plugin, outcome | messages taken, by how they ended (`ok`, `duplicate`, `dead-letter-<kind>`) |
//! | `evhost_retries_total` | plugin | failed attempts tried again |
//! | `messaging_process_duration_seconds` | messaging_system, plugin | how long each handler call took (OpenTelemetry's `messaging.process.duration`) |
//! | `evhost_messages_in_flight` | plugin | messages taken and not yet finished |
//! | `evhost_plugin_reloads_total` | plugin, result | loads: `loaded`, `reloaded`, `rejected`, `removed` |
//! | `evhost_plugin_info` | plugin, version | 1 for the version serving |
//! | `evhost_nats_connection_up` | connection | 1 while that connection is up |
//! | `evhost_jetstream_consumer_pending_messages` | plugin, stream, consumer | messages not yet delivered, as the server counted them with the latest delivery to this host |
//!
//! A plugin's handles ([`Counters`]) are made once, when it first loads, and
//! kept across reloads: counting a message is an atomic add on a handle, with
//! no label lookup on the hot path. The duration histogram and the in-flight
//! gauge, touched by every message on every shard, are striped per thread
//! (`striped_metrics.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::outcome::DeadLetterKind;
use crate::striped_metrics::{DurationHistogram, StripedGauge};

/// The label of `messaging_system`, as OpenTelemetry names NATS.
const MESSAGING_SYSTEM: &str = "nats";

/// Upper bounds of the handler duration buckets, in seconds: 50 µs to 10 s.
const DURATION_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
    10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabel {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    plugin: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    messaging_system: &'static str,
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    plugin: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    plugin: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabel {
    connection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    plugin: String,
    stream: String,
    consumer: String,
}

fn duration_histogram() -> DurationHistogram {
    DurationHistogram::new(&DURATION_BUCKETS)
}

/// Every metric family, registered once.
struct Families {
    messages: Family<OutcomeLabels, Counter>,
    retries: Family<PluginLabel, Counter>,
    duration: Family<DurationLabels, DurationHistogram, fn() -> DurationHistogram>,
    in_flight: Family<PluginLabel, StripedGauge>,
    reloads: Family<ReloadLabels, Counter>,
    info: Family<InfoLabels, Gauge>,
    connections: Family<ConnectionLabel, Gauge>,
    pending: Family<ConsumerLabels, Gauge>,
}

/// How a plugin's files were taken, for `evhost_plugin_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Its first version serves.
    Loaded,
    /// A new version replaced the one serving.
    Reloaded,
    /// Its files were refused; the version serving (if any) keeps serving.
    Rejected,
    /// Its `.wasm` is gone; it no longer serves.
    Removed,
}

impl Reload {
    fn as_str(self) -> &'static str {
        match self {
            Reload::Loaded => "loaded",
            Reload::Reloaded => "reloaded",
            Reload::Rejected => "rejected",
            Reload::Removed => "removed",
        }
    }
}

/// One plugin's handles, kept across its versions.
pub struct Counters {
    plugin: String,
    families: Arc<Families>,
    ok: Counter,
    duplicate: Counter,
    retried: Counter,
    /// In the order of [`DeadLetterKind::ALL`].
    dead_lettered: Vec<Counter>,
    duration: DurationHistogram,
    in_flight: StripedGauge,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters")
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

impl Counters {
    /// Counts one handled message.
    pub fn handled(&self) {
        self.ok.inc();
    }

    /// Counts one failed attempt that will be tried again.
    pub fn retry(&self) {
        self.retried.inc();
    }

    /// Counts one duplicate acked without a call.
    pub fn duplicate(&self) {
        self.duplicate.inc();
    }

    /// Counts one dead letter of `kind`.
    pub fn dead_lettered(&self, kind: DeadLetterKind) {
        self.dead_lettered[kind_index(kind)].inc();
    }

    /// Records how long one handler call took.
    pub fn call_took(&self, took: Duration) {
        self.duration.observe(took);
    }

    /// Counts a message as in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Handled so far.
    pub fn ok(&self) -> u64 {
        self.ok.get()
    }

    /// Retries so far.
    pub fn retried(&self) -> u64 {
        self.retried.get()
    }

    /// Duplicates so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicate.get()
    }

    /// Dead letters of `kind` so far.
    pub fn dead_letters(&self, kind: DeadLetterKind) -> u64 {
        self.dead_lettered[kind_index(kind)].get()
    }

    /// The pending-messages gauge of one of this plugin's JetStream
    /// consumers.
    pub fn consumer_pending(&self, stream: &str, consumer: &str) -> Gauge {
        self.families
            .pending
            .get_or_create(&ConsumerLabels {
                plugin: self.plugin.clone(),
                stream: stream.to_string(),
                consumer: consumer.to_string(),
            })
            .clone()
    }
}

fn kind_index(kind: DeadLetterKind) -> usize {
    DeadLetterKind::ALL
        .iter()
        .position(|k| *k == kind)
        .expect("every kind is listed")
}

/// A message in flight; counted out when dropped, however its handling ends.
pub struct InFlight(StripedGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Every metric of the host.
pub struct Metrics {
    registry: Registry,
    families: Arc<Families>,
    plugins: Mutex<BTreeMap<String, Arc<Counters>>>,
    /// The version each plugin's info series names, to retire on a change.
    versions: Mutex<BTreeMap<String, String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let families = Families {
            messages: Family::default(),
            retries: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            in_flight: Family::default(),
            reloads: Family::default(),
            info: Family::default(),
            connections: Family::default(),
            pending: Family::default(),
        };
        let mut registry = Registry::default();
        registry.register(
            "evhost_messages",
            "Messages taken, by plugin and how they ended",
            families.messages.clone(),
        );
        registry.register(
            "evhost_retries",
            "Failed attempts that were tried again",
            families.retries.clone(),
        );
        registry.register_with_unit(
            "messaging_process_duration",
            "How long each handler call took",
            Unit::Seconds,
            families.duration.clone(),
        );
        registry.register(
            "evhost_messages_in_flight",
            "Messages taken and not yet finished",
            families.in_flight.clone(),
        );
        registry.register(
            "evhost_plugin_reloads",
            "Plugin loads by result: loaded, reloaded, rejected, removed",
            families.reloads.clone(),
        );
        registry.register(
            "evhost_plugin_info",
            "The version of each plugin serving (always 1)",
            families.info.clone(),
        );
        registry.register(
            "evhost_nats_connection_up",
            "Whether each NATS connection is up (1) or not (0)",
            families.connections.clone(),
        );
        registry.register(
            "evhost_jetstream_consumer_pending_messages",
            "Messages of a JetStream consumer not yet delivered, as of the latest delivery to this host",
            families.pending.clone(),
        );
        Metrics {
            registry,
            families: Arc::new(families),
            plugins: Mutex::default(),
            versions: Mutex::default(),
        }
    }
}

impl Metrics {
    /// The handles of plugin `name`, made on first use (every series at 0)
    /// and kept across reloads.
    pub fn plugin(&self, name: &str) -> Arc<Counters> {
        let mut plugins = self.plugins.lock().unwrap_or_else(|e| e.into_inner());
        plugins
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(self.make_counters(name)))
            .clone()
    }

    fn make_counters(&self, name: &str) -> Counters {
        let f = &self.families;
        let outcome = |outcome: &str| {
            f.messages
                .get_or_create(&OutcomeLabels {
                    plugin: name.to_string(),
                    outcome: outcome.to_string(),
                })
                .clone()
        };
        let plugin = PluginLabel {
            plugin: name.to_string(),
        };
        Counters {
            plugin: name.to_string(),
            families: f.clone(),
            ok: outcome("ok"),
            duplicate: outcome("duplicate"),
            dead_lettered: DeadLetterKind::ALL
                .iter()
                .map(|k| outcome(&format!("dead-letter-{}", k.as_str())))
                .collect(),
            retried: f.retries.get_or_create(&plugin).clone(),
            duration: f
                .duration
                .get_or_create(&DurationLabels {
                    messaging_system: MESSAGING_SYSTEM,
                    plugin: name.to_string(),
                })
                .clone(),
            in_flight: f.in_flight.get_or_create(&plugin).clone(),
        }
    }

    /// Counts a load of plugin `name`'s files, and keeps its info series on
    /// the version serving (`None` once it no longer serves).
    pub fn reload(&self, name: &str, result: Reload, version: Option<&str>) {
        self.families
            .reloads
            .get_or_create(&ReloadLabels {
                plugin: name.to_string(),
                result: result.as_str(),
            })
            .inc();
        if result == Reload::Rejected {
            return;
        }
        let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = versions.remove(name) {
            self.families.info.remove(&InfoLabels {
                plugin: name.to_string(),
                version: old,
            });
        }
        if let Some(version) = version {
            self.families
                .info
                .get_or_create(&InfoLabels {
                    plugin: name.to_string(),
                    version: version.to_string(),
                })
                .set(1);
            versions.insert(name.to_string(), version.to_string());
        }
    }

    /// Sets each NATS connection's state, as read at a scrape.
    pub fn connections(&self, states: &[(String, bool)]) {
        for (name, up) in states {
            self.families
                .connections
                .get_or_create(&ConnectionLabel {
                    connection: name.clone(),
                })
                .set(i64::from(*up));
        }
    }

    /// Every metric in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
        assert_eq!(metrics.plugin("payment").ok(), 2);
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn durations_fall_in_buckets_and_in_flight_follows_guards() {
        let metrics = Metrics::default();
        let c = metrics.plugin("payment");
        c.call_took(Duration::from_micros(300));
        c.call_took(Duration::from_secs(3));
        let (one, two) = (c.in_flight(), c.in_flight());
        drop(one);
        let text = metrics.render();
        assert!(
            text.contains("# TYPE messaging_process_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains(
                "messaging_process_duration_seconds_count{messaging_system=\"nats\",plugin=\"payment\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("messaging_process_duration_seconds_bucket{le=\"0.0005\",messaging_system=\"nats\",plugin=\"payment\"} 1\n")
                || text.contains("messaging_process_duration_seconds_bucket{messaging_system=\"nats\",plugin=\"payment\",le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("evhost_messages_in_flight{plugin=\"payment\"} 1\n"),
            "{text}"
        );
        drop(two);
        assert!(
            metrics
                .render()
                .contains("evhost_messages_in_flight{plugin=\"payment\"} 0\n")
        );
    }

    #[test]
    fn the_info_series_follows_the_version_serving() {
        let metrics = Metrics::default();
        metrics.reload("payment", Reload::Loaded, Some("aaaa"));
        metrics.reload("payment", Reload::Rejected, None);
        let text = metrics.render();
        assert!(
            text.contains("evhost_plugin_info{plugin=\"payment\",version=\"aaaa\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "evhost_plugin_reloads_total{plugin=\"payment\",result=\"rejected\"} 1\n"
            ),
            "{text}"
        );
        metrics.reload("payment", Reload::Reloaded, Some("bbbb"));
        let text = metrics.render();
        assert!(!text.contains("version=\"aaaa\""), "{text}");
        assert!(
            text.contains("evhost_plugin_info{plugin=\"payment\",version=\"bbbb\"} 1\n"),
            "{text}"
        );
        metrics.reload("payment", Reload::Removed, None);
        let text = metrics.render();
        assert!(!text.contains("evhost_plugin_info{"), "{text}");
        assert!(
            text.contains("evhost_plugin_reloads_total{plugin=\"payment\",result=\"removed\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn connections_and_consumers_are_gauges() {
        let metrics = Metrics::default();
        metrics.connections(&[("main".into(), true), ("shard-1".into(), false)]);
        metrics
            .plugin("payment")
            .consumer_pending("ORDERS", "payment-x")
            .set(7);
        let text = metrics.render();
        assert!(
            text.contains("evhost_nats_connection_up{connection=\"main\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("evhost_nats_connection_up{connection=\"shard-1\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("evhost_jetstream_consumer_pending_messages{plugin=\"payment\",stream=\"ORDERS\",consumer=\"payment-x\"} 7\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::default();
        metrics.plugin("a\"b\\c\nd").handled();
        let text = metrics.render();
        assert!(text.contains("plugin=\"a\\\"b\\\\c\\nd\""), "{text}");
    }
}
