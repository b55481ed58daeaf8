//! `evhost pub`: publish one message to NATS with nothing else installed,
//! or, with `--request`, send it as a request and print the reply.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::{HeaderMap, Message, StatusCode};

/// What `evhost pub` was asked to do.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The subject to publish to.
    pub subject: String,
    /// The payload argument: inline text, `@FILE`, or `-` for stdin.
    pub payload: Option<String>,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Wait for a reply for at most this long.
    pub request: Option<Duration>,
    /// The NATS servers and credentials.
    pub nats: crate::nats_connection::NatsConnection,
}

/// Publishes the message (and waits for the server to have it); for a
/// request, prints the reply's headers and body to stdout.
pub async fn publish(p: Publication) -> anyhow::Result<()> {
    anyhow::ensure!(
        crate::subject::is_valid_subject(&p.subject),
        "{:?} is not a valid NATS subject to publish to (dot-separated tokens, no wildcards or spaces)",
        p.subject
    );
    let payload = crate::cli_args::read_payload(p.payload.as_deref())?;
    let mut headers = HeaderMap::new();
    for (name, value) in &p.headers {
        headers.append(name.as_str(), value.as_str());
    }
    let client = crate::bus::connect(&p.nats, "evhost pub").await?;
    let bytes = payload.len();
    match p.request {
        None => {
            client
                .publish_with_headers(p.subject.clone(), headers, payload.into())
                .await
                .with_context(|| format!("cannot publish to {}", p.subject))?;
            client
                .flush()
                .await
                .with_context(|| format!("cannot publish to {}", p.subject))?;
            eprintln!("published {bytes} bytes to {}", p.subject);
        }
        Some(timeout) => {
            let inbox = client.new_inbox();
            let mut replies = client
                .subscribe(inbox.clone())
                .await
                .context("cannot subscribe to the reply inbox")?;
            client
                .publish_with_reply_and_headers(p.subject.clone(), inbox, headers, payload.into())
                .await
                .with_context(|| format!("cannot publish to {}", p.subject))?;
            client.flush().await.context("cannot flush the request")?;
            let reply = tokio::time::timeout(timeout, futures::StreamExt::next(&mut replies))
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "no reply on {} within {} (is a plugin subscribed there, and does it answer requests?)",
                        p.subject,
                        humantime::format_duration(timeout)
                    )
                })?
                .context("the reply subscription ended")?;
            if reply.status == Some(StatusCode::NO_RESPONDERS) {
                anyhow::bail!("no one is subscribed to {}: nothing answered", p.subject);
            }
            print!("{}", describe_reply(&reply));
        }
    }
    Ok(())
}

/// A reply as printed: its headers as `Name: value` lines, a blank line when
/// there were any, then its body.
pub fn describe_reply(reply: &Message) -> String {
    let mut out = String::new();
    if let Some(headers) = &reply.headers {
        let mut any = false;
        for (name, values) in headers.iter() {
            for value in values {
                out.push_str(&format!("{name}: {value}\n"));
                any = true;
            }
        }
        if any {
            out.push('\n');
        }
    }
    out.push_str(&String::from_utf8_lossy(&reply.payload));
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(headers: Option<HeaderMap>, payload: &str) -> Message {
        Message {
            subject: "_INBOX.x".into(),
            reply: None,
            payload: payload.to_string().into(),
            headers,
            status: None,
            description: None,
            length: 0,
        }
    }

    #[test]
    fn a_reply_prints_headers_then_a_blank_line_then_the_body() {
        let mut h = HeaderMap::new();
        h.insert("traceparent", "00-a-b-01");
        h.append("x-tag", "1");
        h.append("x-tag", "2");
        let text = describe_reply(&reply(Some(h), "{\"ok\":true}"));
        let (head, body) = text.split_once("\n\n").expect("a blank line");
        let mut lines: Vec<&str> = head.lines().collect();
        lines.sort();
        assert_eq!(lines, ["traceparent: 00-a-b-01", "x-tag: 1", "x-tag: 2"]);
        assert_eq!(body, "{\"ok\":true}\n");
    }

    #[test]
    fn a_reply_without_headers_is_its_body() {
        assert_eq!(describe_reply(&reply(None, "pong")), "pong\n");
        assert_eq!(describe_reply(&reply(Some(HeaderMap::new()), "")), "\n");
    }
}
