//! Resolving a manifest: every default filled in, every range and
//! combination checked, into the `PluginSettings` the host runs a plugin
//! with. A value out of range is an `Invalid` error naming its key, which
//! `ManifestError::located` places at its line and column.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::manifest::{BackoffSpec, DeliverySection, Manifest, ManifestError};
use crate::plugin_settings::{DEFAULT_DEDUP_BUCKET, JetStreamSettings, PluginSettings};

/// The largest `memory_mb` a manifest may ask for (the 32-bit address space).
pub const MAX_MEMORY_MB: u32 = 4096;

impl Manifest {
    /// Fills in the defaults and checks ranges. `name` is the plugin's name.
    pub fn resolve(&self, name: &str) -> Result<PluginSettings, ManifestError> {
        let invalid = |msg: String| Err(ManifestError::Invalid(msg));
        let l = &self.limits;
        let d = &self.delivery;

        let concurrency = l.concurrency.unwrap_or(16);
        if concurrency == 0 || concurrency > 10_000 {
            return invalid(format!(
                "limits.concurrency must be between 1 and 10000, not {concurrency}"
            ));
        }
        let timeout_ms = l.timeout_ms.unwrap_or(5000);
        if timeout_ms == 0 {
            return invalid("limits.timeout_ms must be at least 1".into());
        }
        let memory_mb = l.memory_mb.unwrap_or(64);
        if memory_mb == 0 || memory_mb > MAX_MEMORY_MB {
            return invalid(format!(
                "limits.memory_mb must be between 1 and {MAX_MEMORY_MB}, not {memory_mb}"
            ));
        }
        let max_attempts = d.max_attempts.unwrap_or(5);
        if max_attempts == 0 {
            return invalid("delivery.max_attempts must be at least 1".into());
        }
        let backoff_max = match &d.backoff_max {
            Some(s) => parse_duration("delivery.backoff_max", s)?,
            None => Duration::from_secs(10),
        };
        let backoff = match &d.backoff {
            None => Backoff::exponential(Duration::from_millis(100), backoff_max),
            Some(BackoffSpec::Initial(s)) => {
                Backoff::exponential(parse_duration("delivery.backoff", s)?, backoff_max)
            }
            Some(BackoffSpec::Schedule(list)) => {
                if list.is_empty() {
                    return invalid("delivery.backoff must not be an empty list".into());
                }
                let delays = list
                    .iter()
                    .map(|s| parse_duration("delivery.backoff", s))
                    .collect::<Result<Vec<_>, _>>()?;
                Backoff::schedule(delays)
            }
        };
        let queue_group = self.queue_group.clone().unwrap_or_else(|| name.to_string());
        if !crate::subject::is_valid_token_string(&queue_group) {
            return invalid(format!(
                "queue_group {queue_group:?} is not a valid NATS queue name"
            ));
        }
        if let Some(subjects) = &self.subjects {
            if subjects.is_empty() {
                return invalid(
                    "subjects must not be empty (remove the key to use the plugin's own)".into(),
                );
            }
            if let Err(denied) = crate::subject::check_subscriptions(subjects) {
                return invalid(format!("subjects: {denied}"));
            }
        }
        let dead_letter_prefix = d
            .dead_letter_prefix
            .clone()
            .unwrap_or_else(|| "dlq.".into());
        crate::subject::check_dead_letter_prefix(&dead_letter_prefix)
            .map_err(ManifestError::Invalid)?;
        if let Some(allow) = &self.publish.allow {
            for s in allow {
                if !crate::subject::is_valid_pattern(s) {
                    return invalid(format!("publish.allow: {s:?} is not a valid NATS subject"));
                }
            }
        }
        let config = self
            .config
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Datetime(d) => d.to_string(),
                    toml::Value::Array(_) | toml::Value::Table(_) => {
                        // The key escaped: a quoted key may hold a line
                        // break, and the error is one line.
                        return Err(ManifestError::Invalid(format!(
                            "config.{}: only strings, numbers, booleans and dates are allowed",
                            k.escape_debug()
                        )));
                    }
                };
                Ok((k.clone(), text))
            })
            .collect::<Result<_, _>>()?;

        let dead_letter_stream = resolve_dead_letter_stream(d)?;
        let jetstream = self.resolve_jetstream(name)?;
        let capabilities =
            crate::capabilities::resolve(&self.capabilities, l).map_err(ManifestError::Invalid)?;

        Ok(PluginSettings {
            subjects: self.subjects.clone(),
            queue_group,
            config,
            concurrency: concurrency as usize,
            timeout: Duration::from_millis(timeout_ms),
            memory_bytes: memory_mb as usize * 1024 * 1024,
            isolation: l.isolation.unwrap_or_default(),
            recycle_after: l.recycle_after.unwrap_or(10_000).max(1),
            max_outputs: l.max_outputs.unwrap_or(100),
            max_output_bytes: l.max_output_bytes.unwrap_or(1024 * 1024),
            log_lines_per_second: match l.log_lines_per_second.unwrap_or(1000) {
                0 => u32::MAX,
                n => n,
            },
            max_attempts,
            backoff,
            dead_letter_prefix,
            dead_letter_stream,
            publish_allow: self.publish.allow.clone(),
            jetstream,
            capabilities,
        })
    }

    fn resolve_jetstream(&self, name: &str) -> Result<Option<JetStreamSettings>, ManifestError> {
        let invalid = |msg: String| Err(ManifestError::Invalid(msg));
        let Some(d) = &self.jetstream else {
            return Ok(None);
        };
        let Some(stream) = d.stream.clone() else {
            return invalid("jetstream.stream is missing: the stream to consume".into());
        };
        if !valid_name(&stream) {
            return invalid(format!(
                "jetstream.stream {stream:?} is not a valid stream name"
            ));
        }
        let durable = d
            .durable
            .clone()
            .unwrap_or_else(|| format!("evhost-{name}"));
        if !valid_name(&durable) {
            return invalid(format!(
                "jetstream.durable {durable:?} is not a valid consumer name"
            ));
        }
        let create_stream = match (
            d.create_stream.unwrap_or(false),
            &d.stream_subjects,
            &self.subjects,
        ) {
            (false, Some(_), _) => {
                return invalid(
                    "jetstream.stream_subjects needs jetstream.create_stream = true".into(),
                );
            }
            (false, None, _) => None,
            (true, Some(list), _) | (true, None, Some(list)) => Some(list.clone()),
            (true, None, None) => {
                return invalid(
                    "jetstream.create_stream needs jetstream.stream_subjects (or top-level subjects) to capture".into(),
                );
            }
        };
        if let Some(bad) = create_stream
            .iter()
            .flatten()
            .find(|s| !crate::subject::is_valid_pattern(s))
        {
            return invalid(format!(
                "jetstream.stream_subjects: {bad:?} is not a valid NATS subject"
            ));
        }
        // A stream the host creates captures what a plugin may subscribe
        // to, no more: not `$KV.>`, `_INBOX.>` or a bare `>`.
        if let Some(Err(denied)) = create_stream
            .as_deref()
            .map(crate::subject::check_subscriptions)
        {
            return invalid(format!("jetstream.stream_subjects: {denied}"));
        }
        let ack_wait = match &d.ack_wait {
            Some(s) => parse_duration("jetstream.ack_wait", s)?,
            None => Duration::from_secs(30),
        };
        if ack_wait < Duration::from_secs(1) {
            return invalid("jetstream.ack_wait must be at least 1s".into());
        }
        let start = match &d.deliver {
            Some(text) => crate::consumers::StartAt::parse(text)
                .map_err(|e| ManifestError::Invalid(format!("jetstream.deliver {e}")))?,
            None => crate::consumers::StartAt::default(),
        };
        let pull_batch = d.pull_batch.unwrap_or(DEFAULT_PULL_BATCH);
        if pull_batch == 0 || pull_batch > 10_000 {
            return invalid(format!(
                "jetstream.pull_batch must be between 1 and 10000, not {pull_batch}"
            ));
        }
        let dedup = match &d.dedup {
            Some(spec) => {
                Some(crate::dedup::DedupKey::parse(spec).map_err(ManifestError::Invalid)?)
            }
            None => None,
        };
        let dedup_bucket = d
            .dedup_bucket
            .clone()
            .unwrap_or_else(|| DEFAULT_DEDUP_BUCKET.into());
        if !valid_name(&dedup_bucket) {
            return invalid(format!(
                "jetstream.dedup_bucket {dedup_bucket:?} is not a valid bucket name"
            ));
        }
        let dedup_ttl = match &d.dedup_ttl {
            Some(s) => parse_duration("jetstream.dedup_ttl", s)?,
            None => Duration::from_secs(24 * 3600),
        };
        let dead_letter_stream = resolve_dead_letter_stream(&self.delivery)?;
        Ok(Some(JetStreamSettings {
            stream,
            durable,
            start,
            create_stream,
            ack_wait,
            pull_batch,
            dedup,
            dedup_bucket,
            dedup_ttl,
            dead_letter_stream,
        }))
    }
}

