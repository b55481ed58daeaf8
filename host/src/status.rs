//! `evhost status`: asks a running host for its `/plugins` (see
//! `plugin_status.rs`) and prints it as a table, one plugin a line, with
//! each plugin's last rejection under the table.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// How long the host may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The body of `GET http://ADDR/plugins`.
pub async fn fetch(addr: &str) -> anyhow::Result<String> {
    let fetched = tokio::time::timeout(TIMEOUT, async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot reach a host at {addr} (its --metrics address)"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("{addr}: not an HTTP listener"))?;
        tokio::spawn(connection);
        let request = Request::get("/plugins")
            .header(header::HOST, addr)
            .body(Empty::<Bytes>::new())?;
        let response = sender
            .send_request(request)
            .await
            .with_context(|| format!("{addr}: no answer to GET /plugins"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("{addr}: the answer to GET /plugins broke off"))?
            .to_bytes();
        anyhow::ensure!(
            status == StatusCode::OK,
            "{addr}: GET /plugins answered {status} (an evhost older than /plugins?)"
        );
        String::from_utf8(body.to_vec()).with_context(|| format!("{addr}: /plugins is not text"))
    })
    .await;
    match fetched {
        Ok(result) => result,
        Err(_) => anyhow::bail!("{addr}: no answer to GET /plugins within {TIMEOUT:?}"),
    }
}

/// `/plugins`'s JSON as a table.
pub fn table(json: &str) -> anyhow::Result<String> {
    let body: Value = serde_json::from_str(json).context("/plugins did not answer JSON")?;
    let plugins = body["plugins"]
        .as_array()
        .context("/plugins has no plugins list")?;
    if plugins.is_empty() {
        return Ok("no plugins\n".to_string());
    }
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let count = |v: &Value| v.as_u64().map_or("-".to_string(), |n| n.to_string());
    let header = [
        "PLUGIN", "STATUS", "VERSION", "MODE", "SUBJECTS", "OK", "RETRIED", "DEAD", "ERROR",
    ];
    let mut rows = vec![header.map(String::from).to_vec()];
    let mut errors = String::new();
    for p in plugins {
        let counters = &p["counters"];
        let dead: Option<u64> = counters["dead_letters"]
            .as_object()
            .map(|kinds| kinds.values().filter_map(Value::as_u64).sum());
        let subjects: Vec<String> = p["subjects"]
            .as_array()
            .map(|s| s.iter().map(text).collect())
            .unwrap_or_default();
        let error = &p["last_error"];
        rows.push(vec![
            text(&p["name"]),
            text(&p["status"]),
            text(&p["version"]),
            text(&p["mode"]),
            if subjects.is_empty() {
                "-".to_string()
            } else {
                subjects.join(",")
            },
            count(&counters["ok"]),
            count(&counters["retried"]),
            dead.map_or("-".to_string(), |n| n.to_string()),
            if error.is_null() { "-" } else { "yes" }.to_string(),
        ]);
        if !error.is_null() {
            let _ = writeln!(
                errors,
                "{}: {} rejected at {}: {}",
                text(&p["name"]),
                text(&error["file"]),
                text(&error["at"]),
                text(&error["error"])
            );
        }
    }
    let mut out = crate::text_table::aligned(&rows);
    if !errors.is_empty() {
        out.push('\n');
        out.push_str(&errors);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_are_rows_and_errors_lines_under_them() {
        let json = r#"{"plugins": [
            {"name": "echo", "status": "serving", "version": "0123456789abcdef",
             "mode": "core", "subjects": ["test.echo", "test.more"],
             "counters": {"ok": 3, "retried": 1, "duplicate": 0,
                          "dead_letters": {"trap": 1, "timeout": 2}},
             "last_error": {"file": "/p/echo.wasm", "error": "not a component", "at": "2026-01-01T00:00:00Z"}},
            {"name": "bad", "status": "rejected", "version": null, "mode": null,
             "subjects": [], "counters": null,
             "last_error": {"file": "/p/bad.toml", "error": "1:1: unknown field", "at": "2026-01-01T00:00:01Z"}}
        ]}"#;
        let out = table(json).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("PLUGIN  STATUS    VERSION"), "{out}");
        assert!(
            lines[1].starts_with("echo    serving   0123456789abcdef  core  test.echo,test.more  3   1        3     yes"),
            "{out}"
        );
        assert!(lines[2].starts_with("bad     rejected  -"), "{out}");
        assert_eq!(lines[3], "");
        assert_eq!(
            lines[4],
            "echo: /p/echo.wasm rejected at 2026-01-01T00:00:00Z: not a component"
        );
        assert_eq!(
            lines[5],
            "bad: /p/bad.toml rejected at 2026-01-01T00:00:01Z: 1:1: unknown field"
        );
        assert_eq!(table(r#"{"plugins": []}"#).unwrap(), "no plugins\n");
        assert!(table("<html>").is_err());
    }
}
