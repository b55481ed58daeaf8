//! `noop`: does nothing with the messages on `bench.noop`. When a message is
//! a request (it has a reply subject) it answers with an empty reply, so a
//! benchmark can count what was handled; otherwise it returns nothing.
//! The benchmark's measure of what the host itself costs.

use evhost_sdk::{HandlerError, Message, Outgoing, handler};

#[handler(subject = "bench.noop")]
fn ignore(msg: Message) -> Result<Vec<Outgoing>, HandlerError> {
    Ok(match msg.reply_to {
        Some(reply) => vec![Outgoing::new(reply, Vec::new())],
        None => Vec::new(),
    })
}
