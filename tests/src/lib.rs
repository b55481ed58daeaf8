//! The harness for evhost's end-to-end tests.
//!
//! Every part is real: a `nats-server` process per test ([`NatsServer`], from
//! the `evhost-nats-process` kit, or a few clustered ones, [`Cluster`]), the
//! `evhost` binary per test ([`Host`]), and plugins compiled to
//! `wasm32-wasip2` by this crate's build script ([`wasm`]), copied into a
//! temporary plugins folder ([`PluginDir`]). Dropping a [`NatsServer`], a
//! [`Cluster`] or a [`Host`] kills its processes.
//!
//! Waits take an upper bound ([`WAIT`]) and fail with what was awaited and the
//! host's captured log; nothing here asserts how fast anything is.
//!
//! One concept per module, all re-exported here: `nats` (the server),
//! `cluster` (servers clustered with JetStream), `host`
//! (the `evhost run` process) and `log_line` (its log), `cli` (`evhost`
//! commands run to their end), `plugin_dir` (built plugins and the folder),
//! `messages` (the test's NATS client), `dead_letter`, `orders` (the example
//! event), `jetstream` (consumers and buckets as the server shows them), `listener`
//! (the host's HTTP endpoints), `otlp` (a trace receiver),
//! `sdk_scenarios` (what every language's SDK must do) and `poll` (waiting).

pub mod certs;
pub mod component_cache;
pub mod javascript;
pub mod otlp;
pub mod provider;
pub mod python;
pub mod sdk_scenarios;

mod cli;
mod cluster;
mod dead_letter;
mod host;
mod jetstream;
mod listener;
mod log_line;
mod messages;
mod nats;
mod orders;
mod plugin_dir;
mod poll;

pub use cli::{CliOutput, evhost, evhost_in, evhost_with_timeout, mentions_line_column};
pub use cluster::Cluster;
pub use dead_letter::{DeadLetter, next_dead_letter};
pub use host::{Host, HostOptions, evhost_bin};
pub use jetstream::{consumer_name_of, consumer_of, consumers_of, kv_bucket, kv_value};
pub use listener::{http_get, plugin_entry, plugins_json};
pub use log_line::LogLine;
pub use messages::{
    connect, describe, echo_roundtrip, header, header_values, next_message, pending_message,
    publish, subscribe,
};
pub use nats::{NatsServer, free_port, nats_server_bin};
pub use orders::{OrderCreated, OrderItem};
pub use plugin_dir::{PluginDir, edited, wasm};
pub use poll::{WAIT, eventually};
