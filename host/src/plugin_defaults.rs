//! The `[limits]`, `[delivery]` and `[jetstream]` an operator sets for
//! every plugin in the host's configuration file (`evhost.toml`). They sit
//! between the built-in defaults and a plugin's own manifest: a key the
//! manifest sets wins, a key it leaves out takes the host's value, and a key
//! neither sets takes the built-in default (`Manifest::resolve`).

use serde::Deserialize;

use crate::manifest::{
    BackoffSpec, DeliverySection, JetStreamSection, LimitsSection, Manifest, ManifestError,
};

/// The `[delivery]` keys a host may set for every plugin: the retry and
/// dead-letter policy, not where dead letters are kept (a stream is the
/// plugin's own choice).
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeliveryDefaults {
    /// Deliveries before a transient failure becomes a dead letter.
    pub max_attempts: Option<u32>,
    /// The first retry delay, or a schedule.
    pub backoff: Option<BackoffSpec>,
    /// Upper bound of the doubling delay.
    pub backoff_max: Option<String>,
    /// Prefix of dead-letter subjects.
    pub dead_letter_prefix: Option<String>,
}

/// The `[jetstream]` keys a host may set for every JetStream plugin: flow
/// and dedup policy, not what a plugin consumes (`stream`, `durable`,
/// `dedup`, ... stay the manifest's). The table does not make a plugin a
/// JetStream one: a core plugin ignores it.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JetStreamDefaults {
    /// How long the server waits for an ack.
    pub ack_wait: Option<String>,
    /// Where a new subject's consumer starts.
    pub deliver: Option<String>,
    /// Messages asked for at a time.
    pub pull_batch: Option<usize>,
    /// The key-value bucket of handled ids.
    pub dedup_bucket: Option<String>,
    /// How long a handled id is remembered.
    pub dedup_ttl: Option<String>,
}

/// What the host gives every plugin whose manifest says nothing else.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PluginDefaults {
    /// `[limits]`: every key of the manifest's.
    pub limits: LimitsSection,
    /// `[delivery]`: the policy keys.
    pub delivery: DeliveryDefaults,
    /// `[jetstream]`: the flow keys, for JetStream plugins.
    pub jetstream: JetStreamDefaults,
}

/// Sets `into` to `from` where `into` is unset.
fn fill<T: Clone>(into: &mut Option<T>, from: &Option<T>) {
    if into.is_none() {
        into.clone_from(from);
    }
}

impl PluginDefaults {
    /// `manifest` with every key it leaves out taken from these defaults.
    pub fn apply(&self, manifest: &Manifest) -> Manifest {
        let mut m = manifest.clone();
        // Destructured in full, so a key added to `[limits]` cannot be
        // forgotten here.
        let LimitsSection {
            concurrency,
            timeout_ms,
            memory_mb,
            isolation,
            recycle_after,
            max_outputs,
            max_output_bytes,
            log_lines_per_second,
            http_connect_timeout_ms,
            http_first_byte_timeout_ms,
            http_between_bytes_timeout_ms,
            http_max_response_bytes,
            http_max_in_flight,
            kv_max_value_bytes,
        } = &self.limits;
        let l = &mut m.limits;
        fill(&mut l.concurrency, concurrency);
        fill(&mut l.timeout_ms, timeout_ms);
        fill(&mut l.memory_mb, memory_mb);
        fill(&mut l.isolation, isolation);
        fill(&mut l.recycle_after, recycle_after);
        fill(&mut l.max_outputs, max_outputs);
        fill(&mut l.max_output_bytes, max_output_bytes);
        fill(&mut l.log_lines_per_second, log_lines_per_second);
        fill(&mut l.http_connect_timeout_ms, http_connect_timeout_ms);
        fill(
            &mut l.http_first_byte_timeout_ms,
            http_first_byte_timeout_ms,
        );
        fill(
            &mut l.http_between_bytes_timeout_ms,
            http_between_bytes_timeout_ms,
        );
        fill(&mut l.http_max_response_bytes, http_max_response_bytes);
        fill(&mut l.http_max_in_flight, http_max_in_flight);
        fill(&mut l.kv_max_value_bytes, kv_max_value_bytes);

        let DeliveryDefaults {
            max_attempts,
            backoff,
            backoff_max,
            dead_letter_prefix,
        } = &self.delivery;
        let d: &mut DeliverySection = &mut m.delivery;
        fill(&mut d.max_attempts, max_attempts);
        fill(&mut d.backoff, backoff);
        fill(&mut d.backoff_max, backoff_max);
        fill(&mut d.dead_letter_prefix, dead_letter_prefix);

        let JetStreamDefaults {
            ack_wait,
            deliver,
            pull_batch,
            dedup_bucket,
            dedup_ttl,
        } = &self.jetstream;
        if let Some(j) = &mut m.jetstream {
            fill(&mut j.ack_wait, ack_wait);
            fill(&mut j.deliver, deliver);
            fill(&mut j.pull_batch, pull_batch);
            fill(&mut j.dedup_bucket, dedup_bucket);
            fill(&mut j.dedup_ttl, dedup_ttl);
        }
        m
    }

