//! Idle outbound HTTP connections of one plugin version, kept for reuse so a
//! handler that calls its provider once per message does not pay a TCP (and
//! TLS) set-up per message.
//!
//! A small pool over hyper's connection API rather than hyper-util's pooling
//! client, because that client cannot tell the time spent connecting from
//! the time spent waiting for the answer, and the manifest bounds the two
//! separately (`http_connect_timeout_ms`, `http_first_byte_timeout_ms`).
//! A connection goes back to the pool only once its response body has been
//! read to the end; at most `max_idle` wait per destination, each for at most
//! [`IDLE`]; the server closing one removes it.
//!
//! A connection is driven by a task on the runtime that opened it, so it is
//! reused only from that runtime's thread (the shard, see `shard.rs`): a
//! request sent on a connection driven by another thread costs a cross-thread
//! wake-up each way.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;

use crate::request_body::RequestBody;

/// How long an unused connection is kept.
pub const IDLE: Duration = Duration::from_secs(30);

/// Where a connection goes: requests to one destination share connections.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// TLS or not.
    pub https: bool,
    /// The host as the URL names it.
    pub host: String,
    /// The port, the scheme's default filled in.
    pub port: u16,
    /// The shard whose thread drives the connection (`None`: the main
    /// runtime, where JetStream plugins run).
    pub shard: Option<usize>,
}

/// A connection's sending half, as the pool holds it.
pub type Sender = SendRequest<RequestBody>;

/// The idle connections of one plugin version.
pub struct Pool {
    idle: Mutex<HashMap<Destination, Vec<(Sender, Instant)>>>,
    max_idle: usize,
}

impl Pool {
    /// A pool keeping at most `max_idle` connections per destination.
    pub fn new(max_idle: usize) -> Self {
        Pool {
            idle: Mutex::new(HashMap::new()),
            max_idle,
        }
    }

    /// The most recently used open connection to `to`, if any; closed and
    /// expired ones are dropped on the way.
    pub fn take(&self, to: &Destination) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap();
        let waiting = idle.get_mut(to)?;
        let now = Instant::now();
        while let Some((sender, since)) = waiting.pop() {
            if usable(sender.is_closed(), now.saturating_duration_since(since)) {
                return Some(sender);
            }
        }
        None
    }

    /// Keeps `sender` for the next request to `to`, unless it is closed or
    /// the destination already has `max_idle` waiting.
    pub fn put(&self, to: Destination, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        // One clock read for the whole list.
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap();
        let waiting = idle.entry(to).or_default();
        waiting.retain(|(s, since)| usable(s.is_closed(), now.saturating_duration_since(*since)));
        if waiting.len() < self.max_idle {
            waiting.push((sender, now));
        }
    }
}

/// Whether an idle connection may serve another request.
fn usable(closed: bool, idle_for: Duration) -> bool {
    !closed && idle_for < IDLE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_or_stale_connections_are_not_reused() {
        assert!(usable(false, Duration::ZERO));
        assert!(usable(false, IDLE - Duration::from_millis(1)));
        assert!(!usable(false, IDLE));
        assert!(!usable(true, Duration::ZERO));
    }
}
