//! Whether the host is ready to take messages, as `/readyz` reports it:
//! connected to NATS (every connection: the main one and each shard's),
//! every plugin in the folder loaded with its consumers bound or rejected
//! for good (a broken file: the host has done all it can), none waiting to
//! bind (its stream not there yet, JetStream not answering: the host is
//! still getting there, `unbound.rs`), and not draining.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_nats::Client;
use async_nats::connection::State;

/// What the host has got to; shared with the HTTP listener.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Each connection that must be up, by the name metrics show.
    clients: Mutex<Vec<(String, Client)>>,
    loaded: AtomicBool,
    /// The plugins waiting to bind, in name order.
    waiting: Mutex<Vec<String>>,
    draining: AtomicBool,
}

/// Why the host is not ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// Stopping: finishing messages in flight.
    #[error("draining: the host is stopping")]
    Draining,
    /// Not connected yet, or a connection is lost (and being re-established).
    #[error("not connected to NATS")]
    Disconnected,
    /// The plugins of the folder are still being loaded.
    #[error("loading plugins")]
    Loading,
    /// These plugins (names, comma-separated) have no version serving and
    /// are loaded again until their NATS side can be set up.
    #[error("waiting to bind {0} (its stream or JetStream not available yet; tried again)")]
    Binding(String),
}

impl Readiness {
    /// Counts `client` among the connections that must be up, as `name`.
    pub fn watch(&self, name: &str, client: Client) {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.to_string(), client));
    }

    /// Each connection's name and whether it is up now.
    pub fn connections(&self) -> Vec<(String, bool)> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .iter()
            .map(|(name, c)| (name.clone(), c.connection_state() == State::Connected))
            .collect()
    }

    /// Every plugin of the folder has been loaded (and its consumers bound)
    /// or reported as failed.
    pub fn loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    /// The plugins that wait to bind now (none: an empty list).
    pub fn waiting_to_bind(&self, plugins: Vec<String>) {
        *self.waiting.lock().unwrap_or_else(|e| e.into_inner()) = plugins;
    }

    /// The host has begun to stop.
    pub fn draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Ready, or why not.
    pub fn check(&self) -> Result<(), NotReady> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let connected = !clients.is_empty()
            && clients
                .iter()
                .all(|(_, c)| c.connection_state() == State::Connected);
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        verdict(
            self.draining.load(Ordering::Acquire),
            connected,
            self.loaded.load(Ordering::Acquire),
            &waiting,
        )
    }
}

/// Ready when not draining, connected, loaded and with no plugin `waiting`
/// to bind; otherwise the first of these that fails, in that order.
fn verdict(
    draining: bool,
    connected: bool,
    loaded: bool,
    waiting: &[String],
) -> Result<(), NotReady> {
    if draining {
        Err(NotReady::Draining)
    } else if !connected {
        Err(NotReady::Disconnected)
    } else if !loaded {
        Err(NotReady::Loading)
    } else if !waiting.is_empty() {
        Err(NotReady::Binding(waiting.join(", ")))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_connected_loaded_bound_and_not_draining() {
        let none: &[String] = &[];
        let two = ["echo".to_string(), "tally".to_string()];
        assert_eq!(verdict(false, true, true, none), Ok(()));
        assert_eq!(verdict(false, true, false, none), Err(NotReady::Loading));
        assert_eq!(
            verdict(false, false, true, none),
            Err(NotReady::Disconnected)
        );
        assert_eq!(verdict(true, true, true, none), Err(NotReady::Draining));
        assert_eq!(verdict(true, false, false, &two), Err(NotReady::Draining));
        assert_eq!(verdict(false, true, false, &two), Err(NotReady::Loading));
        let waiting = verdict(false, true, true, &two).unwrap_err();
        assert_eq!(waiting, NotReady::Binding("echo, tally".into()));
        assert_eq!(
            waiting.to_string(),
            "waiting to bind echo, tally (its stream or JetStream not available yet; tried again)"
        );
    }

    #[test]
    fn nothing_watched_is_not_connected() {
        let readiness = Readiness::default();
        readiness.loaded();
        assert_eq!(readiness.check(), Err(NotReady::Disconnected));
    }
}
