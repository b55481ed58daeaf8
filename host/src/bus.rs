//! The NATS side: connecting (with a clear error when the server is not
//! there), subscribing a plugin's subjects in its queue group, turning a NATS
//! message into the handler's `message` record, and publishing outputs with
//! trace context carried over.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::{Client, HeaderMap, Subscriber};
use bytes::Bytes;

use crate::merge::Merged;
use crate::nats_connection::{NatsConnection, redact};
use crate::runtime::{MessageRef, Outgoing};

/// Headers copied from an input onto its outputs when the output has none of
/// its own: W3C trace context.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// How many messages the client buffers per subscription before it reports a
/// slow consumer and drops. Core NATS has no flow control: this bounds memory.
pub const SUBSCRIPTION_CAPACITY: usize = 8192;

/// Connects to one of `nats`'s servers as `name` (the connection name the
/// server shows), with its credentials and TLS files. No server reachable,
/// refused credentials or an untrusted certificate are an error at once, not
/// a retry loop; once connected, the client reconnects by itself (to any
/// server of the list or of the cluster).
pub async fn connect(nats: &NatsConnection, name: &str) -> anyhow::Result<Client> {
    let connection: std::sync::Arc<str> = name.into();
    let options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .max_reconnects(None)
        .event_callback(move |event| {
            let connection = connection.clone();
            async move {
                match event {
                    async_nats::Event::Connected => tracing::info!(%connection, "connected to NATS"),
                    async_nats::Event::Disconnected => tracing::warn!(%connection, "disconnected from NATS; reconnecting"),
                    async_nats::Event::SlowConsumer(sid) => tracing::warn!(
                        %connection,
                        subscription = sid,
                        "slow consumer: NATS messages dropped because a plugin cannot keep up (use JetStream for lossless delivery)"
                    ),
                    other => tracing::info!(%connection, event = %redact(&other.to_string()), "NATS event"),
                }
            }
        });
    nats.apply(options)?
        .connect(nats.servers.addrs())
        .await
        .map_err(|err| {
            let kind = err.kind();
            anyhow::anyhow!(connect_failure(nats, kind, &err.to_string()))
        })
}

