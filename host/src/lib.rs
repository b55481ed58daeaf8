//! evhost: a host for NATS event handlers written as WebAssembly components.
//!
//! A message travels: [`bus`] receives it on a plugin's subscription,
//! [`core_delivery`] or [`jetstream_delivery`] takes it in one of the
//! plugin's [`lane`]s (on core NATS each on a [`shard`]: a thread with its
//! own connection) when a handler slot is free, and the [`driver`] calls the
//! current [`plugin`] version inside the [`runtime`]'s sandbox ([`sandbox`]);
//! [`outcome`] decides between publishing the outputs, retrying after a
//! [`backoff`], or a dead letter ([`deadletter`]). [`registry`] swaps plugin
//! versions as [`watcher`] sees their files change; [`host::run`] ties it
//! together. See `docs/architecture.md`.

pub mod backoff;
pub mod bus;
pub mod capabilities;
pub mod cli_args;
pub mod config;
pub mod consumers;
pub mod core_delivery;
pub mod dead_letter_stream;
pub mod deadletter;
pub mod dedup;
pub mod delivery;
pub mod dev;
pub mod dlq;
pub mod driver;
pub mod durable_publish;
pub mod errors;
#[doc(hidden)]
pub mod fuzzing;
pub mod guest_log;
pub mod health;
pub mod host;
pub mod host_config;
pub mod http_allow;
pub mod http_pool;
pub mod idempotency;
pub mod invoke;
pub mod jetstream_binding;
pub mod jetstream_delivery;
pub mod keyvalue;
pub mod kv_bucket;
pub mod kv_memory;
pub mod lane;
pub mod listener;
pub mod log_limit;
pub mod logging;
pub mod memory_cap;
pub mod merge;
pub mod metrics;
pub mod nats_args;
pub mod nats_connection;
pub mod outbound_http;
pub mod outcome;
pub mod output_rules;
pub mod plugin;
pub mod plugin_build;
pub mod plugin_defaults;
pub mod plugin_file;
pub mod plugin_status;
pub mod publish;
pub mod registry;
pub mod run_args;
pub mod runtime;
pub mod sandbox;
pub mod scaffold;
pub mod serve;
pub mod shard;
pub mod signals;
pub mod slot;
pub mod status;
pub mod subject;
pub mod trace_context;
pub mod watcher;
