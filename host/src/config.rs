//! The plugin manifest: `NAME.toml` beside `NAME.wasm`, parsed strictly
//! (an unknown key or a wrong type is an error with its line and column) and
//! resolved into the settings the host runs the plugin with.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::backoff::Backoff;

/// The largest `memory_mb` a manifest may ask for (the 32-bit address space).
pub const MAX_MEMORY_MB: u32 = 4096;

/// A manifest that could not be read or does not fit the schema.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The TOML does not parse or does not match the schema.
    #[error("{line}:{column}: {message}")]
    Syntax {
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column of the offending text.
        column: usize,
        /// What is wrong, as one line.
        message: String,
    },
    /// The TOML is well formed but a value is out of range or inconsistent.
    #[error("{0}")]
    Invalid(String),
}

/// A plugin's manifest as written by its author. Every table and key is
/// optional; an absent manifest is the same as an empty one.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Subjects to subscribe to, replacing the plugin's own `subscriptions()`.
    pub subjects: Option<Vec<String>>,
    /// The NATS queue group; defaults to the plugin's name so that several
    /// hosts running the same plugin share its messages.
    pub queue_group: Option<String>,
    /// Free-form settings the plugin reads with `config(key)`.
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    /// Resource limits and isolation.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Retry and dead-letter behaviour.
    #[serde(default)]
    pub delivery: DeliverySection,
    /// Where the plugin may publish.
    #[serde(default)]
    pub publish: PublishSection,
    /// What the plugin may reach: HTTP destinations, key-value buckets.
    #[serde(default)]
    pub capabilities: crate::capabilities::CapabilitiesSection,
}

/// `[limits]`: how much a plugin may take from the host.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Messages handled at once (default 16).
    pub concurrency: Option<u32>,
    /// Time one call to `handle` may take before it is interrupted (default 5000).
    pub timeout_ms: Option<u64>,
    /// Linear memory cap in MiB (default 64).
    pub memory_mb: Option<u32>,
    /// Whether instances are reused across messages (default) or fresh per message.
    pub isolation: Option<Isolation>,
    /// In `reuse` mode, replace an instance after this many messages (default 10 000).
    pub recycle_after: Option<u64>,
    /// Most messages one call may return (default 100).
    pub max_outputs: Option<usize>,
    /// Most payload and header bytes one call may return, all outputs
    /// together (default 1 MiB).
    pub max_output_bytes: Option<usize>,
    /// Lines the plugin may log per second, per host (default 1000; 0: no
    /// limit).
    pub log_lines_per_second: Option<u32>,
    /// Outbound HTTP: time to open a connection (default 5000).
    pub http_connect_timeout_ms: Option<u64>,
    /// Outbound HTTP: time to a response's head (default 10000).
    pub http_first_byte_timeout_ms: Option<u64>,
    /// Outbound HTTP: time between two chunks of a body (default 10000).
    pub http_between_bytes_timeout_ms: Option<u64>,
    /// Outbound HTTP: largest response body (default 4 MiB).
    pub http_max_response_bytes: Option<u64>,
    /// Outbound HTTP: requests open at once per plugin and host (default 32).
    pub http_max_in_flight: Option<u32>,
    /// Key-value: the largest value one write may store (default 512 KiB).
    pub kv_max_value_bytes: Option<usize>,
}

/// `[delivery]`: retries and dead letters.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeliverySection {
    /// Deliveries before a transient failure becomes a dead letter (default 5).
    pub max_attempts: Option<u32>,
    /// First retry delay, doubling for each retry (`"100ms"`), or an explicit
    /// schedule (`["1s", "5s", "30s"]`, the last entry repeating).
    pub backoff: Option<BackoffSpec>,
    /// Upper bound of the doubling delay (default `"10s"`).
    pub backoff_max: Option<String>,
    /// Prefix of dead-letter subjects (default `"dlq."`).
    pub dead_letter_prefix: Option<String>,
    /// `"core"` (default) or `"jetstream"`.
    pub mode: Option<DeliveryMode>,
    /// JetStream: the stream to consume from (required in that mode).
    pub stream: Option<String>,
    /// JetStream: the durable consumer's name (default `evhost-<plugin>`).
    pub durable: Option<String>,
    /// JetStream: create `stream` if it does not exist, capturing `stream_subjects`.
    pub create_stream: Option<bool>,
    /// JetStream: subjects a created stream captures (default: the plugin's subjects).
    pub stream_subjects: Option<Vec<String>>,
    /// JetStream: how long the server waits for an ack before redelivering (default `"30s"`).
    pub ack_wait: Option<String>,
    /// JetStream: where the consumer of a subject the plugin did not consume
    /// before starts: `"all"` (default), `"new"`, `"last"`,
    /// `"last_per_subject"`, `"sequence:N"` or `"time:RFC3339"`. A subject
    /// already consumed continues where it was.
    pub deliver: Option<String>,
    /// JetStream: how many messages the host asks the server for at a time,
    /// beyond those in flight (default 256). Waiting messages count against
    /// `ack_wait`, so keep `pull_batch` × handler time / `concurrency` under it.
    pub pull_batch: Option<usize>,
    /// JetStream: how to find a message's id for idempotency:
    /// `"header:Nats-Msg-Id"` or `"json:/event_id"` (a JSON pointer).
    pub dedup: Option<String>,
    /// JetStream: the key-value bucket of handled ids (default `"evhost-dedup"`).
    pub dedup_bucket: Option<String>,
    /// JetStream: how long a handled id is remembered (default `"24h"`).
    pub dedup_ttl: Option<String>,
    /// A stream that should capture dead letters (either mode).
    pub dead_letter_stream: Option<String>,
    /// Create `dead_letter_stream` if missing, capturing `<prefix>>`.
    pub create_dead_letter_stream: Option<bool>,
}

