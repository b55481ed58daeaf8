//! evhost: a host for NATS event handlers written as WebAssembly components.
//!
//! A message travels: [`bus`] receives it on a plugin's subscription,
//! [`dispatch`] takes it in one of the plugin's [`lane`]s (each on a
//! [`shard`]: a thread with its own connection) when a handler slot is free
//! and calls the current
//! [`plugin`] version inside the [`runtime`]'s sandbox ([`sandbox`]);
//! [`outcome`] decides between publishing the outputs, retrying after a
//! [`backoff`], or a dead letter ([`deadletter`]). [`registry`] swaps plugin
//! versions as [`watcher`] sees their files change; [`host::run`] ties it
//! together. See `docs/architecture.md`.

pub mod backoff;
pub mod bus;
pub mod config;
pub mod deadletter;
pub mod dedup;
pub mod dev;
pub mod dispatch;
pub mod dlq;
pub mod errors;
pub mod host;
pub mod invoke;
pub mod jetstream;
pub mod lane;
pub mod logging;
pub mod merge;
pub mod metrics;
pub mod outcome;
pub mod plugin;
pub mod registry;
pub mod runtime;
pub mod sandbox;
pub mod shard;
pub mod subject;
pub mod watcher;