/// Closes `client`'s connection (its subscriptions drained, what it queued
/// sent) and waits, at most `within`, until the connection is gone, so that
/// a server stopped next (as `evhost dev` stops its own) is not seen as
/// lost. The client fails every command once its connection is closed.
pub async fn close(client: &Client, within: Duration) {
    if client.drain().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(within, async {
        while client.flush().await.is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// One line saying why connecting to `nats` failed and what to try. The
/// client's own text already carries its cause, so it is said once. No
/// secret is in it.
pub fn connect_failure(
    nats: &NatsConnection,
    kind: async_nats::ConnectErrorKind,
    text: &str,
) -> String {
    use async_nats::ConnectErrorKind as K;
    let lower = text.to_ascii_lowercase();
    let hint = if lower.contains("invalidcontenttype") || lower.contains("corrupt message") {
        " (the server does not speak TLS there: use nats:// instead of tls://)".to_string()
    } else if lower.contains("peer certificate") || lower.contains("unknownissuer") {
        match &nats.tls.ca {
            Some(ca) => format!(
                " (the server's certificate is not trusted by the CA in {} (--tlsca, NATS_CA), or is not for this host)",
                ca.display()
            ),
            None => " (the server's certificate is not trusted by the system's roots: give its CA with --tlsca or NATS_CA)".to_string(),
        }
    } else if lower.contains("refused") {
        " (is a NATS server running there? start one, or use `evhost dev`)".to_string()
    } else {
        match kind {
            K::TimedOut => {
                " (no answer within 5 s: check the address and any firewall)".to_string()
            }
            K::Dns => " (the host name does not resolve)".to_string(),
            K::ServerParse => " (a URL looks like nats://HOST:PORT)".to_string(),
            K::Authentication | K::AuthorizationViolation => {
                format!(" (the server refused {})", nats.credentials.describe())
            }
            K::Tls => " (check the TLS files: --tlsca, --tlscert, --tlskey)".to_string(),
            _ => String::new(),
        }
    };
    let text = redact(text);
    format!("cannot connect to NATS at {}: {text}{hint}", nats.servers)
}

/// All subscriptions of one lane, read as one stream.
pub type Subscriptions = Merged<Subscriber>;

/// Why `msg`'s header block could not be read, if it could not. The client
/// (patched, see `host/vendor/async-nats/EVHOST-PATCH.md`) delivers such a
/// message with no headers, no status and a description saying why, instead
/// of dropping the connection; a well-formed header block cannot give a
/// description without a status.
pub fn malformed_headers(msg: &async_nats::Message) -> Option<&str> {
    match (&msg.status, &msg.description) {
        (None, Some(why)) if why.starts_with(async_nats::connection::MALFORMED_HEADERS) => {
            Some(why)
        }
        _ => None,
    }
}

/// Subscribes each of `subjects` in queue group `queue`, and flushes so the
/// server knows of them before this returns.
pub async fn subscribe(
    client: &Client,
    subjects: &[String],
    queue: &str,
) -> anyhow::Result<Subscriptions> {
    let mut all = Vec::with_capacity(subjects.len());
    for subject in subjects {
        let sub = client
            .queue_subscribe(subject.clone(), queue.to_string())
            .await
            .with_context(|| format!("cannot subscribe to {subject}"))?;
        all.push(sub);
    }
    client
        .flush()
        .await
        .context("cannot flush subscriptions to NATS")?;
    Ok(all.into_iter().collect())
}

/// Asks the server to stop sending to `subs`; messages already on their way
/// are still delivered, then the stream ends.
pub async fn drain(subs: &mut Subscriptions) {
    for sub in subs.iter_mut() {
        if let Err(err) = sub.drain().await {
            tracing::warn!(error = %err, "cannot drain a subscription");
        }
    }
}

/// The handler's view of a NATS message, on delivery number `attempt`,
/// borrowed from it.
pub fn to_message(msg: &async_nats::Message, attempt: u32) -> MessageRef<'_> {
    MessageRef {
        subject: msg.subject.as_str(),
        headers: header_pairs(msg.headers.as_ref()),
        payload: &msg.payload,
        reply_to: msg.reply.as_ref().map(|r| r.as_str()),
        attempt,
    }
}

/// Every header as a (name, value) pair, repeated names kept.
pub fn header_pairs(headers: Option<&HeaderMap>) -> Vec<(&str, &str)> {
    let Some(headers) = headers else {
        return Vec::new();
    };
    let mut pairs = Vec::new();
    for (name, values) in headers.iter() {
        for value in values {
            pairs.push((name.as_ref(), value.as_str()));
        }
    }
    pairs
}

/// The NATS headers of an output: its own, plus trace context where the
/// output sets none: the current span's when spans are exported (the
/// output is that span's child, see `trace_context.rs`), else the input's.
pub fn output_headers(out: &Outgoing, input: Option<&HeaderMap>) -> HeaderMap {
    with_trace(out, input, crate::trace_context::current().as_deref())
}

/// [`output_headers`] with the trace context of the span handling the
/// input given (`None`: the input's own is carried over).
fn with_trace(
    out: &Outgoing,
    input: Option<&HeaderMap>,
    span: Option<&[(&str, String)]>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in &out.headers {
        headers.append(name.as_str(), value.as_str());
    }
    if out
        .headers
        .iter()
        .any(|(n, _)| TRACE_HEADERS.iter().any(|t| n.eq_ignore_ascii_case(t)))
    {
        // The handler set its own trace context: kept as it is.
        return headers;
    }
    match span {
        Some(span) => {
            for (name, value) in span {
                headers.insert(*name, value.as_str());
            }
        }
        None => {
            if let Some(input) = input {
                for name in TRACE_HEADERS {
                    if let Some(value) = input.get(name) {
                        headers.insert(name, value.as_str());
                    }
                }
            }
        }
    }
    headers
}

/// Publishes a handler's outputs in order. The first failure stops and is
/// returned: the caller retries the message.
pub async fn publish_outputs(
    client: &Client,
    outputs: Vec<Outgoing>,
    input: Option<&HeaderMap>,
) -> Result<(), async_nats::PublishError> {
    for out in outputs {
        let headers = output_headers(&out, input);
        let payload = Bytes::from(out.payload);
        if headers.is_empty() {
            // A plain PUB: no empty header block on the wire.
            client.publish(out.subject, payload).await?;
        } else {
            client
                .publish_with_headers(out.subject, headers, payload)
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod connect_tests {
    use super::*;
    use async_nats::ConnectErrorKind as K;

    #[test]
    fn failures_say_what_to_try() {
        let nats = NatsConnection::plain("nats://h:1").unwrap();
        let refused = connect_failure(&nats, K::Io, "Connection refused (os error 111)");
        assert!(refused.ends_with("or use `evhost dev`)"), "{refused}");
        assert_eq!(
            refused.matches("Connection refused").count(),
            1,
            "{refused}"
        );
        let tls = connect_failure(
            &NatsConnection::plain("tls://h:1").unwrap(),
            K::Tls,
            "received corrupt message of type InvalidContentType",
        );
        assert!(tls.contains("use nats:// instead of tls://"), "{tls}");
    }

    #[test]
    fn refused_credentials_are_named_without_the_secret() {
        let nats = NatsConnection::plain("nats://evhost:hunter2@h:1,nats://h:2").unwrap();
        let text = connect_failure(
            &nats,
            K::AuthorizationViolation,
            "authorization violation: Authorization Violation",
        );
        assert_eq!(
            text,
            "cannot connect to NATS at nats://h:1,nats://h:2: authorization violation: \
             Authorization Violation (the server refused user \"evhost\" and its password \
             (--user/--password, NATS_USER/NATS_PASSWORD, or the URL))"
        );
        let untrusted = connect_failure(&nats, K::Tls, "invalid peer certificate: UnknownIssuer");
        assert!(
            untrusted.contains("give its CA with --tlsca"),
            "{untrusted}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(status: Option<u16>, description: Option<&str>) -> async_nats::Message {
        async_nats::Message {
            subject: "a".into(),
            reply: None,
            payload: Bytes::from_static(b"p"),
            headers: None,
            status: status.map(|s| async_nats::StatusCode::from_u16(s).unwrap()),
            description: description.map(str::to_string),
            length: 1,
        }
    }

    #[test]
    fn only_a_description_without_a_status_marks_unreadable_headers() {
        let why = format!(
            "{}header isn't valid utf-8",
            async_nats::connection::MALFORMED_HEADERS
        );
        assert_eq!(
            malformed_headers(&message(None, Some(&why))),
            Some(why.as_str())
        );
        // What well-formed headers can carry is never taken for it.
        assert_eq!(malformed_headers(&message(Some(503), Some(&why))), None);
        assert_eq!(malformed_headers(&message(None, None)), None);
        assert_eq!(
            malformed_headers(&message(None, Some("idle heartbeat"))),
            None
        );
    }

    #[test]
    fn trace_context_is_carried_unless_the_output_sets_its_own() {
        let mut input = HeaderMap::new();
        input.insert("traceparent", "00-abc-def-01");
        input.insert("x-other", "no");
        let out = Outgoing {
            subject: "a".into(),
            headers: vec![("k".into(), "v".into())],
            payload: vec![],
        };
        let h = output_headers(&out, Some(&input));
        assert_eq!(
            h.get("traceparent").map(|v| v.as_str()),
            Some("00-abc-def-01")
        );
        assert_eq!(h.get("k").map(|v| v.as_str()), Some("v"));
        assert!(
            h.get("x-other").is_none(),
            "only trace context is carried over"
        );

        let own = Outgoing {
            subject: "a".into(),
            headers: vec![("traceparent".into(), "00-mine-01".into())],
            payload: vec![],
        };
        let h = output_headers(&own, Some(&input));
        assert_eq!(h.get_all("traceparent").count(), 1);
        assert_eq!(h.get("traceparent").map(|v| v.as_str()), Some("00-mine-01"));
    }

    #[test]
    fn an_exported_span_is_the_parent_of_outputs() {
        let mut input = HeaderMap::new();
        input.insert("traceparent", "00-t-publisher-01");
        input.insert("tracestate", "vendor=1");
        let out = Outgoing {
            subject: "a".into(),
            headers: vec![],
            payload: vec![],
        };
        let span = [("traceparent", "00-t-handler-01".to_string())];
        let h = with_trace(&out, Some(&input), Some(&span));
        assert_eq!(
            h.get("traceparent").map(|v| v.as_str()),
            Some("00-t-handler-01")
        );
        assert!(h.get("tracestate").is_none(), "the span's own state only");
    }

    #[test]
    fn repeated_headers_survive_both_ways() {
        let mut input = HeaderMap::new();
        input.append("x-tag", "a");
        input.append("x-tag", "b");
        let pairs = header_pairs(Some(&input));
        assert_eq!(pairs, vec![("x-tag", "a"), ("x-tag", "b")]);
        let out = Outgoing {
            subject: "s".into(),
            headers: pairs
                .iter()
                .map(|&(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            payload: vec![],
        };
        assert_eq!(output_headers(&out, None).get_all("x-tag").count(), 2);
    }
}
