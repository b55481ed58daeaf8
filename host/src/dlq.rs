//! `evhost dlq list` and `evhost dlq replay`: read dead letters from the
//! stream that keeps them (the one named, else the one that captures their
//! subjects) or, when none does, live from their subject; show them (as text
//! or JSON, with or without payloads), or republish each to its original
//! subject with the `Evhost-*` headers dropped and the original headers kept.
//!
//! A dead letter is untrusted: anyone who may publish to `dlq.>` can plant
//! one. Replay therefore publishes only where the publish rules allow (never
//! a `$` or `_INBOX.` subject) and only letters found on the dead-letter
//! prefix plus the subject they claim to come from.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{self, stream};
use async_nats::{Client, HeaderMap};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::StreamExt;

use crate::deadletter;
use crate::durable_publish::{Captures, publish_durably};
use crate::subject::{PublishDenied, check_publish};

/// What to read dead letters from.
#[derive(Debug, Clone)]
pub struct Source {
    /// Subject filter, such as `dlq.>`.
    pub subject: String,
    /// The dead-letter prefix of the plugins that wrote them (`dlq.`): a
    /// letter is replayed only from `<prefix><its original subject>`.
    pub prefix: String,
    /// A stream that captured the dead letters; read from its start. Without
    /// it, the stream that captures `subject` is read, or, when none does,
    /// dead letters are read live from the subject.
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

    /// The payload as text, or `base64:` and its bytes in base64 when it is
    /// not UTF-8.
    pub fn payload_text(&self) -> String {
        match std::str::from_utf8(&self.payload) {
            Ok(text) => text.to_string(),
            Err(_) => format!("base64:{}", BASE64.encode(&self.payload)),
        }
    }

    /// The letter as JSON: where it was, why it died, every header and the
    /// payload (`payload`, or `payload_base64` when it is not UTF-8).
    pub fn to_json(&self) -> serde_json::Value {
        let header = |name: &str| self.headers.get(name).map(|v| v.as_str().to_string());
        let mut headers = serde_json::Map::new();
        for (name, values) in self.headers.iter() {
            let values: Vec<serde_json::Value> = values
                .iter()
                .map(|v| serde_json::Value::String(v.as_str().to_string()))
                .collect();
            headers.insert(name.to_string(), serde_json::Value::Array(values));
        }
        let mut json = serde_json::json!({
            "seq": self.seq,
            "subject": self.subject,
            "original_subject": self.original_subject(),
            "plugin": header(deadletter::PLUGIN),
            "plugin_version": header(deadletter::PLUGIN_VERSION),
            "kind": header(deadletter::ERROR_KIND),
            "error": header(deadletter::ERROR),
            "attempts": header(deadletter::ATTEMPTS).and_then(|a| a.parse::<u64>().ok()),
            "headers": headers,
        });
        match std::str::from_utf8(&self.payload) {
            Ok(text) => json["payload"] = serde_json::json!(text),
            Err(_) => json["payload_base64"] = serde_json::json!(BASE64.encode(&self.payload)),
        }
        json
    }
}

/// Why replay leaves a dead letter where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Evhost-Original-Subject`: nowhere to replay to.
    #[error("it has no {} header", deadletter::ORIGINAL_SUBJECT)]
    NoOrigin,
    /// It claims to come from a subject replay may not publish to.
    #[error("it claims to come from {original:?}, {why}; replay never publishes there")]
    Forbidden {
        /// The claimed origin.
        original: String,
        /// What the publish rules say.
        why: &'static str,
    },
    /// Its subject is not the dead-letter prefix plus the claimed origin, so
    /// the host did not write it as it stands.
    #[error(
        "its subject does not match the claimed origin {original:?} (a dead letter of it is {expected})"
    )]
    Mismatch {
        /// The claimed origin.
        original: String,
        /// The subject a dead letter of it has.
        expected: String,
    },
}

/// Where a dead letter found on `subject` may be replayed to: the subject it
/// claims to come from, when the publish rules allow it and `subject` is
/// `prefix` plus that claim.
pub fn replay_target<'a>(
    subject: &str,
    original: Option<&'a str>,
    prefix: &str,
) -> Result<&'a str, Refusal> {
    let original = original.ok_or(Refusal::NoOrigin)?;
    if let Err(denied) = check_publish(original, None, None) {
        let why = match denied {
            PublishDenied::Invalid(_) => "not a valid subject",
            PublishDenied::System(_) => "a system subject",
            PublishDenied::NotAllowed(_) => "not allowed",
            PublishDenied::TooLong(..) => "too long",
        };
        return Err(Refusal::Forbidden {
            original: original.to_string(),
            why,
        });
    }
    // What the host names a letter of `original` (shortened when too long).
    let expected = crate::deadletter::subject_for(prefix, original);
    if subject != expected {
        return Err(Refusal::Mismatch {
            original: original.to_string(),
            expected,
        });
    }
    Ok(original)
}

