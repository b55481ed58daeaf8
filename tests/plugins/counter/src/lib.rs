//! Test plugin: counts the messages its instance has handled and replies on
//! `test.counter.out` with that count. State that survives between messages
//! shows whether the host reuses instances (`isolation = "reuse"`) or makes a
//! fresh one per message (`isolation = "message"`).

use std::sync::atomic::{AtomicU64, Ordering};

use evhost_sdk::{HandlerError, Message, Outgoing};

static HANDLED: AtomicU64 = AtomicU64::new(0);

#[evhost_sdk::handler(subject = "test.counter")]
fn count(_msg: Message) -> Result<Vec<Outgoing>, HandlerError> {
    let n = HANDLED.fetch_add(1, Ordering::SeqCst) + 1;
    Ok(vec![Outgoing::new("test.counter.out", n.to_string())])
}
