//! Test plugin: makes the HTTP request its message describes, through the
//! SDK's client, and reports the answer on `test.caller.out`.
//!
//! The payload is JSON: `{"method": "POST", "url": "http://…", "body": "…"}`
//! (`method` defaults to POST, `body` to empty). A 2xx answer is published
//! with headers `status` and `idempotency-key` (the one the request carried)
//! and the response body as payload; other statuses and transport errors
//! become handler errors as `evhost_sdk::http` maps them (5xx and timeouts
//! transient, 4xx and refused destinations permanent). With config
//! `follow_redirects = true` a 3xx is followed once, through the host again.
//!
//! Config `transport = "wasi-http"` sends over `wasi:http` instead of the
//! host's one-call `evhost:plugin/http`. A payload with `"raw": true` hands
//! its `method`, `url`, `headers` (`[["name", "value"], …]`) and `body` to
//! `evhost:plugin/http.send` as they are, with none of the SDK's checks, as
//! a hostile guest would.

use evhost_sdk::http::{HttpError, Method, Request};
use evhost_sdk::{Context, HandlerError, Outgoing, handler};
use serde::Deserialize;

#[derive(Deserialize)]
struct Call {
    #[serde(default)]
    method: Option<String>,
    url: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    raw: bool,
    #[serde(default)]
    headers: Vec<(String, String)>,
}

#[handler(subject = "test.caller")]
fn call(call: Call, ctx: &Context) -> Result<Vec<Outgoing>, HandlerError> {
    if call.raw {
        return raw(call);
    }
    let method = match call.method.as_deref().unwrap_or("POST") {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        other => return Err(HandlerError::permanent(format!("unknown method {other}"))),
    };
    let wasi_http = ctx.config("transport").as_deref() == Some("wasi-http");
    let request = |method: Method, url: &str| {
        let request = Request::new(method, url);
        if wasi_http {
            request.over_wasi_http()
        } else {
            request
        }
    };
    let mut response = request(method.clone(), &call.url)
        .body(call.body.clone().into_bytes())
        .send()?;
    if (300..400).contains(&response.status())
        && ctx.config("follow_redirects").as_deref() == Some("true")
        && let Some(to) = response.header("location").map(str::to_string)
    {
        response = request(method, &to).send()?;
    }
    let response = response.error_for_status()?;
    Ok(vec![
        Outgoing::new("test.caller.out", response.body().to_vec())
            .with_header("status", response.status().to_string())
            .with_header("idempotency-key", ctx.idempotency_key()),
    ])
}

/// The call's record handed to the host unchecked.
fn raw(call: Call) -> Result<Vec<Outgoing>, HandlerError> {
    use evhost_sdk::bindings::evhost::plugin::http as host;
    let request = host::Request {
        method: call.method.unwrap_or_else(|| "POST".to_string()),
        url: call.url,
        headers: call.headers,
        body: call.body.into_bytes(),
        timeout_ns: None,
    };
    let response =
        host::send(&request).map_err(|failure| HandlerError::from(HttpError::from(failure)))?;
    Ok(vec![
        Outgoing::new("test.caller.out", response.body)
            .with_header("status", response.status.to_string()),
    ])
}
