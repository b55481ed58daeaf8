//! Publishing that survives a crash: through JetStream, awaiting the
//! server's ack, wherever a stream captures the subject; on core NATS (and
//! flushed) elsewhere. Used for a JetStream plugin's outputs and dead
//! letters, and by `evhost dlq replay`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::GetStreamByNameErrorKind};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;

/// How long the answer to "does a stream capture this subject?" is trusted.
const CAPTURE_TTL: Duration = Duration::from_secs(10);
/// Most subjects remembered; past that the memory starts over.
const CAPTURE_MAX: usize = 10_000;

/// Which subjects a stream captures, asked of the server and remembered for
/// [`CAPTURE_TTL`]. Publishing a JetStream message to a subject no stream
/// captures would be delivered to plain subscribers and then wait for an
/// ack that never comes, so the host asks first.
#[derive(Default)]
pub struct Captures {
    known: Mutex<HashMap<String, (bool, Instant)>>,
}

impl Captures {
    /// Whether some stream captures `subject`.
    pub async fn captured(&self, js: &jetstream::Context, subject: &str) -> Result<bool, String> {
        if let Some((captured, at)) = self.known.lock().unwrap().get(subject)
            && at.elapsed() < CAPTURE_TTL
        {
            return Ok(*captured);
        }
        let captured = match js.stream_by_subject(subject).await {
            Ok(_) => true,
            Err(err) if err.kind() == GetStreamByNameErrorKind::NotFound => false,
            Err(err) => return Err(format!("cannot ask which stream captures {subject}: {err}")),
        };
        let mut known = self.known.lock().unwrap();
        if known.len() >= CAPTURE_MAX {
            known.clear();
        }
        known.insert(subject.to_string(), (captured, Instant::now()));
        Ok(captured)
    }
}

/// Publishes through JetStream and waits for the ack where a stream captures
/// the subject; elsewhere publishes on core NATS and flushes.
pub async fn publish_durably(
    client: &Client,
    js: &jetstream::Context,
    captures: &Captures,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<(), String> {
    if captures.captured(js, &subject).await? {
        let ack = js
            .publish_with_headers(subject.clone(), headers, payload)
            .await
            .map_err(|e| format!("{subject}: {e}"))?;
        ack.await.map(|_| ()).map_err(|e| format!("{subject}: {e}"))
    } else {
        client
            .publish_with_headers(subject, headers, payload)
            .await
            .map_err(|e| e.to_string())?;
        client.flush().await.map_err(|e| e.to_string())
    }
}
