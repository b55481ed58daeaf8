//! Test plugin: allocates memory 1 MiB at a time and writes to every page, for
//! ever, so only the host's memory cap can stop it.

use evhost_sdk::{Context, HandlerError, Message, Outgoing};

const CHUNK: usize = 1 << 20;

#[evhost_sdk::handler(subject = "test.membomb")]
fn handle(_msg: Message, _ctx: &Context) -> Result<Vec<Outgoing>, HandlerError> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; CHUNK];
        for i in (0..CHUNK).step_by(4096) {
            chunk[i] = (hoard.len() as u8).wrapping_add(1);
        }
        hoard.push(std::hint::black_box(chunk));
    }
}
