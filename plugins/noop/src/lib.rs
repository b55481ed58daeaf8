//! `noop`: takes every message on `bench.noop` and does nothing with it.
//! The benchmark's measure of what the host itself costs.

use evhost_sdk::{HandlerError, Message, Outgoing, handler};

#[handler(subject = "bench.noop")]
fn ignore(_msg: Message) -> Result<Vec<Outgoing>, HandlerError> {
    Ok(Vec::new())
}