/// Where a plugin's messages come from.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryMode {
    /// Core NATS subscriptions in a queue group; retries wait in the host.
    #[default]
    Core,
    /// A durable JetStream pull consumer with explicit acks.
    Jetstream,
}

/// JetStream delivery settings, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct JetStreamSettings {
    /// The stream consumed.
    pub stream: String,
    /// The durable name: each subject's consumer is named after it and the
    /// subject (see `consumers.rs`).
    pub durable: String,
    /// Where a new subject's consumer starts.
    pub start: crate::consumers::StartAt,
    /// Subjects to capture when the host should create the stream.
    pub create_stream: Option<Vec<String>>,
    /// The consumer's ack wait.
    pub ack_wait: Duration,
    /// Messages pulled per request, over all of the plugin's lanes.
    pub pull_batch: usize,
    /// How to find a message's id, if idempotency is on.
    pub dedup: Option<crate::dedup::DedupKey>,
    /// The key-value bucket of handled ids.
    pub dedup_bucket: String,
    /// How long handled ids are kept.
    pub dedup_ttl: Duration,
    /// A stream for dead letters, and whether to create it.
    pub dead_letter_stream: Option<(String, bool)>,
}

/// `[publish]`: a narrower allow-list for output subjects.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PublishSection {
    /// Subject patterns (wildcards allowed) outputs must match.
    pub allow: Option<Vec<String>>,
}

/// How a plugin's instances are shared between messages.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Keep instances warm and reuse them; an instance is thrown away after a
    /// trap, a timeout or `recycle_after` messages.
    #[default]
    Reuse,
    /// A fresh instance for every message: no state survives a message.
    Message,
}

/// The `backoff` key: one starting delay or a whole schedule.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum BackoffSpec {
    /// The first delay; later ones double up to `backoff_max`.
    Initial(String),
    /// The delay before each retry; the last one repeats.
    Schedule(Vec<String>),
}

/// The settings a plugin runs with: the manifest with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSettings {
    /// Subjects from the manifest, if it overrides the plugin's own.
    pub subjects: Option<Vec<String>>,
    /// The queue group to subscribe in.
    pub queue_group: String,
    /// `[config]`, every value as a string.
    pub config: BTreeMap<String, String>,
    /// Messages handled at once.
    pub concurrency: usize,
    /// Time one call may take.
    pub timeout: Duration,
    /// Memory cap in bytes.
    pub memory_bytes: usize,
    /// Instance reuse policy.
    pub isolation: Isolation,
    /// Messages an instance serves before it is replaced.
    pub recycle_after: u64,
    /// Most outputs per call.
    pub max_outputs: usize,
    /// Most output payload and header bytes per call.
    pub max_output_bytes: usize,
    /// Guest log lines per second (`u32::MAX`: no limit).
    pub log_lines_per_second: u32,
    /// Deliveries before giving up on transient failures.
    pub max_attempts: u32,
    /// Delay before each retry.
    pub backoff: Backoff,
    /// Prefix of dead-letter subjects.
    pub dead_letter_prefix: String,
    /// A stream that keeps the dead letters (capturing `<prefix>>`), and
    /// whether to create it; in either mode.
    pub dead_letter_stream: Option<(String, bool)>,
    /// Allow-list of output subject patterns, if any.
    pub publish_allow: Option<Vec<String>>,
    /// JetStream delivery, when `mode = "jetstream"`.
    pub jetstream: Option<JetStreamSettings>,
    /// What the plugin may reach beyond its message.
    pub capabilities: crate::capabilities::Capabilities,
}