/// The headers a replayed message carries: the original ones, without any
/// `Evhost-*` header. The input's `Nats-*` headers, kept in the letter as
/// `Evhost-Kept-Nats-*`, are not restored: a replay is a new message
/// (its old `Nats-Msg-Id` would make a stream drop it as a duplicate).
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

/// `source` with its stream filled in: the one named, else the stream that
/// captures its subjects (said on stderr), else none (read live, said too).
pub async fn locate(client: &Client, source: &Source) -> anyhow::Result<Source> {
    let mut source = source.clone();
    if source.stream.is_none() {
        let js = jetstream::new(client.clone());
        source.stream = crate::dead_letter_stream::find(&js, &source.subject).await?;
        match &source.stream {
            Some(name) => eprintln!("reading {} from stream {name}", source.subject),
            None => eprintln!(
                "no stream keeps {}: listening for new dead letters for {} (name one with --stream)",
                source.subject,
                humantime::format_duration(source.idle)
            ),
        }
    }
    Ok(source)
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

/// What a replay did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Letters republished.
    pub replayed: usize,
    /// Letters refused (left where they were, each reported on stderr).
    pub refused: usize,
}

/// Republishes each letter to its original subject (through JetStream where
/// a stream captures it), then, when read from a stream, deletes it there so
/// it is not replayed twice. A letter [`replay_target`] refuses is reported
/// and left in place.
pub async fn replay(
    client: &Client,
    source: &Source,
    letters: &[Letter],
) -> anyhow::Result<Replayed> {
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
    let mut done = Replayed::default();
    for letter in letters {
        let original =
            match replay_target(&letter.subject, letter.original_subject(), &source.prefix) {
                Ok(original) => original,
                Err(refusal) => {
                    let seq = letter.seq.map_or(String::new(), |s| format!(" {s}"));
                    eprintln!("refused dead letter{seq} on {}: {refusal}", letter.subject);
                    done.refused += 1;
                    continue;
                }
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
        done.replayed += 1;
    }
    client.flush().await.context("cannot flush")?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_goes_only_where_the_letter_could_have_come_from() {
        assert_eq!(
            replay_target("dlq.orders.c", Some("orders.c"), "dlq."),
            Ok("orders.c")
        );
        assert_eq!(
            replay_target("dlq.orders.c", None, "dlq."),
            Err(Refusal::NoOrigin)
        );
        for hostile in [
            "$JS.API.STREAM.DELETE.X",
            "$KV.secrets.key",
            "$SYS.REQ.SERVER.PING",
            "_INBOX.abc",
        ] {
            let planted = format!("dlq.{hostile}");
            assert!(
                matches!(
                    replay_target(&planted, Some(hostile), "dlq."),
                    Err(Refusal::Forbidden {
                        why: "a system subject",
                        ..
                    })
                ),
                "{hostile}"
            );
        }
        assert!(matches!(
            replay_target("dlq.a.*", Some("a.*"), "dlq."),
            Err(Refusal::Forbidden {
                why: "not a valid subject",
                ..
            })
        ));
        let mismatch = replay_target("dlq.orders.a", Some("orders.b"), "dlq.").unwrap_err();
        assert_eq!(
            mismatch,
            Refusal::Mismatch {
                original: "orders.b".into(),
                expected: "dlq.orders.b".into()
            }
        );
        assert!(
            mismatch.to_string().contains("does not match"),
            "{mismatch}"
        );
        assert!(matches!(
            replay_target("dlq.orders.c", Some("orders.c"), "errors."),
            Err(Refusal::Mismatch { .. })
        ));
        assert_eq!(
            replay_target("errors.orders.c", Some("orders.c"), "errors."),
            Ok("orders.c")
        );
    }

    #[test]
    fn a_letter_as_json_carries_its_headers_and_payload() {
        let mut h = HeaderMap::new();
        h.insert(deadletter::ORIGINAL_SUBJECT, "orders.order.created");
        h.insert(deadletter::ERROR_KIND, "permanent");
        h.insert(deadletter::ATTEMPTS, "1");
        h.insert("x-tag", "a");
        let letter = Letter {
            subject: "dlq.orders.order.created".into(),
            headers: h,
            payload: Bytes::from_static(b"{\"order_id\":\"o-1\"}"),
            seq: Some(7),
        };
        let json = letter.to_json();
        assert_eq!(json["seq"], 7);
        assert_eq!(json["original_subject"], "orders.order.created");
        assert_eq!(json["kind"], "permanent");
        assert_eq!(json["attempts"], 1);
        assert_eq!(json["headers"]["x-tag"][0], "a");
        assert_eq!(json["payload"], "{\"order_id\":\"o-1\"}");
        let binary = Letter {
            payload: Bytes::from_static(&[0xff, 0x00]),
            ..letter
        };
        assert_eq!(binary.to_json()["payload_base64"], "/wA=");
        assert_eq!(binary.payload_text(), "base64:/wA=");
    }

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