    /// Checks every default against the ranges a manifest's value must be
    /// in, as a plugin in either mode would receive it. The error names the
    /// key as the manifest does (`limits.concurrency must be ...`).
    pub fn check(&self) -> Result<(), ManifestError> {
        let core = Manifest::default();
        let jetstream = Manifest {
            jetstream: Some(JetStreamSection {
                stream: Some("DEFAULTS".into()),
                ..JetStreamSection::default()
            }),
            ..Manifest::default()
        };
        for manifest in [core, jetstream] {
            self.apply(&manifest).resolve("defaults")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn defaults(limits: &str, delivery: &str) -> PluginDefaults {
        with_jetstream(limits, delivery, "")
    }

    fn with_jetstream(limits: &str, delivery: &str, jetstream: &str) -> PluginDefaults {
        PluginDefaults {
            limits: crate::manifest::parse_strict(limits).unwrap(),
            delivery: crate::manifest::parse_strict(delivery).unwrap(),
            jetstream: crate::manifest::parse_strict(jetstream).unwrap(),
        }
    }

    #[test]
    fn the_manifest_wins_then_the_host_then_the_built_in_default() {
        let host = defaults("timeout_ms = 250\nconcurrency = 4", "max_attempts = 2");
        let manifest = Manifest::parse("[limits]\nconcurrency = 8\n").unwrap();
        let s = host.apply(&manifest).resolve("p").unwrap();
        assert_eq!(s.concurrency, 8, "the manifest's own value");
        assert_eq!(s.timeout, Duration::from_millis(250), "the host's default");
        assert_eq!(s.max_attempts, 2, "the host's default");
        assert_eq!(s.memory_bytes, 64 << 20, "the built-in default");
        // No host defaults: the manifest as it is.
        let plain = PluginDefaults::default().apply(&manifest);
        assert_eq!(plain, manifest);
    }

    #[test]
    fn jetstream_defaults_reach_only_jetstream_plugins() {
        let host = with_jetstream("", "", "ack_wait = \"90s\"\npull_batch = 32");
        let core = host.apply(&Manifest::default());
        assert!(
            core.jetstream.is_none(),
            "the defaults make no plugin a JetStream one"
        );
        assert!(core.resolve("p").unwrap().jetstream.is_none());
        let js = Manifest::parse("[jetstream]\nstream = \"S\"\n").unwrap();
        let js = host.apply(&js).resolve("p").unwrap().jetstream.unwrap();
        assert_eq!(js.ack_wait, Duration::from_secs(90));
        assert_eq!(js.pull_batch, 32);
    }

    #[test]
    fn a_default_out_of_range_is_reported_by_its_key() {
        assert!(PluginDefaults::default().check().is_ok());
        let err = defaults("concurrency = 0", "").check().unwrap_err();
        assert!(err.to_string().starts_with("limits.concurrency"), "{err}");
        let err = with_jetstream("", "", "ack_wait = \"10ms\"")
            .check()
            .unwrap_err();
        assert!(err.to_string().starts_with("jetstream.ack_wait"), "{err}");
    }

    #[test]
    fn what_a_plugin_consumes_is_not_a_host_default() {
        let err = crate::manifest::parse_strict::<JetStreamDefaults>("stream = \"S\"")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("1:1: unknown field `stream`"), "{err}");
        // An old host file's JetStream key under [delivery] says where it went.
        let err = crate::manifest::parse_strict::<DeliveryDefaults>("ack_wait = \"5s\"")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("1:1: unknown field `ack_wait`"), "{err}");
        assert!(err.contains("[jetstream] table"), "{err}");
    }
}
