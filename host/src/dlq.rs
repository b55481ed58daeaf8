//! `evhost dlq list` and `evhost dlq replay`: read dead letters from a
//! subject (core NATS, as they arrive) or from a stream that captured them,
//! show them, or republish each to its original subject with the `Evhost-*`
//! headers dropped and the original headers kept.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{self, stream};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures::StreamExt;

use crate::deadletter;
use crate::jetstream::{Captures, publish_durably};

/// What to read dead letters from.
#[derive(Debug, Clone)]
pub struct Source {
    /// Subject filter, such as `dlq.>`.
    pub subject: String,
    /// A stream that captured the dead letters; read from its start. Without
    /// it, dead letters are read live from the subject.
    pub stream: Option<String>,
    /// Stop after this many.
    pub limit: Option<usize>,
    /// Live reading stops after this long without a message.
    pub idle: Duration,
}

/// One dead letter as read.
pub struct Letter {
    /// The dead-letter subject it was read from.
    pub subject: String,
    /// Its headers: the original ones plus `Evhost-*`.
    pub headers: HeaderMap,
    /// The original payload.
    pub payload: Bytes,
    /// Its sequence in the dead-letter stream, when read from one.
    pub seq: Option<u64>,
}

impl Letter {
    fn get(&self, name: &str) -> &str {
        self.headers.get(name).map(|v| v.as_str()).unwrap_or("-")
    }

    /// The subject to replay to: `Evhost-Original-Subject`.
    pub fn original_subject(&self) -> Option<&str> {
        self.headers
            .get(deadletter::ORIGINAL_SUBJECT)
            .map(|v| v.as_str())
    }

    /// One line for `dlq list`.
    pub fn describe(&self) -> String {
        format!(
            "{seq}\t{subject}\tkind={kind}\tattempts={attempts}\tplugin={plugin}\t{bytes} bytes\terror={error}",
            seq = self.seq.map_or("-".to_string(), |s| s.to_string()),
            subject = self.original_subject().unwrap_or(&self.subject),
            kind = self.get(deadletter::ERROR_KIND),
            attempts = self.get(deadletter::ATTEMPTS),
            plugin = self.get(deadletter::PLUGIN),
            bytes = self.payload.len(),
            error = self.get(deadletter::ERROR),
        )
    }
}

/// The headers a replayed message carries: the original ones, without any
/// `Evhost-*` header.
pub fn replay_headers(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for (name, values) in headers.iter() {
        if name.to_string().to_ascii_lowercase().starts_with("evhost-") {
            continue;
        }
        for value in values {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// Reads dead letters from `source`.
pub async fn read(client: &Client, source: &Source) -> anyhow::Result<Vec<Letter>> {
    let limit = source.limit.unwrap_or(usize::MAX);
    let mut letters = Vec::new();
    match &source.stream {
        Some(name) => {
            let js = jetstream::new(client.clone());
            let stream = js
                .get_stream(name)
                .await
                .with_context(|| format!("stream {name} not found"))?;
            let consumer: jetstream::consumer::PullConsumer = stream
                .create_consumer(pull::Config {
                    filter_subject: source.subject.clone(),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::None,
                    inactive_threshold: Duration::from_secs(30),
                    ..Default::default()
                })
                .await
                .context("cannot read the stream")?;
            while letters.len() < limit {
                let batch = consumer
                    .fetch()
                    .max_messages((limit - letters.len()).min(256))
                    .expires(source.idle)
                    .messages()
                    .await
                    .context("cannot read the stream")?;
                let before = letters.len();
                let mut batch = Box::pin(batch);
                while let Some(msg) = batch.next().await {
                    let msg = msg.map_err(|e| anyhow::anyhow!("cannot read the stream: {e}"))?;
                    let seq = msg.info().ok().map(|i| i.stream_sequence);
                    letters.push(Letter {
                        subject: msg.subject.to_string(),
                        headers: msg.headers.clone().unwrap_or_default(),
                        payload: msg.payload.clone(),
                        seq,
                    });
                }
                if letters.len() == before {
                    break; // nothing more within the idle time
                }
            }
        }
        None => {
            let mut sub = client
                .subscribe(source.subject.clone())
                .await
                .context("cannot subscribe")?;
            while letters.len() < limit {
                match tokio::time::timeout(source.idle, sub.next()).await {
                    Ok(Some(msg)) => letters.push(Letter {
                        subject: msg.subject.to_string(),
                        headers: msg.headers.unwrap_or_default(),
                        payload: msg.payload,
                        seq: None,
                    }),
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
    Ok(letters)
}

/// Republishes each letter to its original subject (through JetStream where
/// a stream captures it), then, when read from a stream, deletes it there so
/// it is not replayed twice. Returns how many were replayed.
pub async fn replay(client: &Client, source: &Source, letters: &[Letter]) -> anyhow::Result<usize> {
    let js = jetstream::new(client.clone());
    let captures = Captures::default();
    let dead_stream: Option<stream::Stream> = match &source.stream {
        Some(name) => Some(
            js.get_stream(name)
                .await
                .with_context(|| format!("stream {name} not found"))?,
        ),
        None => None,
    };
    let mut replayed = 0;
    for letter in letters {
        let Some(original) = letter.original_subject() else {
            eprintln!(
                "skipped {}: no {} header",
                letter.subject,
                deadletter::ORIGINAL_SUBJECT
            );
            continue;
        };
        publish_durably(
            client,
            &js,
            &captures,
            original.to_string(),
            replay_headers(&letter.headers),
            letter.payload.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot replay to {original}: {e}"))?;
        if let (Some(stream), Some(seq)) = (&dead_stream, letter.seq) {
            stream
                .delete_message(seq)
                .await
                .with_context(|| format!("replayed, but cannot delete dead letter {seq}"))?;
        }
        replayed += 1;
    }
    client.flush().await.context("cannot flush")?;
    Ok(replayed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_drops_evhost_headers_and_keeps_the_rest() {
        let mut h = HeaderMap::new();
        h.insert("traceparent", "00-a-b-01");
        h.append("x-tag", "1");
        h.append("x-tag", "2");
        h.insert(deadletter::ERROR_KIND, "exhausted");
        h.insert(deadletter::ORIGINAL_SUBJECT, "orders.order.created");
        h.insert("evhost-stream", "ORDERS");
        let kept = replay_headers(&h);
        assert_eq!(
            kept.get("traceparent").map(|v| v.as_str()),
            Some("00-a-b-01")
        );
        assert_eq!(kept.get_all("x-tag").count(), 2);
        assert!(kept.get(deadletter::ERROR_KIND).is_none());
        assert!(kept.get(deadletter::ORIGINAL_SUBJECT).is_none());
        assert!(kept.get("evhost-stream").is_none());
    }
}
