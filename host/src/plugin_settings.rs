//! The settings a plugin runs with: its manifest resolved, every default
//! filled in and every value checked (by `manifest_resolve.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::manifest::Isolation;

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
    /// JetStream delivery, when the manifest has a `[jetstream]` table.
    pub jetstream: Option<JetStreamSettings>,
    /// What the plugin may reach beyond its message.
    pub capabilities: crate::capabilities::Capabilities,
}

/// The key-value bucket of handled event ids, unless `jetstream.dedup_bucket`
/// names another; never grantable to a plugin.
pub const DEFAULT_DEDUP_BUCKET: &str = "evhost-dedup";
