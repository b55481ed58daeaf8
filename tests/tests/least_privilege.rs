//! The least-privilege NATS permissions of `docs/security.md`, tested: the
//! host runs as a NATS user allowed only what its plugins need, and the
//! order flow (payment on JetStream with dedup, inventory on core NATS with
//! its key-value bucket, audit on core NATS) still works, dead letters
//! included, with no permission violation; and a subject the permissions do
//! not grant is really refused by the server.
//!
//! The server's configuration is the block between the markers in
//! `docs/security.md`, read at build time, so the document and this test
//! cannot drift apart. Only the two passwords it reads from variables are
//! defined here. The test's own client (the shop: publishing orders,
//! creating the streams and buckets) is the config's unrestricted user.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, kv, stream};
use async_nats::{Client, ConnectOptions, Message};
use evhost_tests::{
    DeadLetter, Host, HostOptions, NatsServer, OrderCreated, PluginDir, WAIT, consumer_of,
    describe, header, next_message, pending_message, subscribe,
};
use serde_json::{Value, json};

/// The threat model, with the permissions between its markers.
const SECURITY_MD: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/security.md"));
const BEGIN: &str = "<!-- least-privilege config: begin -->";
const END: &str = "<!-- least-privilege config: end -->";

const SHOP_PASSWORD: &str = "shop-pa55-lp";
const EVHOST_PASSWORD: &str = "evhost-pa55-lp";

/// The manifests of the example deployment, as `docs/security.md` shows them.
const PAYMENT_MANIFEST: &str = "[config]\nlimit_cents = 20000\n\n[jetstream]\n\
                                stream = \"ORDERS\"\ndedup = \"json:/event_id\"\n";
const INVENTORY_MANIFEST: &str =
    "[config]\nstock_bucket = \"stock\"\n\n[capabilities]\nkeyvalue = [\"stock\"]\n";

/// `manifest`, checked to be the one `docs/security.md` shows.
fn documented_manifest(manifest: &'static str) -> &'static str {
    assert!(
        SECURITY_MD.contains(&format!("```toml\n{manifest}```")),
        "docs/security.md does not show this manifest:\n{manifest}"
    );
    manifest
}

/// The nats-server configuration block of `docs/security.md`: the lines
/// between the markers, without the code fence.
fn documented_config() -> String {
    let start = SECURITY_MD
        .find(BEGIN)
        .unwrap_or_else(|| panic!("docs/security.md has no line {BEGIN:?}"))
        + BEGIN.len();
    let len = SECURITY_MD[start..]
        .find(END)
        .unwrap_or_else(|| panic!("docs/security.md has no line {END:?} after {BEGIN:?}"));
    let block: Vec<&str> = SECURITY_MD[start..start + len]
        .lines()
        .filter(|l| !l.trim_start().starts_with("```"))
        .collect();
    let block = block.join("\n");
    assert!(
        block.contains("user: evhost") && block.contains("user: shop"),
        "the block between the markers of docs/security.md is not the expected config:\n{block}"
    );
    block
}

/// A nats-server with the documented accounts and permissions, the shop's
/// client, and the streams and buckets the shop creates before the host
/// starts (the host's user may not create them).
async fn shop_server() -> (NatsServer, Client, jetstream::Context) {
    let nats = NatsServer::start_with_config(&format!(
        "SHOP_PASSWORD: \"{SHOP_PASSWORD}\"\nEVHOST_PASSWORD: \"{EVHOST_PASSWORD}\"\n{}",
        documented_config()
    ));
    let shop = ConnectOptions::with_user_and_password("shop".into(), SHOP_PASSWORD.into())
        .connect(nats.url())
        .await
        .unwrap_or_else(|e| panic!("the shop cannot connect: {e}\n{}", nats.log()));
    let js = jetstream::new(shop.clone());
    for (name, subjects) in [("ORDERS", "orders.>"), ("DLQ", "dlq.>")] {
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![subjects.into()],
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create stream {name}: {e}"));
    }
    bucket(&js, "stock", None).await;
    bucket(&js, "evhost-dedup", Some(Duration::from_secs(24 * 3600))).await;
    (nats, shop, js)
}

/// Creates key-value bucket `name` as evhost would (nats-server 2.9 cannot
/// take async-nats's `create_key_value`), entries expiring after `ttl`.
async fn bucket(js: &jetstream::Context, name: &str, ttl: Option<Duration>) -> kv::Store {
    js.create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age: ttl.unwrap_or_default(),
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("create bucket {name}: {e}"));
    js.get_key_value(name)
        .await
        .unwrap_or_else(|e| panic!("open bucket {name}: {e}"))
}

