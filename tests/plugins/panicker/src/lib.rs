//! Test plugin: panics on every message.

use evhost_sdk::{Context, HandlerError, Message, Outgoing};

#[evhost_sdk::handler(subject = "test.panic")]
fn handle(_msg: Message, _ctx: &Context) -> Result<Vec<Outgoing>, HandlerError> {
    panic!("panicker: deliberate panic");
}
