//! Key-value state through wasi:keyvalue, backed by JetStream buckets on a
//! real nats-server: kept between messages, across a restart and between
//! hosts; only granted buckets open; compare-and-swap never oversells.

use std::collections::BTreeSet;

use async_nats::jetstream;
use evhost_tests::*;
use futures::StreamExt;

const TALLY: &str = "[capabilities]\nkeyvalue = [\"tally\"]\n[delivery]\nmax_attempts = 1\n";

/// Publishes `key` to tally and returns the count it answers.
async fn tally(
    client: &async_nats::Client,
    out: &mut async_nats::Subscriber,
    key: &str,
    host: &Host,
) -> u64 {
    publish(client, "test.tally", &[], key.as_bytes()).await;
    let msg = next_message(out, WAIT, &format!("tally's count of {key}"), host).await;
    String::from_utf8_lossy(&msg.payload)
        .parse()
        .unwrap_or_else(|_| panic!("not a count: {}", describe(&msg)))
}

#[tokio::test(flavor = "multi_thread")]
async fn state_outlives_a_message_a_restart_and_is_shared_by_two_hosts() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = PluginDir::new();
    dir.add_with_manifest("tally", TALLY);
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut out = subscribe(&client, "test.tally.out").await;
    for expected in 1..=3 {
        assert_eq!(tally(&client, &mut out, "apples", &host).await, expected);
    }
    host.sigterm();
    host.wait_exit(WAIT).await;

    let first = Host::start_ready(&dir.path(), &nats.url()).await;
    assert_eq!(
        tally(&client, &mut out, "apples", &first).await,
        4,
        "the count survived the restart"
    );
    let second = Host::start_ready(&dir.path(), &nats.url()).await;
    // The queue group spreads these over both hosts; every count is unique.
    for _ in 0..20 {
        publish(&client, "test.tally", &[], b"apples").await;
    }
    let mut counts = BTreeSet::new();
    for i in 0..20 {
        let msg = next_message(&mut out, WAIT, &format!("count {i}"), &second).await;
        counts.insert(
            String::from_utf8_lossy(&msg.payload)
                .parse::<u64>()
                .unwrap(),
        );
    }
    assert_eq!(counts, (5..=24).collect(), "each message counted once");

    // The state is in the NATS bucket named by the manifest.
    let js = jetstream::new(client.clone());
    let bucket = js.get_key_value("tally").await.expect("bucket tally");
    let stored = bucket.get("apples").await.expect("get").expect("a value");
    assert_eq!(stored.as_ref(), b"24");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_the_manifest_does_not_grant_is_refused() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = PluginDir::new();
    dir.add_with_manifest("tally", &format!("[config]\nbucket = \"secrets\"\n{TALLY}"));
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.tally").await;
    publish(&client, "test.tally", &[], b"apples").await;
    let letter = next_dead_letter(&mut dead, "the refused open", &host).await;
    letter.assert_about("test.tally", "tally", "permanent", 1, &host);
    assert!(
        letter.error.contains("\"secrets\" is not granted"),
        "{}",
        letter.error
    );
    host.wait_for("the refusal in the log", WAIT, |l| {
        l.message()
            .is_some_and(|m| m.starts_with("key-value bucket refused"))
            && l.field_str("bucket").as_deref() == Some("secrets")
    })
    .await;
    let js = jetstream::new(client.clone());
    assert!(
        js.get_stream("KV_secrets").await.is_err(),
        "no bucket was created for the refused name"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_atomic_increment_counts_every_message_once() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "tally",
        &format!("[config]\nmode = \"increment\"\n[limits]\nconcurrency = 8\n{TALLY}"),
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut out = subscribe(&client, "test.tally.out").await;
    for _ in 0..30 {
        publish(&client, "test.tally", &[], b"pears").await;
    }
    let mut counts = BTreeSet::new();
    for i in 0..30 {
        let msg = next_message(&mut out, WAIT, &format!("count {i}"), &host).await;
        counts.insert(
            String::from_utf8_lossy(&msg.payload)
                .parse::<u64>()
                .unwrap(),
        );
    }
    assert_eq!(counts, (1..=30).collect());
}