/// Starts `evhost run` as the documented `evhost` user and waits for it.
async fn start_host(dir: &PluginDir, nats: &NatsServer) -> Host {
    let host = Host::start_with(
        &dir.path(),
        &nats.url(),
        HostOptions {
            env: vec![
                ("NATS_USER".into(), "evhost".into()),
                ("NATS_PASSWORD".into(), EVHOST_PASSWORD.into()),
            ],
            ..HostOptions::default()
        },
    );
    host.wait_for_log("host ready", None, WAIT).await;
    host
}

/// The host's and the server's log, for failure messages.
fn report(host: &Host, nats: &NatsServer) -> String {
    format!(
        "{}\n--- nats-server log ---\n{}",
        host.log_report(),
        nats.log()
    )
}

/// Every line of the host's log and of the server's that tells of a
/// permission violation.
fn violations(host: &Host, nats: &NatsServer) -> Vec<String> {
    let server = nats.log();
    host.lines()
        .into_iter()
        .map(|l| l.raw)
        .chain(server.lines().map(str::to_string))
        .filter(|l| l.to_ascii_lowercase().contains("violation"))
        .collect()
}

fn json_of(msg: &Message) -> Value {
    serde_json::from_slice(&msg.payload)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe(msg)))
}

/// Waits until `audit` has logged an event on `subject` whose line ends
/// with `end` (`event_id=…`, or the size of a payload without one).
async fn audit_saw(host: &Host, subject: &str, end: Option<&str>) {
    let start = format!("audit {subject} ");
    host.wait_for(&format!("audit's line for {subject}"), WAIT, |l| {
        l.field_str("plugin").as_deref() == Some("audit")
            && l.message()
                .is_some_and(|m| m.starts_with(&start) && end.is_none_or(|e| m.ends_with(e)))
    })
    .await;
}

/// The stock entry of `product` in the `stock` bucket.
async fn stock_of(stock: &kv::Store, product: &str) -> Value {
    let bytes = stock
        .get(product)
        .await
        .unwrap_or_else(|e| panic!("read stock of {product}: {e}"))
        .unwrap_or_else(|| panic!("no stock entry for {product}"));
    serde_json::from_slice(&bytes).expect("a stock entry is JSON")
}

/// How many messages stream `name` holds.
async fn stored(js: &jetstream::Context, name: &str) -> u64 {
    let mut stream = js
        .get_stream(name)
        .await
        .unwrap_or_else(|e| panic!("stream {name}: {e}"));
    stream.info().await.expect("stream info").state.messages
}

