//! Test plugin: counts messages per key in key-value state.
//!
//! On `test.tally` the payload is a key; the plugin adds 1 to the number
//! stored at that key in the bucket named by config `bucket` (default
//! `tally`), with a compare-and-swap update (or, with config
//! `mode = "increment"`, the atomic increment), and publishes the new count
//! on `test.tally.out` with header `key`.
//!
//! With config `mode = "batch"` the payload is keys separated by spaces: the
//! plugin reads them all with one `get-many`, writes each count plus 1 with
//! one `set-many`, and publishes the new counts, space-separated in the
//! order given. A payload starting with `- ` deletes the keys after it with
//! one `delete-many` and publishes `deleted N`.

use evhost_sdk::kv::Bucket;
use evhost_sdk::{Context, HandlerError, Message, Outgoing, handler};

#[handler(subject = "test.tally")]
fn tally(msg: Message, ctx: &Context) -> Result<Vec<Outgoing>, HandlerError> {
    let key = String::from_utf8(msg.payload)
        .map_err(|_| HandlerError::permanent("the key is not UTF-8"))?;
    let bucket = Bucket::open(&ctx.config("bucket").unwrap_or_else(|| "tally".into()))?;
    let count = match ctx.config("mode").as_deref() {
        Some("batch") => return batch(&bucket, &key),
        Some("increment") => bucket.increment(&key, 1)?,
        _ => bucket
            .update(&key, |n: Option<i64>| Ok(Some(n.unwrap_or(0) + 1)))?
            .unwrap_or_default(),
    };
    Ok(vec![
        Outgoing::new("test.tally.out", count.to_string()).with_header("key", key),
    ])
}

fn batch(bucket: &Bucket, payload: &str) -> Result<Vec<Outgoing>, HandlerError> {
    if let Some(rest) = payload.strip_prefix("- ") {
        let keys: Vec<&str> = rest.split(' ').collect();
        bucket.delete_many(&keys)?;
        return Ok(vec![Outgoing::new(
            "test.tally.out",
            format!("deleted {}", keys.len()),
        )]);
    }
    let keys: Vec<&str> = payload.split(' ').collect();
    let counts: Vec<i64> = bucket
        .get_many::<i64>(&keys)?
        .into_iter()
        .map(|n| n.unwrap_or(0) + 1)
        .collect();
    let pairs: Vec<(&str, i64)> = keys.iter().copied().zip(counts.iter().copied()).collect();
    bucket.set_many(&pairs)?;
    let text: Vec<String> = counts.iter().map(i64::to_string).collect();
    Ok(vec![Outgoing::new("test.tally.out", text.join(" "))])
}
