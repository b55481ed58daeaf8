//! Opening a JetStream key-value bucket, creating it when it is missing.
//!
//! The bucket's stream (`KV_<bucket>`, capturing `$KV.<bucket>.>`) is created
//! by hand with the layout async-nats' `create_key_value` would use, since that
//! call does not parse nats-server 2.9's account answer, with the host's
//! replica count (`replicas.rs`). Used by the dedup store and by the
//! plugins' `wasi:keyvalue` buckets.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, kv, stream};

use crate::replicas::{self, Replicas};

/// Opens `bucket`, creating it (one value per key; entries expire after
/// `max_age` when given; `replicas` copies) if it does not exist.
pub async fn open_or_create(
    js: &jetstream::Context,
    bucket: &str,
    max_age: Option<Duration>,
    replicas: Replicas,
) -> anyhow::Result<kv::Store> {
    if let Ok(store) = js.get_key_value(bucket).await {
        replicas::warn_if_fewer(&store.stream.cached_info().config, replicas);
        return Ok(store);
    }
    let ttl = max_age.unwrap_or_default();
    let bucket_stream = stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age: ttl,
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        duplicate_window: match max_age {
            Some(ttl) => ttl.min(Duration::from_secs(120)),
            None => Duration::from_secs(120),
        },
        ..Default::default()
    };
    replicas::get_or_create(js, bucket_stream, replicas)
        .await
        .with_context(|| format!("cannot create key-value bucket {bucket}"))?;
    js.get_key_value(bucket)
        .await
        .with_context(|| format!("cannot open key-value bucket {bucket}"))
}
