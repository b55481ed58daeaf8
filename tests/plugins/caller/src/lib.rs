//! Test plugin: makes the HTTP request its message describes, through the
//! SDK's wasi:http client, and reports the answer on `test.caller.out`.
//!
//! The payload is JSON: `{"method": "POST", "url": "http://…", "body": "…"}`
//! (`method` defaults to POST, `body` to empty). A 2xx answer is published
//! with headers `status` and `idempotency-key` (the one the request carried)
//! and the response body as payload; other statuses and transport errors
//! become handler errors as `evhost_sdk::http` maps them (5xx and timeouts
//! transient, 4xx and refused destinations permanent). With config
//! `follow_redirects = true` a 3xx is followed once, through the host again.

use evhost_sdk::http::{Method, Request};
use evhost_sdk::{Context, HandlerError, Outgoing, handler};
use serde::Deserialize;

#[derive(Deserialize)]
struct Call {
    #[serde(default)]
    method: Option<String>,
    url: String,
    #[serde(default)]
    body: String,
}

#[handler(subject = "test.caller")]
fn call(call: Call, ctx: &Context) -> Result<Vec<Outgoing>, HandlerError> {
    let method = match call.method.as_deref().unwrap_or("POST") {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        other => return Err(HandlerError::permanent(format!("unknown method {other}"))),
    };
    let mut response = Request::new(method.clone(), &call.url)
        .body(call.body.clone().into_bytes())
        .send()?;
    if (300..400).contains(&response.status())
        && ctx.config("follow_redirects").as_deref() == Some("true")
        && let Some(to) = response.header("location").map(str::to_string)
    {
        response = Request::new(method, &to).send()?;
    }
    let response = response.error_for_status()?;
    Ok(vec![
        Outgoing::new("test.caller.out", response.body().to_vec())
            .with_header("status", response.status().to_string())
            .with_header("idempotency-key", ctx.idempotency_key()),
    ])
}
