//! Running a throwaway `nats-server`, as `evhost dev`, the end-to-end tests
//! (`tests/`) and the benchmark (`host/benches/overhead.rs`) all do, plus the
//! two small things those three also share.
//!
//! - [`binary`]: finding the `nats-server` executable (PATH, then `/usr/sbin`
//!   and `/usr/local/sbin`), or one line saying how to install it.
//! - [`port`]: a free loopback port (never NATS's standard 4222).
//! - [`server`]: [`NatsServer`], a server with JetStream and a store folder of
//!   its own, optionally from a config file (users, TLS, ...), waited on until
//!   it accepts connections; stop, restart on the same port, killed on drop.
//! - [`poll`]: the one polling helper ("check until it holds, or give up"),
//!   blocking and (feature `tokio`) async.
//! - [`wasm_build`]: the nested `cargo build --release --target
//!   wasm32-wasip2` of plugin packages that the tests' build script and the
//!   benchmark both run.
//! - [`component_cache`]: components built by componentize-py or
//!   componentize-js, kept by the digest of their inputs (the benchmark's
//!   Python and JavaScript plugins).
//!
//! Everything returns [`Result`]: `evhost dev` turns an error into one line;
//! the test harness panics with the error and the server's log.

pub mod binary;
pub mod component_cache;
pub mod poll;
pub mod port;
pub mod server;
pub mod wasm_build;

pub use binary::{INSTALL, find};
pub use port::{free_port, is_free};
pub use server::{Error, NatsServer, Options, Port};
