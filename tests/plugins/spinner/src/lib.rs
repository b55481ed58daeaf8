//! Test plugin: spins forever, so only the host's time limit can stop it.

use evhost_sdk::{Context, HandlerError, Message, Outgoing};

#[evhost_sdk::handler(subject = "test.spin")]
fn handle(_msg: Message, _ctx: &Context) -> Result<Vec<Outgoing>, HandlerError> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
