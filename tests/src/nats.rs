//! [`NatsServer`]: a test's own `nats-server`, from the `evhost-nats-process`
//! kit (which `evhost dev` and the benchmark use too), started with
//! JetStream on a free port; a failure to start panics with the server's log.

use std::path::PathBuf;

use evhost_nats_process as kit;

use crate::WAIT;

/// The `nats-server` binary (PATH, then `/usr/sbin`), or a panic saying how
/// to install it.
pub fn nats_server_bin() -> PathBuf {
    kit::find(None).unwrap_or_else(|e| panic!("{e}"))
}

/// A free TCP port on 127.0.0.1, never NATS's standard 4222.
pub fn free_port() -> u16 {
    kit::free_port().unwrap_or_else(|e| panic!("bind an ephemeral port: {e}"))
}

/// A `nats-server` process with JetStream, on its own port and store folder;
/// killed on drop.
pub struct NatsServer {
    server: kit::NatsServer,
}

impl NatsServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts a server with a config file: `listen` on a free loopback port
    /// and `jetstream` with its own store, then `config` (users, TLS, ...).
    /// Waits until it accepts TCP connections.
    pub fn start_with_config(config: &str) -> Self {
        Self::start_with(Some(config.to_string()))
    }

    fn start_with(config: Option<String>) -> Self {
        let server = kit::NatsServer::start(kit::Options {
            config,
            startup_timeout: WAIT,
            ..kit::Options::default()
        })
        .unwrap_or_else(|e| panic!("{e}; its log:\n{}", e.log().unwrap_or_default()));
        NatsServer { server }
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// What the server has logged.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Stops the server (kills it).
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Stops the server and starts it again on the same port and store.
    pub fn restart(&mut self) {
        if let Err(e) = self.server.restart() {
            panic!("{e}; its log:\n{}", self.server.log());
        }
    }
}
