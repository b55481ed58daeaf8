//! Test plugin: replies on `test.echo.out` with the payload it got.
//!
//! The reply carries a header `echo-version` with the version this copy was
//! built as (`EVHOST_ECHO_VERSION` at build time, `1` by default), so the
//! hot-reload tests can tell two builds apart, and a header `x-echo-tag` when
//! the input has one (with the same value). With config `sleep_ms` it sleeps
//! that long first, and logs `echo: sleeping` when it starts to.

use evhost_sdk::{Context, HandlerError, Message, Outgoing};

const VERSION: &str = match option_env!("EVHOST_ECHO_VERSION") {
    Some(v) => v,
    None => "1",
};

#[evhost_sdk::handler(subject = "test.echo")]
fn handle(msg: Message, ctx: &Context) -> Result<Vec<Outgoing>, HandlerError> {
    if let Some(ms) = ctx.config("sleep_ms") {
        let ms: u64 = ms
            .parse()
            .map_err(|e| HandlerError::permanent(format!("bad sleep_ms {ms:?}: {e}")))?;
        evhost_sdk::info!("echo: sleeping {ms} ms");
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let mut reply =
        Outgoing::new("test.echo.out", msg.payload.clone()).with_header("echo-version", VERSION);
    if let Some(tag) = msg.header("x-echo-tag") {
        reply = reply.with_header("x-echo-tag", tag);
    }
    Ok(vec![reply])
}
