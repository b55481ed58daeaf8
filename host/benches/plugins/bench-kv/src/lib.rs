//! `bench-kv`: the overhead benchmark's key-value handler. On `bench.kv` it
//! opens the bucket `bench` (which the manifest's `[capabilities] keyvalue`
//! must grant), adds 1 to the number at key `counter` with a get and a
//! compare-and-swap (read again and retried when another writer won), and
//! publishes the new count on `bench.kv.done`.

use evhost_sdk::kv::Bucket;
use evhost_sdk::{HandlerError, Message, Outgoing, handler};

#[handler(subject = "bench.kv")]
fn count(_msg: Message) -> Result<Vec<Outgoing>, HandlerError> {
    let bucket = Bucket::open("bench")?;
    let count = bucket
        .update("counter", |n: Option<u64>| Ok(Some(n.unwrap_or(0) + 1)))?
        .unwrap_or_default();
    Ok(vec![Outgoing::new("bench.kv.done", count.to_string())])
}