/// The key-value bucket of handled event ids, unless `delivery.dedup_bucket`
/// names another; never grantable to a plugin.
pub const DEFAULT_DEDUP_BUCKET: &str = "evhost-dedup";

impl ManifestError {
    /// `self`, for the manifest `text`, with the line and column of the
    /// value it is about: a value out of range says where it is, as a
    /// syntax error does. Left as it is when the key is not in `text`
    /// (a default, or a `--config` given on the command line).
    pub fn located(self, text: &str) -> Self {
        match self {
            ManifestError::Invalid(message) => match key_position(text, &message) {
                Some((line, column)) => ManifestError::Syntax {
                    line,
                    column,
                    message,
                },
                None => ManifestError::Invalid(message),
            },
            other => other,
        }
    }

    /// The error as `FILE:LINE:COLUMN: message` (or `FILE: message` when it
    /// has no position), the form compilers use.
    pub fn in_file(&self, file: &Path) -> String {
        match self {
            ManifestError::Syntax { .. } => format!("{}:{self}", file.display()),
            ManifestError::Invalid(_) => format!("{}: {self}", file.display()),
        }
    }
}

/// Where in `text` the value of the key that `message` is about lies: the
/// message starts with the key's dotted path (`limits.timeout_ms must…`,
/// `subjects: …`).
fn key_position(text: &str, message: &str) -> Option<(usize, usize)> {
    let path = message.split([' ', ':']).next()?;
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let (_, value) = table.iter().find(|(k, _)| k.get_ref().as_ref() == part)?;
        if parts.peek().is_none() {
            return Some(line_column(text, value.span().start));
        }
        match value.get_ref() {
            toml::de::DeValue::Table(inner) => table = inner,
            _ => return None,
        }
    }
    None
}

impl Manifest {
    /// Parses manifest text. Errors carry the line and column.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        parse_strict(text)
    }

    /// Reads and parses `path`; a missing file is an empty manifest.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|e| anyhow::anyhow!("{}:{e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(anyhow::anyhow!("{}: cannot read: {e}", path.display())),
        }
    }

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
        let d = &self.delivery;
        let invalid = |msg: String| Err(ManifestError::Invalid(msg));
        if d.mode.unwrap_or_default() == DeliveryMode::Core {
            let js_only = [
                ("stream", d.stream.is_some()),
                ("durable", d.durable.is_some()),
                ("create_stream", d.create_stream.is_some()),
                ("stream_subjects", d.stream_subjects.is_some()),
                ("ack_wait", d.ack_wait.is_some()),
                ("deliver", d.deliver.is_some()),
                ("pull_batch", d.pull_batch.is_some()),
                ("dedup", d.dedup.is_some()),
                ("dedup_bucket", d.dedup_bucket.is_some()),
                ("dedup_ttl", d.dedup_ttl.is_some()),
            ];
            if let Some((key, _)) = js_only.iter().find(|(_, set)| *set) {
                return invalid(format!(
                    "delivery.{key} needs delivery.mode = \"jetstream\""
                ));
            }
            return Ok(None);
        }
        let Some(stream) = d.stream.clone() else {
            return invalid("delivery.mode = \"jetstream\" needs delivery.stream".into());
        };
        if !valid_name(&stream) {
            return invalid(format!(
                "delivery.stream {stream:?} is not a valid stream name"
            ));
        }
        let durable = d
            .durable
            .clone()
            .unwrap_or_else(|| format!("evhost-{name}"));
        if !valid_name(&durable) {
            return invalid(format!(
                "delivery.durable {durable:?} is not a valid consumer name"
            ));
        }
        let create_stream = match (
            d.create_stream.unwrap_or(false),
            &d.stream_subjects,
            &self.subjects,
        ) {
            (false, Some(_), _) => {
                return invalid(
                    "delivery.stream_subjects needs delivery.create_stream = true".into(),
                );
            }
            (false, None, _) => None,
            (true, Some(list), _) | (true, None, Some(list)) => Some(list.clone()),
            (true, None, None) => {
                return invalid(
                    "delivery.create_stream needs delivery.stream_subjects (or top-level subjects) to capture".into(),
                );
            }
        };
        if let Some(bad) = create_stream
            .iter()
            .flatten()
            .find(|s| !crate::subject::is_valid_pattern(s))
        {
            return invalid(format!(
                "delivery.stream_subjects: {bad:?} is not a valid NATS subject"
            ));
        }
        // A stream the host creates captures what a plugin may subscribe
        // to, no more: not `$KV.>`, `_INBOX.>` or a bare `>`.
        if let Some(Err(denied)) = create_stream
            .as_deref()
            .map(crate::subject::check_subscriptions)
        {
            return invalid(format!("delivery.stream_subjects: {denied}"));
        }
        let ack_wait = match &d.ack_wait {
            Some(s) => parse_duration("delivery.ack_wait", s)?,
            None => Duration::from_secs(30),
        };
        if ack_wait < Duration::from_secs(1) {
            return invalid("delivery.ack_wait must be at least 1s".into());
        }
        let start = match &d.deliver {
            Some(text) => crate::consumers::StartAt::parse(text)
                .map_err(|e| ManifestError::Invalid(format!("delivery.deliver {e}")))?,
            None => crate::consumers::StartAt::default(),
        };
        let pull_batch = d.pull_batch.unwrap_or(DEFAULT_PULL_BATCH);
        if pull_batch == 0 || pull_batch > 10_000 {
            return invalid(format!(
                "delivery.pull_batch must be between 1 and 10000, not {pull_batch}"
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
                "delivery.dedup_bucket {dedup_bucket:?} is not a valid bucket name"
            ));
        }
        let dedup_ttl = match &d.dedup_ttl {
            Some(s) => parse_duration("delivery.dedup_ttl", s)?,
            None => Duration::from_secs(24 * 3600),
        };
        let dead_letter_stream = resolve_dead_letter_stream(d)?;
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

