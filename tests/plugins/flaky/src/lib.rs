//! Test plugin: fails transiently on the first `fail_attempts` attempts (config,
//! default 0), or on every attempt when config `always` is `true`. On success
//! it publishes `test.flaky.out` with the payload and a header `attempt`.

use evhost_sdk::{Context, HandlerError, Message, Outgoing};

#[evhost_sdk::handler(subject = "test.flaky")]
fn handle(msg: Message, ctx: &Context) -> Result<Vec<Outgoing>, HandlerError> {
    let attempt = ctx.attempt();
    if ctx.config("always").as_deref() == Some("true") {
        return Err(HandlerError::transient(format!(
            "flaky: always failing (attempt {attempt})"
        )));
    }
    let fail_attempts: u32 = match ctx.config("fail_attempts") {
        Some(n) => n
            .parse()
            .map_err(|e| HandlerError::permanent(format!("bad fail_attempts {n:?}: {e}")))?,
        None => 0,
    };
    if attempt <= fail_attempts {
        return Err(HandlerError::transient(format!(
            "flaky: failing attempt {attempt} of {fail_attempts}"
        )));
    }
    Ok(vec![
        Outgoing::new("test.flaky.out", msg.payload.clone())
            .with_header("attempt", attempt.to_string()),
    ])
}
