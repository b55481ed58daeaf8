//! JetStream as a test sees it: the consumers evhost made, and key-value
//! buckets laid out as evhost lays them out.

use futures::StreamExt;

/// The durable consumer evhost made on `stream` for `subject`: the one whose
/// filter is that subject (its name carries a digest of the subject).
pub async fn consumer_of(
    js: &async_nats::jetstream::Context,
    stream: &str,
    subject: &str,
) -> async_nats::jetstream::consumer::PullConsumer {
    let stream = js
        .get_stream(stream)
        .await
        .unwrap_or_else(|e| panic!("stream {stream}: {e}"));
    let infos: Vec<_> = stream
        .consumers()
        .filter_map(|i| async move { i.ok() })
        .collect()
        .await;
    let info = infos
        .iter()
        .find(|i| i.config.filter_subject == subject)
        .unwrap_or_else(|| panic!("no consumer filters on {subject}: {infos:?}"));
    stream
        .get_consumer(&info.name)
        .await
        .unwrap_or_else(|e| panic!("consumer {}: {e}", info.name))
}

/// The name of the consumer evhost made on `stream` for `subject`.
pub async fn consumer_name_of(
    js: &async_nats::jetstream::Context,
    stream: &str,
    subject: &str,
) -> String {
    consumer_of(js, stream, subject)
        .await
        .cached_info()
        .name
        .clone()
}

/// Every consumer of `stream`, as the server lists them.
pub async fn consumers_of(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> Vec<async_nats::jetstream::consumer::Info> {
    let stream = js
        .get_stream(stream)
        .await
        .unwrap_or_else(|e| panic!("stream {stream}: {e}"));
    stream
        .consumers()
        .map(|i| i.unwrap_or_else(|e| panic!("list consumers: {e}")))
        .collect()
        .await
}

/// Opens key-value bucket `name`, creating its stream as evhost does
/// (nats-server 2.9 cannot take async-nats's `create_key_value`).
pub async fn kv_bucket(
    js: &async_nats::jetstream::Context,
    name: &str,
) -> async_nats::jetstream::kv::Store {
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        discard: async_nats::jetstream::stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("create the stream of bucket {name}: {e}"));
    js.get_key_value(name)
        .await
        .unwrap_or_else(|e| panic!("open bucket {name}: {e}"))
}

/// The value `bucket` holds at `key` now (`None`: none, or deleted).
pub async fn kv_value(bucket: &async_nats::jetstream::kv::Store, key: &str) -> Option<Vec<u8>> {
    bucket
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key} from the bucket: {e}"))
        .map(|v| v.to_vec())
}