/// Parses TOML `text` into `T` (a schema with `deny_unknown_fields`): an
/// error, a syntax error or a key or type the schema does not take, carries
/// its line and column. Shared by the manifest and the host's own
/// configuration file (`host_config.rs`).
pub fn parse_strict<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ManifestError> {
    toml::from_str(text).map_err(|err| {
        let (line, column) = err
            .span()
            .map(|span| line_column(text, span.start))
            .unwrap_or((1, 1));
        ManifestError::Syntax {
            line,
            column,
            message: err.message().replace('\n', " ").trim().to_string(),
        }
    })
}

/// A stream, consumer or bucket name: letters, digits, `-` and `_`.
fn valid_name(s: &str) -> bool {
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

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn unknown_key_reports_line_and_column() {
        let err = Manifest::parse("[limits]\nconcurrency = 2\ncolour = 1\n").unwrap_err();
        match err {
            ManifestError::Syntax {
                line,
                column,
                message,
            } => {
                assert_eq!((line, column), (3, 1));
                assert!(message.contains("unknown field `colour`"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn type_error_reports_line_and_column() {
        let err = Manifest::parse("[limits]\ntimeout_ms = \"soon\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("2:14: "), "{text}");
        assert!(!text.contains('\n'));
    }

    #[test]
    fn jetstream_settings_resolve_with_defaults() {
        let text =
            "[delivery]\nmode = \"jetstream\"\nstream = \"ORDERS\"\ndedup = \"json:/event_id\"\n";
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
    fn jetstream_keys_need_jetstream_mode_and_a_stream() {
        let err = Manifest::parse("[delivery]\nstream = \"X\"")
            .unwrap()
            .resolve("p")
            .unwrap_err();
        assert!(err.to_string().contains("needs delivery.mode"), "{err}");
        let err = Manifest::parse("[delivery]\nmode = \"jetstream\"")
            .unwrap()
            .resolve("p")
            .unwrap_err();
        assert!(err.to_string().contains("needs delivery.stream"), "{err}");
        let err = Manifest::parse(
            "[delivery]\nmode = \"jetstream\"\nstream = \"S\"\ncreate_stream = true",
        )
        .unwrap()
        .resolve("p")
        .unwrap_err();
        assert!(err.to_string().contains("stream_subjects"), "{err}");
    }

    #[test]
    fn a_created_stream_may_not_capture_system_subjects() {
        for bad in ["$KV.>", "_INBOX.>", ">", "*.orders"] {
            let err = Manifest::parse(&format!(
                "[delivery]\nmode = \"jetstream\"\nstream = \"S\"\ncreate_stream = true\nstream_subjects = [\"orders.>\", \"{bad}\"]"
            ))
            .unwrap()
            .resolve("p")
            .unwrap_err()
            .to_string();
            assert!(err.starts_with("delivery.stream_subjects: "), "{err}");
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
                "[delivery]\nmode = \"jetstream\"\nstream = \"S\"\npull_batch = 0",
                "pull_batch",
            ),
            (
                "[delivery]\npull_batch = 64",
                "pull_batch needs delivery.mode",
            ),
        ] {
            let err = Manifest::parse(text).unwrap().resolve("p").unwrap_err();
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }
}
