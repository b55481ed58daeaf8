//! A test's NATS client side: connecting, subscribing, publishing, waiting
//! for a message, reading headers, and [`echo_roundtrip`], the proof that a
//! host serves.

use std::time::Duration;

use async_nats::{Client, HeaderMap, Message, Subscriber};
use futures::StreamExt;

use crate::{Host, WAIT};

/// Connects a test client to `url`.
pub async fn connect(url: &str) -> Client {
    async_nats::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Subscribes to `subject` and flushes, so the subscription is in place on
/// the server before the test publishes anything.
pub async fn subscribe(client: &Client, subject: &str) -> Subscriber {
    let sub = client
        .subscribe(subject.to_string())
        .await
        .unwrap_or_else(|e| panic!("subscribe to {subject}: {e}"));
    client.flush().await.expect("flush the subscription");
    sub
}

/// Publishes and flushes.
pub async fn publish(client: &Client, subject: &str, headers: &[(&str, &str)], payload: &[u8]) {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(*k, *v);
    }
    client
        .publish_with_headers(
            subject.to_string(),
            map,
            bytes::Bytes::copy_from_slice(payload),
        )
        .await
        .unwrap_or_else(|e| panic!("publish to {subject}: {e}"));
    client.flush().await.expect("flush the publish");
}

/// The next message on `sub`, waiting at most `timeout`; fails with `what`
/// and the host's log.
pub async fn next_message(
    sub: &mut Subscriber,
    timeout: Duration,
    what: &str,
    host: &Host,
) -> Message {
    match tokio::time::timeout(timeout, sub.next()).await {
        Ok(Some(msg)) => msg,
        Ok(None) => panic!(
            "the subscription ended while waiting for {what}\n{}",
            host.log_report()
        ),
        Err(_) => panic!(
            "timed out after {timeout:?} waiting for {what}\n{}",
            host.log_report()
        ),
    }
}

/// A message already delivered to `sub` and not yet taken, if any.
pub fn pending_message(sub: &mut Subscriber) -> Option<Message> {
    use futures::FutureExt;
    sub.next().now_or_never().flatten()
}

/// Every value of header `name` (compared without case), in order.
pub fn header_values(msg: &Message, name: &str) -> Vec<String> {
    let Some(headers) = &msg.headers else {
        return Vec::new();
    };
    headers
        .iter()
        .filter(|(k, _)| AsRef::<str>::as_ref(*k).eq_ignore_ascii_case(name))
        .flat_map(|(_, vs)| vs.iter().map(|v| v.as_str().to_string()))
        .collect()
}

/// The first value of header `name` (compared without case).
pub fn header(msg: &Message, name: &str) -> Option<String> {
    header_values(msg, name).into_iter().next()
}

/// Every header of `msg` as text, for failure messages.
pub fn describe(msg: &Message) -> String {
    let mut headers: Vec<String> = msg
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}: {}", v.as_str())))
        .collect();
    headers.sort();
    format!(
        "subject {} headers [{}] payload {:?}",
        msg.subject,
        headers.join("; "),
        String::from_utf8_lossy(&msg.payload)
    )
}

/// Sends `payload` to `test.echo` and waits for the echo on `test.echo.out`,
/// returning its `echo-version`. Proves the host (still) serves echo.
pub async fn echo_roundtrip(client: &Client, host: &Host, payload: &str) -> String {
    let mut out = subscribe(client, "test.echo.out").await;
    publish(client, "test.echo", &[], payload.as_bytes()).await;
    loop {
        let msg = next_message(
            &mut out,
            WAIT,
            &format!("echo's reply to {payload:?}"),
            host,
        )
        .await;
        if msg.payload.as_ref() == payload.as_bytes() {
            return header(&msg, "echo-version").unwrap_or_else(|| {
                panic!(
                    "echo reply without echo-version: {}\n{}",
                    describe(&msg),
                    host.log_report()
                )
            });
        }
    }
}
