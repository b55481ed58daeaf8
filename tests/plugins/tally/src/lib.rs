//! Test plugin: counts messages per key in key-value state.
//!
//! On `test.tally` the payload is a key; the plugin adds 1 to the number
//! stored at that key in the bucket named by config `bucket` (default
//! `tally`), with a compare-and-swap update (or, with config
//! `mode = "increment"`, the atomic increment), and publishes the new count
//! on `test.tally.out` with header `key`.

use evhost_sdk::kv::Bucket;
use evhost_sdk::{Context, HandlerError, Message, Outgoing, handler};

#[handler(subject = "test.tally")]
fn tally(msg: Message, ctx: &Context) -> Result<Vec<Outgoing>, HandlerError> {
    let key = String::from_utf8(msg.payload)
        .map_err(|_| HandlerError::permanent("the key is not UTF-8"))?;
    let bucket = Bucket::open(&ctx.config("bucket").unwrap_or_else(|| "tally".into()))?;
    let count = if ctx.config("mode").as_deref() == Some("increment") {
        bucket.increment(&key, 1)?
    } else {
        bucket
            .update(&key, |n: Option<i64>| Ok(Some(n.unwrap_or(0) + 1)))?
            .unwrap_or_default()
    };
    Ok(vec![
        Outgoing::new("test.tally.out", count.to_string()).with_header("key", key),
    ])
}