/// Waits until payment's consumer on `ORDERS` has nothing pending and
/// nothing awaiting an ack.
async fn settled(js: &jetstream::Context, ctx: &impl Fn() -> String) -> consumer::Info {
    let mut consumer = consumer_of(js, "ORDERS", "orders.order.created").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let info = consumer.info().await.expect("consumer info").clone();
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            return info;
        }
        assert!(
            Instant::now() < deadline,
            "payment's consumer never settled: {info:?}\n{}",
            ctx()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_order_flow_on_core_nats_and_jetstream_passes_under_the_documented_permissions() {
    let (nats, shop, js) = shop_server().await;
    let stock = js.get_key_value("stock").await.expect("open stock");
    for (product, available) in [("p-red-mug", 10), ("p-blue-plate", 5)] {
        stock
            .put(
                product,
                json!({ "available": available }).to_string().into(),
            )
            .await
            .expect("stock a product");
    }
    let dir = PluginDir::new();
    dir.add_with_manifest("payment", documented_manifest(PAYMENT_MANIFEST))
        .add_with_manifest("inventory", documented_manifest(INVENTORY_MANIFEST))
        .add("audit");
    let host = start_host(&dir, &nats).await;
    let ctx = || report(&host, &nats);
    assert_eq!(
        host.wait_for_log("host ready", None, WAIT)
            .await
            .field_str("plugins")
            .as_deref(),
        Some("3"),
        "every plugin loads under the restricted user\n{}",
        ctx()
    );

    let mut payments = subscribe(&shop, "payments.payment.completed").await;
    let mut reservations = subscribe(&shop, "inventory.reservation.created").await;
    let mut declined = subscribe(&shop, "payments.payment.failed").await;
    let mut short = subscribe(&shop, "inventory.reservation.failed").await;
    let mut dead = subscribe(&shop, "dlq.>").await;

    // An order, stored in ORDERS: payment takes it from the stream,
    // inventory and audit from core NATS.
    let order = OrderCreated::new("ord-lp-1", "cust-7");
    js.publish("orders.order.created", order.to_bytes().into())
        .await
        .expect("publish the order")
        .await
        .expect("ORDERS stores the order");

    let payment = next_message(&mut payments, WAIT, "payments.payment.completed", &host).await;
    let paid = json_of(&payment);
    assert_eq!(
        (paid["order_id"].as_str(), paid["causation_id"].as_str()),
        (Some("ord-lp-1"), Some(order.event_id.as_str())),
        "{}\n{}",
        describe(&payment),
        ctx()
    );
    let reservation = next_message(
        &mut reservations,
        WAIT,
        "inventory.reservation.created",
        &host,
    )
    .await;
    assert_eq!(
        json_of(&reservation)["causation_id"].as_str(),
        Some(order.event_id.as_str()),
        "{}\n{}",
        describe(&reservation),
        ctx()
    );
    let id = format!("event_id={}", order.event_id);
    audit_saw(&host, "orders.order.created", Some(&id)).await;
    audit_saw(&host, "payments.payment.completed", None).await;
    audit_saw(&host, "inventory.reservation.created", None).await;

    // inventory held the units with a compare-and-swap in its bucket.
    assert_eq!(
        stock_of(&stock, "p-red-mug").await["available"],
        json!(8),
        "{}",
        ctx()
    );
    assert_eq!(
        stock_of(&stock, "p-blue-plate").await["available"],
        json!(4),
        "{}",
        ctx()
    );

    // payment acked the order (nothing pending, nothing redelivered) and
    // recorded its id in the dedup bucket.
    let info = settled(&js, &ctx).await;
    assert_eq!(
        (info.delivered.stream_sequence, info.num_redelivered),
        (1, 0),
        "{info:?}\n{}",
        ctx()
    );
    let dedup = js
        .get_key_value("evhost-dedup")
        .await
        .expect("open evhost-dedup");
    assert!(
        dedup
            .get(format!("payment.{}", order.event_id))
            .await
            .expect("read evhost-dedup")
            .is_some(),
        "payment's handled id is recorded\n{}",
        ctx()
    );

    // The same event again: payment reads its id in the bucket and acks it
    // without charging twice.
    js.publish("orders.order.created", order.to_bytes().into())
        .await
        .expect("publish the order again")
        .await
        .expect("ORDERS stores it");
    host.wait_for_log("duplicate: already handled; acking", Some("payment"), WAIT)
        .await;
    // inventory, on core NATS, has no dedup: it reserves again.
    next_message(
        &mut reservations,
        WAIT,
        "inventory's second reservation",
        &host,
    )
    .await;
    assert!(
        pending_message(&mut payments).is_none(),
        "a duplicate was charged\n{}",
        ctx()
    );

    // An order over payment's limit, of more mugs than are in stock: the
    // flow's two failure events.
    let mut big = OrderCreated::new("ord-lp-big", "cust-7");
    big.items.truncate(1);
    big.items[0].quantity = 20;
    big.total_cents = 20 * big.items[0].price_cents;
    js.publish("orders.order.created", big.to_bytes().into())
        .await
        .expect("publish the big order")
        .await
        .expect("ORDERS stores it");
    for (sub, subject) in [
        (&mut declined, "payments.payment.failed"),
        (&mut short, "inventory.reservation.failed"),
    ] {
        let msg = next_message(sub, WAIT, subject, &host).await;
        assert_eq!(
            json_of(&msg)["causation_id"].as_str(),
            Some(big.event_id.as_str()),
            "{}\n{}",
            describe(&msg),
            ctx()
        );
        audit_saw(&host, subject, None).await;
    }
    assert_eq!(
        stock_of(&stock, "p-red-mug").await["available"],
        json!(6),
        "a short order holds nothing\n{}",
        ctx()
    );

    if let Some(msg) = pending_message(&mut dead) {
        panic!(
            "a valid order was dead-lettered: {}\n{}",
            describe(&msg),
            ctx()
        );
    }
    assert_eq!(stored(&js, "DLQ").await, 0, "{}", ctx());

    // An order that does not decode: payment (JetStream, through the DLQ
    // stream, then TERM) and inventory (core NATS) dead-letter it.
    let malformed = br#"{"order_id":"ord-lp-bad"}"#;
    js.publish("orders.order.created", malformed.to_vec().into())
        .await
        .expect("publish a malformed order")
        .await
        .expect("ORDERS stores it");
    let mut letters = Vec::new();
    for _ in 0..2 {
        let letter = DeadLetter::parse(
            next_message(
                &mut dead,
                WAIT,
                "a dead letter of the malformed order",
                &host,
            )
            .await,
        );
        letter.assert_about(
            "orders.order.created",
            &letter.plugin,
            "permanent",
            1,
            &host,
        );
        letters.push(letter);
    }
    letters.sort_by(|a, b| a.plugin.cmp(&b.plugin));
    let plugins: Vec<&str> = letters.iter().map(|l| l.plugin.as_str()).collect();
    assert_eq!(plugins, ["inventory", "payment"], "{}", ctx());
    assert_eq!(
        header(&letters[1].message, "Evhost-Stream").as_deref(),
        Some("ORDERS"),
        "{}",
        describe(&letters[1].message)
    );
    let size = format!("({} bytes)", malformed.len());
    audit_saw(&host, "orders.order.created", Some(&size)).await;
    let deadline = Instant::now() + WAIT;
    while stored(&js, "DLQ").await < 2 {
        assert!(
            Instant::now() < deadline,
            "the DLQ stream does not keep both dead letters\n{}",
            ctx()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Dead-lettered, then TERMed: nothing left pending for payment.
    let info = settled(&js, &ctx).await;
    assert_eq!(info.delivered.stream_sequence, 4, "{info:?}\n{}", ctx());

    assert_eq!(violations(&host, &nats), Vec::<String>::new(), "{}", ctx());
    let unexpected: Vec<String> = host
        .lines()
        .into_iter()
        .filter(|l| matches!(l.level(), Some("WARN" | "ERROR")))
        .filter(|l| {
            // The malformed order's two letters; and what a busy or small
            // machine may say (a permission refused shows as a violation).
            ![
                "message dead-lettered",
                "JetStream pull interrupted",
                "pooling allocator unavailable; allocating instances on demand",
            ]
            .iter()
            .any(|m| l.is(m, None))
        })
        .map(|l| l.raw)
        .collect();
    assert_eq!(
        unexpected,
        Vec::<String>::new(),
        "warnings or errors other than the two dead letters\n{}",
        ctx()
    );
    assert!(
        !host.logs().contains(EVHOST_PASSWORD),
        "the password is in the host's log\n{}",
        host.log_report()
    );
}

/// The documented permissions are enforced: a plugin whose manifest allows
/// it to publish where the host's NATS user may not (`shipping.>`) passes the
/// host's own checks, and the server refuses its output. The host learns of
/// it only from the server's `-ERR`, which it logs as a `NATS event`.
#[tokio::test(flavor = "multi_thread")]
async fn an_output_outside_the_documented_permissions_is_refused_by_the_server() {
    let (nats, shop, _js) = shop_server().await;
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "bigout",
        "subjects = [\"orders.order.created\"]\n\n[config]\ncount = 1\n\
         subject = \"shipping.label.requested\"\n\n[publish]\nallow = [\"shipping.>\"]\n",
    );
    let host = start_host(&dir, &nats).await;
    let ctx = || report(&host, &nats);
    let mut shipping = subscribe(&shop, "shipping.>").await;

    let order = OrderCreated::new("ord-lp-2", "cust-8");
    shop.publish("orders.order.created", order.to_bytes().into())
        .await
        .expect("publish the order");
    shop.flush().await.expect("flush");

    let refused = host
        .wait_for(
            "the server's refusal of shipping.label.requested, in the host's log",
            WAIT,
            |l| {
                l.is("NATS event", None)
                    && l.field_str("event").is_some_and(|e| {
                        e.contains("Permissions Violation for Publish")
                            && e.contains("shipping.label.requested")
                    })
            },
        )
        .await;
    assert!(
        refused
            .field_str("connection")
            .is_some_and(|c| c.starts_with("evhost")),
        "{}\n{}",
        refused.raw,
        ctx()
    );
    assert!(
        nats.log().contains("Publish Violation"),
        "the server logs the refusal\n{}",
        ctx()
    );
    // The refusal came after the server dropped the message: nothing reached
    // a subscriber.
    assert!(
        pending_message(&mut shipping).is_none(),
        "the refused output was delivered\n{}",
        ctx()
    );
}
