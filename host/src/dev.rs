//! `evhost dev`: the local loop. Starts a throwaway `nats-server` (JetStream
//! on, its store in a temporary directory) on NATS's usual port 4222 when it
//! is free, so that `evhost pub` and `evhost dlq` reach it with no flags, else
//! on a free port; runs the host against it, and stops the server on exit.
//!
//! Finding, starting and stopping the server is `evhost-nats-process`'s
//! ([`NatsServer`]); this module chooses how (the port, a process group of
//! its own) and what `evhost dev` says. The server runs in a process group of
//! its own, so a terminal's Ctrl-C (sent to the whole foreground group)
//! reaches only the host, which drains against a server that is still up and
//! then stops it. On Linux the server is also told to die with the host, so a
//! killed host leaves no server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use evhost_nats_process::{NatsServer, Options, Port};

/// The port NATS clients try when given no URL.
pub const DEFAULT_PORT: u16 = evhost_nats_process::port::STANDARD;

/// The dev `nats-server`; killed, and its store removed, on drop.
pub struct DevServer {
    server: NatsServer,
    /// The URL clients connect to.
    pub url: String,
    /// Its port.
    pub port: u16,
    /// Where JetStream keeps its data.
    pub store: Store,
}

/// The folder a [`DevServer`] keeps its JetStream data in.
pub struct Store(PathBuf);

impl Store {
    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl DevServer {
    /// Starts a server (`exe`, else the one on PATH) on `port` (0, or taken:
    /// a free one) and waits until it accepts connections. Errors are one
    /// line (a missing nats-server says how to install it).
    pub fn start(exe: Option<PathBuf>, port: u16) -> anyhow::Result<Self> {
        let server = NatsServer::start(Options {
            exe,
            port: Port::Prefer(port),
            folder_prefix: "evhost-dev-".to_string(),
            own_process_group: true,
            startup_timeout: Duration::from_secs(10),
            ..Options::default()
        })?;
        Ok(DevServer {
            url: server.url(),
            port: server.port(),
            store: Store(server.store()),
            server,
        })
    }

    /// Stops the server and removes its store; returns what it removed.
    pub fn stop(mut self) -> String {
        self.server.stop();
        let store = self.store.path().display().to_string();
        // Dropping `self` removes the server's folder and so the store.
        format!("stopped nats-server and removed its store {store}")
    }
}
