//! `bench-http`: the overhead benchmark's HTTP handler. On `bench.http` it
//! POSTs the payload to the URL in config `url` (which the manifest's
//! `[capabilities] http` must grant), and publishes the response body on
//! `bench.http.done`. A status that is not 2xx is an error. Config
//! `transport = "wasi-http"` sends over `wasi:http` instead of the SDK's
//! default, the one-call `evhost:plugin/http`.

use evhost_sdk::http::Request;
use evhost_sdk::{Context, HandlerError, Message, Outgoing, handler};

#[handler(subject = "bench.http")]
fn post(msg: Message, ctx: &Context) -> Result<Vec<Outgoing>, HandlerError> {
    let url = ctx
        .config("url")
        .ok_or_else(|| HandlerError::permanent("config `url` is missing"))?;
    let request = Request::post(url).body(msg.payload);
    let request = if ctx.config("transport").as_deref() == Some("wasi-http") {
        request.over_wasi_http()
    } else {
        request
    };
    let response = request.send()?.error_for_status()?;
    Ok(vec![Outgoing::new("bench.http.done", response.body)])
}
