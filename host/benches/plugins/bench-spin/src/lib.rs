//! `bench-spin`: computes forever on every message on `bench.spin`, until
//! the host's time limit (`timeout_ms`) interrupts it.
//!
//! The benchmark's way of holding messages in flight in Rust, each in an
//! instance of its own (a guest that computes yields its thread at every
//! epoch tick, and the next message takes another instance): the host's
//! memory with `concurrency` of them in flight, less its memory idle, is
//! what the instances cost. `spin-py` and `spin-js` do the same in Python
//! and JavaScript.

use evhost_sdk::{HandlerError, Message, Outgoing, handler};

#[handler(subject = "bench.spin")]
fn spin(_msg: Message) -> Result<Vec<Outgoing>, HandlerError> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