/// One unit of `p-last` per order.
fn order_for_last_unit(i: usize) -> Vec<u8> {
    let mut order = OrderCreated::new(&format!("o-{i:03}"), "c-1");
    order.items = vec![OrderItem {
        product_id: "p-last".into(),
        quantity: 1,
        price_cents: 100,
    }];
    order.total_cents = 100;
    order.to_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_hosts_racing_for_the_last_units_reserve_exactly_the_stock() {
    const STOCK: u64 = 10;
    const ORDERS: usize = 100;
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let js = jetstream::new(client.clone());
    let stock = kv_bucket(&js, "stock").await;
    stock
        .put("p-last", format!("{{\"available\":{STOCK}}}").into())
        .await
        .expect("seed the stock");

    let dir = PluginDir::new();
    dir.add_with_manifest(
        "inventory",
        "[config]\nstock_bucket = \"stock\"\n[limits]\nconcurrency = 8\n\
         [capabilities]\nkeyvalue = [\"stock\"]\n",
    );
    let hosts = [
        Host::start_ready(&dir.path(), &nats.url()).await,
        Host::start_ready(&dir.path(), &nats.url()).await,
        Host::start_ready(&dir.path(), &nats.url()).await,
    ];
    let mut created = subscribe(&client, "inventory.reservation.created").await;
    let mut failed = subscribe(&client, "inventory.reservation.failed").await;
    let mut dead = subscribe(&client, "dlq.>").await;
    for i in 0..ORDERS {
        publish(
            &client,
            "orders.order.created",
            &[],
            &order_for_last_unit(i),
        )
        .await;
    }
    let report = || {
        hosts
            .iter()
            .map(Host::log_report)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut outcomes = 0;
    let (mut won, mut lost) = (BTreeSet::new(), BTreeSet::new());
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    while outcomes < ORDERS {
        let msg = tokio::select! {
            Some(m) = created.next() => { won.insert(order_id(&m)); m }
            Some(m) = failed.next() => { lost.insert(order_id(&m)); m }
            Some(m) = dead.next() => panic!("dead-lettered: {}\n{}", describe(&m), report()),
            _ = tokio::time::sleep_until(deadline) => panic!(
                "{} of {ORDERS} orders answered\n{}", won.len() + lost.len(), report()
            ),
        };
        drop(msg);
        outcomes += 1;
    }
    assert_eq!(won.len() as u64, STOCK, "exactly the stock is reserved");
    assert_eq!(won.len() + lost.len(), ORDERS, "every order answered once");
    let entry: serde_json::Value =
        serde_json::from_slice(&stock.get("p-last").await.unwrap().unwrap()).unwrap();
    assert_eq!(entry["available"], 0, "{entry}");
    assert_eq!(
        entry["held"].as_object().map(|h| h.len()),
        Some(STOCK as usize),
        "{entry}"
    );
    let busy = hosts
        .iter()
        .filter(|h| {
            !h.find_logs(|l| l.raw.contains("available, the order needs"))
                .is_empty()
        })
        .count();
    assert!(
        busy >= 2,
        "the orders were spread over the hosts\n{}",
        report()
    );
}

fn order_id(msg: &async_nats::Message) -> String {
    let v: serde_json::Value = serde_json::from_slice(&msg.payload).expect("JSON");
    v["order_id"].as_str().expect("order_id").to_string()
}

/// A key a bucket cannot hold (from a hostile payload here) is a permanent
/// error naming it, and the bucket is untouched.
#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_key_is_a_permanent_error() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = PluginDir::new();
    dir.add_with_manifest("tally", TALLY);
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.tally").await;
    for key in ["a b", "$KV.x", "..", "k>"] {
        publish(&client, "test.tally", &[], key.as_bytes()).await;
        let letter = next_dead_letter(&mut dead, &format!("the refusal of {key:?}"), &host).await;
        letter.assert_about("test.tally", "tally", "permanent", 1, &host);
        assert!(
            letter.error.contains("invalid key"),
            "{key:?}: {}",
            letter.error
        );
    }
    let js = jetstream::new(client.clone());
    let mut stream = js
        .get_stream("KV_tally")
        .await
        .expect("the bucket was opened");
    assert_eq!(stream.info().await.unwrap().state.messages, 0);
}

/// `kv_max_value_bytes` caps what one write may store: the write over it is a
/// permanent error, and what was stored before stays.
#[tokio::test(flavor = "multi_thread")]
async fn a_value_over_the_limit_is_refused() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = PluginDir::new();
    // Counts up to 9 fit in one byte; 10 does not.
    dir.add_with_manifest(
        "tally",
        &format!("[limits]\nkv_max_value_bytes = 1\n{TALLY}"),
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut out = subscribe(&client, "test.tally.out").await;
    let mut dead = subscribe(&client, "dlq.test.tally").await;
    for expected in 1..=9 {
        assert_eq!(tally(&client, &mut out, "plums", &host).await, expected);
    }
    publish(&client, "test.tally", &[], b"plums").await;
    let letter = next_dead_letter(&mut dead, "the refused write", &host).await;
    letter.assert_about("test.tally", "tally", "permanent", 1, &host);
    assert!(letter.error.contains("over the limit"), "{}", letter.error);
    let js = jetstream::new(client.clone());
    let bucket = js.get_key_value("tally").await.expect("bucket");
    assert_eq!(bucket.get("plums").await.unwrap().unwrap().as_ref(), b"9");
}

/// Asks tally (in batch mode) to count `keys` and returns its answer.
async fn tally_batch(
    client: &async_nats::Client,
    out: &mut async_nats::Subscriber,
    keys: &str,
    host: &Host,
) -> String {
    publish(client, "test.tally", &[], keys.as_bytes()).await;
    let msg = next_message(out, WAIT, &format!("tally's answer to {keys:.40}"), host).await;
    String::from_utf8_lossy(&msg.payload).into_owned()
}

/// `wasi:keyvalue/batch`: one `get-many`, `set-many` or `delete-many` reads,
/// writes or deletes many keys of the real bucket; a batch with an invalid
/// key or value changes nothing, one of over 1000 keys is refused, and a
/// `get-many` whose values the plugin's memory could not hold is an error,
/// not a host holding them all.
#[tokio::test(flavor = "multi_thread")]
async fn batches_read_write_and_delete_many_keys_in_one_call() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = PluginDir::new();
    // Counts up to 9 fit in one byte; 10 does not.
    dir.add_with_manifest(
        "tally",
        &format!(
            "[config]\nmode = \"batch\"\n[limits]\nkv_max_value_bytes = 1\nmemory_mb = 8\n{TALLY}"
        ),
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut out = subscribe(&client, "test.tally.out").await;
    let mut dead = subscribe(&client, "dlq.test.tally").await;

    assert_eq!(
        tally_batch(&client, &mut out, "a b c", &host).await,
        "1 1 1"
    );
    assert_eq!(
        tally_batch(&client, &mut out, "a b d", &host).await,
        "2 2 1"
    );
    let js = jetstream::new(client.clone());
    let bucket = js.get_key_value("tally").await.expect("bucket tally");
    for (key, value) in [("a", "2"), ("b", "2"), ("c", "1"), ("d", "1")] {
        assert_eq!(
            kv_value(&bucket, key).await.as_deref(),
            Some(value.as_bytes()),
            "{key}"
        );
    }

    assert_eq!(
        tally_batch(&client, &mut out, "- a c zz", &host).await,
        "deleted 3"
    );
    assert_eq!(kv_value(&bucket, "a").await, None);
    assert_eq!(kv_value(&bucket, "c").await, None);
    assert_eq!(tally_batch(&client, &mut out, "a b", &host).await, "1 3");

    // An invalid key: refused before anything is read or written.
    publish(&client, "test.tally", &[], b"b x..y").await;
    let letter = next_dead_letter(&mut dead, "the batch with an invalid key", &host).await;
    letter.assert_about("test.tally", "tally", "permanent", 1, &host);
    assert!(
        letter.error.contains("invalid key \"x..y\""),
        "{}",
        letter.error
    );
    assert_eq!(kv_value(&bucket, "b").await.as_deref(), Some(&b"3"[..]));

    // A value over the limit: the whole set-many writes nothing.
    for _ in 0..6 {
        tally_batch(&client, &mut out, "b e", &host).await;
    }
    assert_eq!(kv_value(&bucket, "b").await.as_deref(), Some(&b"9"[..]));
    publish(&client, "test.tally", &[], b"e b").await;
    let letter = next_dead_letter(&mut dead, "the batch with a value over the limit", &host).await;
    letter.assert_about("test.tally", "tally", "permanent", 1, &host);
    assert!(
        letter.error.contains("over the limit of 1"),
        "{}",
        letter.error
    );
    assert_eq!(
        kv_value(&bucket, "e").await.as_deref(),
        Some(&b"6"[..]),
        "e was not written"
    );

    // 1000 keys in one call; 1001 refused.
    let keys = |n: usize| {
        (0..n)
            .map(|i| format!("n{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let counts = tally_batch(&client, &mut out, &keys(1000), &host).await;
    assert_eq!(counts, vec!["1"; 1000].join(" "));
    assert_eq!(kv_value(&bucket, "n999").await.as_deref(), Some(&b"1"[..]));
    publish(&client, "test.tally", &[], keys(1001).as_bytes()).await;
    let letter = next_dead_letter(&mut dead, "the batch of 1001 keys", &host).await;
    letter.assert_about("test.tally", "tally", "permanent", 1, &host);
    assert!(
        letter
            .error
            .contains("a batch of 1001 keys is over the limit of 1000"),
        "{}",
        letter.error
    );
    assert_eq!(kv_value(&bucket, "n1000").await, None);

    // Values written by someone else that the plugin's 8 MiB could not hold.
    let big = vec![b'7'; 900 * 1024];
    let mut names = Vec::new();
    for i in 0..12 {
        let key = format!("big{i}");
        bucket
            .put(&key, big.clone().into())
            .await
            .expect("put a big value");
        names.push(key);
    }
    publish(&client, "test.tally", &[], names.join(" ").as_bytes()).await;
    let letter = next_dead_letter(&mut dead, "the get-many over the memory cap", &host).await;
    letter.assert_about("test.tally", "tally", "permanent", 1, &host);
    assert!(
        letter.error.contains("the plugin's memory"),
        "{}",
        letter.error
    );

    // The plugin still serves.
    assert_eq!(tally_batch(&client, &mut out, "a", &host).await, "2");
}
