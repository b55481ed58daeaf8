//! The plugin manifest as its author writes it: `NAME.toml` beside
//! `NAME.wasm`, its serde schema, parsed strictly (an unknown key or a wrong
//! type is an error with its line and column, [`parse_strict`], which the
//! host's configuration file shares). `manifest_resolve.rs` turns it into
//! the `PluginSettings` the host runs the plugin with.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

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
    /// Present: the plugin consumes a JetStream stream; absent: core NATS.
    pub jetstream: Option<JetStreamSection>,
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

/// `[delivery]`: retries and dead letters, in either mode.
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
    /// A stream that should capture dead letters.
    pub dead_letter_stream: Option<String>,
    /// Create `dead_letter_stream` if missing, capturing `<prefix>>`.
    pub create_dead_letter_stream: Option<bool>,
}

/// `[jetstream]`: the stream a plugin consumes and how. Its presence is
/// what makes a plugin a JetStream one, so none of these keys can reach a
/// core NATS plugin.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JetStreamSection {
    /// The stream to consume from (required).
    pub stream: Option<String>,
    /// The durable consumer's name (default `evhost-<plugin>`).
    pub durable: Option<String>,
    /// Create `stream` if it does not exist, capturing `stream_subjects`.
    pub create_stream: Option<bool>,
    /// Subjects a created stream captures (default: the plugin's subjects).
    pub stream_subjects: Option<Vec<String>>,
    /// How long the server waits for an ack before redelivering (default `"30s"`).
    pub ack_wait: Option<String>,
    /// Where the consumer of a subject the plugin did not consume before
    /// starts: `"all"` (default), `"new"`, `"last"`, `"last_per_subject"`,
    /// `"sequence:N"` or `"time:RFC3339"`. A subject already consumed
    /// continues where it was.
    pub deliver: Option<String>,
    /// How many messages the host asks the server for at a time, beyond
    /// those in flight (default 256). Waiting messages count against
    /// `ack_wait`, so keep `pull_batch` × handler time / `concurrency` under it.
    pub pull_batch: Option<usize>,
    /// How to find a message's id for idempotency: `"header:Nats-Msg-Id"`
    /// or `"json:/event_id"` (a JSON pointer).
    pub dedup: Option<String>,
    /// The key-value bucket of handled ids (default `"evhost-dedup"`).
    pub dedup_bucket: Option<String>,
    /// How long a handled id is remembered (default `"24h"`).
    pub dedup_ttl: Option<String>,
}

/// The keys that were `[delivery]`'s before they moved to `[jetstream]`
/// (and `mode`, which the table replaced): a manifest or host file still
/// using one gets a hint with serde's unknown-field error.
const MOVED_TO_JETSTREAM: [&str; 11] = [
    "mode",
    "stream",
    "durable",
    "create_stream",
    "stream_subjects",
    "ack_wait",
    "deliver",
    "pull_batch",
    "dedup",
    "dedup_bucket",
    "dedup_ttl",
];

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
        let mut message = one_line_message(err.message());
        if let Some(hint) = moved_key_hint(&message) {
            message.push_str(hint);
        }
        ManifestError::Syntax {
            line,
            column,
            message,
        }
    })
}

/// A hint for an unknown `[delivery]` key that moved to `[jetstream]`
/// (serde's message names the key and, for `[delivery]`, expects
/// `max_attempts` among others).
fn moved_key_hint(message: &str) -> Option<&'static str> {
    let key = message.strip_prefix("unknown field `")?.split('`').next()?;
    if !message.contains("`max_attempts`") || !MOVED_TO_JETSTREAM.contains(&key) {
        return None;
    }
    Some(if key == "mode" {
        "; a [jetstream] table makes a plugin a JetStream one (`mode` is gone)"
    } else {
        "; JetStream keys moved from [delivery] to the [jetstream] table"
    })
}

/// The parser's message as one line: its own line breaks become spaces, and
/// a control character quoted from the text (a `\r` written as an escape in
/// a string, say) is shown escaped, so the error stays one line.
fn one_line_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.trim().chars() {
        match c {
            '\n' => out.push(' '),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
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
    fn a_control_character_quoted_from_the_text_is_escaped() {
        // Found by the manifest fuzzer: a `\r` escape in an enum value was
        // quoted raw in the error.
        let err = Manifest::parse("[limits]\nisolation = \"a\\rb\"\n")
            .unwrap_err()
            .to_string();
        assert!(!err.contains(['\n', '\r']), "{err:?}");
        assert!(err.contains("a\\rb"), "{err}");
    }

    #[test]
    fn a_jetstream_key_under_delivery_says_where_it_moved() {
        let err = Manifest::parse("[delivery]\nmax_attempts = 2\nstream = \"S\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("3:1: unknown field `stream`"), "{err}");
        assert!(
            err.ends_with("JetStream keys moved from [delivery] to the [jetstream] table"),
            "{err}"
        );
        let err = Manifest::parse("[delivery]\nmode = \"jetstream\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("2:1: unknown field `mode`"), "{err}");
        assert!(err.contains("a [jetstream] table makes"), "{err}");
        // The same key elsewhere is plainly unknown; in [jetstream] it is at home.
        let err = Manifest::parse("[limits]\nstream = \"S\"\n")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("[jetstream]"), "{err}");
        let m = Manifest::parse("[jetstream]\nstream = \"S\"\nack_wait = \"5s\"\n").unwrap();
        assert_eq!(m.jetstream.unwrap().stream.as_deref(), Some("S"));
        // A core manifest cannot carry a JetStream key at all.
        assert!(Manifest::parse("").unwrap().jetstream.is_none());
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
}