/// A stream, consumer or bucket name: letters, digits, `-` and `_`.
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `dead_letter_stream` and `create_dead_letter_stream`, in either mode.
fn resolve_dead_letter_stream(
    d: &DeliverySection,
) -> Result<Option<(String, bool)>, ManifestError> {
    match (
        &d.dead_letter_stream,
        d.create_dead_letter_stream.unwrap_or(false),
    ) {
        (Some(s), create) if valid_name(s) => Ok(Some((s.clone(), create))),
        (Some(s), _) => Err(ManifestError::Invalid(format!(
            "delivery.dead_letter_stream {s:?} is not a valid stream name"
        ))),
        (None, true) => Err(ManifestError::Invalid(
            "delivery.create_dead_letter_stream needs delivery.dead_letter_stream".into(),
        )),
        (None, false) => Ok(None),
    }
}

/// Messages a JetStream plugin pulls per request when the manifest says nothing.
pub const DEFAULT_PULL_BATCH: usize = 256;

fn parse_duration(key: &str, text: &str) -> Result<Duration, ManifestError> {
    humantime::parse_duration(text)
        .map_err(|e| ManifestError::Invalid(format!("{key}: {text:?} is not a duration ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Isolation;

    #[test]
    fn a_value_out_of_range_says_where_it_is() {
        let text = "[config]\nx = 1\n\n[limits]\nconcurrency = 4\ntimeout_ms = 0\n";
        let err = Manifest::parse(text)
            .unwrap()
            .resolve("p")
            .unwrap_err()
            .located(text);
        assert_eq!(
            err.to_string(),
            "6:14: limits.timeout_ms must be at least 1",
            "{err:?}"
        );
        // A key not in the text (a default) keeps the bare message.
        let err = ManifestError::Invalid("delivery.stream is missing".into()).located(text);
        assert_eq!(err.to_string(), "delivery.stream is missing");
        let text = "subjects = [\"$SYS.>\"]\n";
        let err = Manifest::parse(text)
            .unwrap()
            .resolve("p")
            .unwrap_err()
            .located(text);
        assert!(err.to_string().starts_with("1:12: subjects:"), "{err}");
    }

    #[test]
    fn empty_manifest_gives_defaults() {
        let s = Manifest::parse("").unwrap().resolve("payment").unwrap();
        assert_eq!(s.queue_group, "payment");
        assert_eq!(s.concurrency, 16);
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert_eq!(s.memory_bytes, 64 << 20);
        assert_eq!(s.max_attempts, 5);
        assert_eq!(s.isolation, Isolation::Reuse);
        assert_eq!(s.dead_letter_prefix, "dlq.");
        assert!(s.subjects.is_none());
    }

    #[test]
    fn full_manifest_resolves() {
        let text = r#"
subjects = ["orders.>"]
queue_group = "workers"
[config]
name = "x"
count = 3
on = true
[limits]
concurrency = 2
timeout_ms = 250
memory_mb = 16
isolation = "message"
max_outputs = 5
max_output_bytes = 100
[delivery]
max_attempts = 3
backoff = ["1s", "5s"]
dead_letter_prefix = "dead."
[publish]
allow = ["payments.>"]
"#;
        let s = Manifest::parse(text).unwrap().resolve("p").unwrap();
        assert_eq!(s.subjects.as_deref(), Some(&["orders.>".to_string()][..]));
        assert_eq!(s.queue_group, "workers");
        assert_eq!(s.config["count"], "3");
        assert_eq!(s.config["on"], "true");
        assert_eq!(s.config["name"], "x");
        assert_eq!(s.isolation, Isolation::Message);
        assert_eq!(s.memory_bytes, 16 << 20);
        assert_eq!(
            s.backoff,
            Backoff::schedule(vec![Duration::from_secs(1), Duration::from_secs(5)])
        );
        assert_eq!(s.dead_letter_prefix, "dead.");
    }

    #[test]
    fn jetstream_settings_resolve_with_defaults() {
        let text = "[jetstream]\nstream = \"ORDERS\"\ndedup = \"json:/event_id\"\n";
        let s = Manifest::parse(text).unwrap().resolve("payment").unwrap();
        let js = s.jetstream.unwrap();
        assert_eq!(js.stream, "ORDERS");
        assert_eq!(js.durable, "evhost-payment");
        assert_eq!(js.ack_wait, Duration::from_secs(30));
        assert_eq!(js.pull_batch, DEFAULT_PULL_BATCH);
        assert_eq!(
            js.dedup,
            Some(crate::dedup::DedupKey::JsonPointer("/event_id".into()))
        );
        assert_eq!(js.dedup_bucket, "evhost-dedup");
        assert!(js.create_stream.is_none());
    }

    #[test]
    fn a_jetstream_table_needs_a_stream() {
        let err = Manifest::parse("[jetstream]\nack_wait = \"5s\"")
            .unwrap()
            .resolve("p")
            .unwrap_err();
        assert!(
            err.to_string().starts_with("jetstream.stream is missing"),
            "{err}"
        );
        let err = Manifest::parse("[jetstream]\nstream = \"S\"\ncreate_stream = true")
            .unwrap()
            .resolve("p")
            .unwrap_err();
        assert!(err.to_string().contains("stream_subjects"), "{err}");
        // The dead-letter stream stays in [delivery] in JetStream mode too.
        let s =
            Manifest::parse("[jetstream]\nstream = \"S\"\n[delivery]\ndead_letter_stream = \"D\"")
                .unwrap()
                .resolve("p")
                .unwrap();
        assert_eq!(
            s.jetstream.unwrap().dead_letter_stream,
            Some(("D".into(), false))
        );
    }

    #[test]
    fn a_created_stream_may_not_capture_system_subjects() {
        for bad in ["$KV.>", "_INBOX.>", ">", "*.orders"] {
            let err = Manifest::parse(&format!(
                "[jetstream]\nstream = \"S\"\ncreate_stream = true\nstream_subjects = [\"orders.>\", \"{bad}\"]"
            ))
            .unwrap()
            .resolve("p")
            .unwrap_err()
            .to_string();
            assert!(err.starts_with("jetstream.stream_subjects: "), "{err}");
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn core_mode_may_name_a_dead_letter_stream() {
        let s = Manifest::parse(
            "[delivery]\ndead_letter_stream = \"DLQ\"\ncreate_dead_letter_stream = true\n",
        )
        .unwrap()
        .resolve("p")
        .unwrap();
        assert!(s.jetstream.is_none());
        assert_eq!(s.dead_letter_stream, Some(("DLQ".to_string(), true)));
        for (text, needle) in [
            (
                "[delivery]\ncreate_dead_letter_stream = true",
                "needs delivery.dead_letter_stream",
            ),
            (
                "[delivery]\ndead_letter_stream = \"D.Q\"",
                "not a valid stream name",
            ),
        ] {
            let err = Manifest::parse(text).unwrap().resolve("p").unwrap_err();
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        for (text, needle) in [
            ("[limits]\nconcurrency = 0", "concurrency"),
            ("[limits]\nmemory_mb = 100000", "memory_mb"),
            ("[delivery]\nmax_attempts = 0", "max_attempts"),
            ("[delivery]\nbackoff = \"soon\"", "backoff"),
            ("subjects = [\"a..b\"]", "subjects"),
            ("[config]\nlist = [1]", "config.list"),
            // A key with a line break, escaped (found by fuzzing).
            ("[config]\n\"a\\nb\" = [1]", "config.a\\nb: only"),
            (
                "[jetstream]\nstream = \"S\"\npull_batch = 0",
                "jetstream.pull_batch",
            ),
            (
                "[jetstream]\nstream = \"S\"\nack_wait = \"10ms\"",
                "jetstream.ack_wait",
            ),
        ] {
            let err = Manifest::parse(text).unwrap().resolve("p").unwrap_err();
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }
}
