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

pub(crate) mod backoff;
pub mod bus;
pub(crate) mod capabilities;
pub mod cli_args;
pub mod consumer_admin;
pub(crate) mod consumers;
pub(crate) mod core_delivery;
pub(crate) mod dead_letter_prefixes;
pub(crate) mod dead_letter_stream;
pub(crate) mod deadletter;
pub(crate) mod dedup;
pub(crate) mod delivery;
pub mod dev;
pub mod dlq;
pub(crate) mod driver;
pub(crate) mod durable_publish;
pub mod errors;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod guest_log;
pub(crate) mod health;
pub mod host;
pub(crate) mod host_config;
pub(crate) mod http_allow;
pub(crate) mod http_call;
pub(crate) mod http_pool;
pub(crate) mod idempotency;
pub mod invoke;
pub(crate) mod jetstream_binding;
pub(crate) mod jetstream_delivery;
pub(crate) mod keyvalue;
pub mod kv_bucket;
pub(crate) mod kv_memory;
pub(crate) mod lane;
pub(crate) mod listener;
pub(crate) mod log_limit;
pub mod logging;
pub(crate) mod manifest;
pub(crate) mod manifest_resolve;
pub(crate) mod memory_cap;
pub(crate) mod merge;
pub(crate) mod metrics;
pub mod nats_args;
pub mod nats_connection;
pub(crate) mod outbound_http;
pub(crate) mod outcome;
pub(crate) mod output_rules;
pub(crate) mod plugin;
pub mod plugin_build;
pub(crate) mod plugin_defaults;
pub(crate) mod plugin_file;
pub(crate) mod plugin_load;
pub(crate) mod plugin_settings;
pub(crate) mod plugin_status;
pub mod publish;
pub(crate) mod registry;
pub mod replicas;
pub(crate) mod request_body;
pub mod run_args;
pub(crate) mod runtime;
pub(crate) mod sandbox;
pub mod scaffold;
pub(crate) mod serve;
pub(crate) mod shard;
pub mod signals;
pub(crate) mod slot;
pub mod status;
pub(crate) mod striped_metrics;
pub(crate) mod subject;
pub(crate) mod text_table;
pub mod trace_context;
pub(crate) mod unbound;
pub(crate) mod watcher;
