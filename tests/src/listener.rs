//! The host's HTTP listener as a test reads it: `GET` a path, and the
//! `/plugins` JSON.

use serde_json::Value;

use crate::Host;

/// `GET path` at `addr` (`HOST:PORT`): the status code and body, or `None`
/// while nothing answers there.
pub async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// `GET /plugins` at `addr`, as JSON; fails with the host's log when it
/// does not answer 200 with JSON.
pub async fn plugins_json(addr: &str, host: &Host) -> Value {
    match http_get(addr, "/plugins").await {
        Some((200, body)) => serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!("/plugins is not JSON ({e}): {body}\n{}", host.log_report())
        }),
        other => panic!(
            "GET /plugins at {addr} answered {other:?}\n{}",
            host.log_report()
        ),
    }
}

/// The entry of plugin `name` in a `/plugins` answer, if listed.
pub fn plugin_entry<'a>(plugins: &'a Value, name: &str) -> Option<&'a Value> {
    plugins["plugins"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
}
