//! Python handlers through the real host: `plugins/payment-py` (the order
//! flow's payment, in Python) and the `echo-py` test plugin, built with
//! componentize-py (see `evhost_tests::python`), against a real nats-server.
//!
//! The Python payment runs as `payment`, the name its Rust twin has in the
//! order flow, or beside the Rust one to compare their outputs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evhost_tests::python::python_wasm;
use evhost_tests::sdk_scenarios::{
    self, COMPILE_WAIT, Ending, SdkPlugin, start_compiling_host as start_host,
};
use evhost_tests::{
    Host, NatsServer, OrderCreated, PluginDir, WAIT, connect, describe, eventually, header,
    next_dead_letter, next_message, pending_message, publish, subscribe, wasm,
};
use futures::StreamExt;
use serde_json::Value;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn json(msg: &async_nats::Message) -> Value {
    serde_json::from_slice(&msg.payload)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe(msg)))
}

/// A plugins folder with the Python payment as `payment`, with `manifest`.
fn python_payment(manifest: &str) -> PluginDir {
    let dir = PluginDir::new();
    dir.write_manifest("payment", manifest);
    dir.add_as("payment", &python_wasm("payment-py"));
    dir
}

/// The fields of an output event, minus those made fresh on every call
/// (`event_id`, `created_at`), with the field names in their order.
fn comparable(msg: &async_nats::Message) -> (Vec<String>, Value) {
    let mut event = json(msg);
    let object = event
        .as_object_mut()
        .unwrap_or_else(|| panic!("not a JSON object: {}", describe(msg)));
    let keys = object.keys().cloned().collect();
    for fresh in ["event_id", "created_at"] {
        let value = object
            .remove(fresh)
            .unwrap_or_else(|| panic!("no {fresh}: {}", describe(msg)));
        assert!(
            value.as_str().is_some_and(|s| !s.is_empty()),
            "{fresh} must be a non-empty string: {}",
            describe(msg)
        );
    }
    (keys, event)
}

/// The Rust and the Python payment, side by side on the same events, publish
/// the same events: same subjects, same fields in the same order, same
/// values (but the fresh `event_id` and `created_at`), same headers; and the
/// order flow (inventory, audit) goes on around the Python one.
#[tokio::test(flavor = "multi_thread")]
async fn python_payment_publishes_what_the_rust_payment_publishes() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    let config = "[config]\nlimit_cents = 10000\nversion = \"v7\"\n";
    dir.write_manifest("payment", config);
    dir.write_manifest("payment-py", config);
    dir.add("payment")
        .add_as("payment-py", &python_wasm("payment-py"))
        .add("inventory")
        .add("audit");
    let host = start_host(&dir, &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut payments = subscribe(&client, "payments.>").await;
    let mut reservations = subscribe(&client, "inventory.reservation.created").await;
    let mut dead = subscribe(&client, "dlq.>").await;

    // Under the limit: completed. Over it: failed.
    let small = OrderCreated::new("ord-py-1", "cust-42");
    let mut big = OrderCreated::new("ord-py-2", "cust-43");
    big.items[0].quantity = 100;
    big.total_cents = 100 * big.items[0].price_cents + big.items[1].price_cents;
    for order in [&small, &big] {
        publish(
            &client,
            "orders.order.created",
            &[("traceparent", TRACEPARENT)],
            &order.to_bytes(),
        )
        .await;
    }

    // Two plugins, two orders: four payment events.
    let mut events: HashMap<(String, String), Vec<async_nats::Message>> = HashMap::new();
    for i in 0..4 {
        let msg = next_message(
            &mut payments,
            WAIT,
            &format!("payment event #{}", i + 1),
            &host,
        )
        .await;
        let order_id = json(&msg)["order_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        events
            .entry((msg.subject.to_string(), order_id))
            .or_default()
            .push(msg);
    }
    for (subject, order) in [
        ("payments.payment.completed", &small),
        ("payments.payment.failed", &big),
    ] {
        let pair = events
            .get(&(subject.to_string(), order.order_id.clone()))
            .unwrap_or_else(|| {
                panic!(
                    "no {subject} for {}; got {:?}\n{}",
                    order.order_id,
                    events.keys().collect::<Vec<_>>(),
                    host.log_report()
                )
            });
        assert_eq!(
            pair.len(),
            2,
            "one {subject} from each payment for {}\n{}",
            order.order_id,
            host.log_report()
        );
        let (a, b) = (comparable(&pair[0]), comparable(&pair[1]));
        assert_eq!(
            a,
            b,
            "the Rust and Python payments differ:\n{}\n{}",
            describe(&pair[0]),
            describe(&pair[1])
        );
        for msg in pair {
            let event = json(msg);
            assert_eq!(
                event["causation_id"].as_str(),
                Some(order.event_id.as_str())
            );
            assert_eq!(event["handler_version"].as_str(), Some("v7"));
            assert_eq!(
                header(msg, "content-type").as_deref(),
                Some("application/json")
            );
            assert_eq!(header(msg, "traceparent").as_deref(), Some(TRACEPARENT));
        }
        if subject == "payments.payment.completed" {
            assert_eq!(
                pair[0].payload.len(),
                pair[1].payload.len(),
                "same bytes but for the fresh fields (a UUID and a timestamp of the same length)"
            );
        }
    }
    // The Python payment's completed event: the amount, as the Rust one says.
    let completed = &events[&(
        "payments.payment.completed".to_string(),
        small.order_id.clone(),
    )][0];
    assert_eq!(
        json(completed)["amount_cents"].as_u64(),
        Some(small.total_cents)
    );

    // The rest of the flow around it.
    let reservation = next_message(&mut reservations, WAIT, "a reservation", &host).await;
    assert!(
        json(&reservation)["order_id"]
            .as_str()
            .is_some_and(|id| id == small.order_id || id == big.order_id)
    );
    assert!(
        pending_message(&mut payments).is_none(),
        "more payment events than expected\n{}",
        host.log_report()
    );
    if let Some(msg) = pending_message(&mut dead) {
        panic!(
            "a valid order was dead-lettered: {}\n{}",
            describe(&msg),
            host.log_report()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_payment_retries_transient_failures_until_success() {
    let nats = NatsServer::start();
    let dir = python_payment(
        "[config]\nfail_attempts = 2\n\n[delivery]\nmax_attempts = 5\nbackoff = \"10ms\"\n",
    );
    let host = start_host(&dir, &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.>").await;
    let mut payments = subscribe(&client, "payments.>").await;
    let order = OrderCreated::new("ord-py-3001", "cust-42");
    publish(&client, "orders.order.created", &[], &order.to_bytes()).await;

    let payment = next_message(&mut payments, WAIT, "payment after two retries", &host).await;
    assert_eq!(payment.subject.as_str(), "payments.payment.completed");
    assert_eq!(json(&payment)["order_id"].as_str(), Some("ord-py-3001"));
    // Attempts 1 and 2 failed as transient, with the Python handler's reason.
    for attempt in 1..=2 {
        host.wait_for(&format!("the retry line of attempt {attempt}"), WAIT, |l| {
            l.field_str("plugin").as_deref() == Some("payment")
                && l.field_str("kind").as_deref() == Some("transient")
                && l.field_str("attempt").as_deref() == Some(&attempt.to_string())
                && l.field_str("error").as_deref()
                    == Some(&format!("payment provider unavailable (attempt {attempt})"))
        })
        .await;
    }
    assert!(
        pending_message(&mut dead).is_none(),
        "{}",
        host.log_report()
    );
    assert!(
        pending_message(&mut payments).is_none(),
        "the failed attempts must publish nothing\n{}",
        host.log_report()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn python_payment_exhausts_an_unavailable_provider() {
    let nats = NatsServer::start();
    let dir = python_payment(
        "[config]\nunavailable = true\n\n[delivery]\nmax_attempts = 3\nbackoff = \"10ms\"\n",
    );
    let host = start_host(&dir, &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.orders.order.created").await;
    let mut payments = subscribe(&client, "payments.>").await;
    let order = OrderCreated::new("ord-py-4001", "cust-42");
    publish(
        &client,
        "orders.order.created",
        &[("x-custom", "kept")],
        &order.to_bytes(),
    )
    .await;

    let letter = next_dead_letter(&mut dead, "the dead letter after 3 attempts", &host).await;
    letter.assert_about("orders.order.created", "payment", "exhausted", 3, &host);
    assert_eq!(letter.message.payload.as_ref(), order.to_bytes());
    assert_eq!(header(&letter.message, "x-custom").as_deref(), Some("kept"));
    assert!(
        letter
            .error
            .contains("payment provider unavailable (attempt 3)"),
        "Evhost-Error carries the last reason: {:?}",
        letter.error
    );
    assert!(
        pending_message(&mut payments).is_none(),
        "{}",
        host.log_report()
    );
}

/// Undecodable payloads (not JSON, a field of the wrong type, a negative
/// quantity the Rust twin's `u32` refuses) and broken business rules are
/// dead-lettered at once, byte for byte, with their headers.
#[tokio::test(flavor = "multi_thread")]
async fn python_payment_dead_letters_permanent_failures_byte_for_byte() {
    let nats = NatsServer::start();
    let dir = python_payment("[config]\ndecline_customers = \"cust-stolen-card, cust-blocked\"\n");
    let host = start_host(&dir, &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.orders.order.created").await;
    let mut payments = subscribe(&client, "payments.>").await;

    let mut negative = serde_json::to_value(OrderCreated::new("ord-py-5003", "cust-42"))
        .expect("an order as JSON");
    negative["items"][0]["quantity"] = Value::from(-2);
    let mut wrong_type = serde_json::to_value(OrderCreated::new("ord-py-5004", "cust-42"))
        .expect("an order as JSON");
    wrong_type["total_cents"] = Value::from("6499");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"\xff\xfe{not json\x00\x80\xc3(".to_vec(),
            "does not decode as OrderCreated",
        ),
        (
            serde_json::to_vec(&negative).unwrap(),
            "does not decode as OrderCreated",
        ),
        (
            serde_json::to_vec(&wrong_type).unwrap(),
            "does not decode as OrderCreated",
        ),
        (
            OrderCreated::new("ord-py-5001", "cust-42")
                .with_wrong_total()
                .to_bytes(),
            "does not match the items",
        ),
        (
            OrderCreated::new("ord-py-5002", "cust-blocked").to_bytes(),
            "card declined for customer cust-blocked",
        ),
    ];
    for (payload, reason) in &cases {
        publish(
            &client,
            "orders.order.created",
            &[("x-custom", "kept"), ("traceparent", TRACEPARENT)],
            payload,
        )
        .await;
        let letter =
            next_dead_letter(&mut dead, &format!("the dead letter ({reason})"), &host).await;
        letter.assert_about("orders.order.created", "payment", "permanent", 1, &host);
        assert_eq!(
            letter.message.payload.as_ref(),
            payload.as_slice(),
            "the dead letter's payload must be byte-identical"
        );
        assert!(
            letter.error.contains(reason),
            "Evhost-Error {:?} must say {reason:?}",
            letter.error
        );
        assert_eq!(header(&letter.message, "x-custom").as_deref(), Some("kept"));
        assert_eq!(
            header(&letter.message, "traceparent").as_deref(),
            Some(TRACEPARENT)
        );
    }
    assert!(
        pending_message(&mut payments).is_none(),
        "a rejected order must publish nothing\n{}",
        host.log_report()
    );

    // A valid order still pays: the payloads above were the cause.
    let fine = OrderCreated::new("ord-py-5005", "cust-42");
    publish(&client, "orders.order.created", &[], &fine.to_bytes()).await;
    let payment = next_message(&mut payments, WAIT, "payment of a valid order", &host).await;
    assert_eq!(payment.subject.as_str(), "payments.payment.completed");
    assert_eq!(json(&payment)["order_id"].as_str(), Some("ord-py-5005"));
}

/// Sends `payload` to `test.pyecho` and returns the reply's `echo-version`.
async fn pyecho_roundtrip(client: &async_nats::Client, host: &Host, payload: &str) -> String {
    let mut out = subscribe(client, "test.pyecho.out").await;
    publish(client, "test.pyecho", &[], payload.as_bytes()).await;
    let msg = next_message(
        &mut out,
        WAIT,
        &format!("echo-py's reply to {payload:?}"),
        host,
    )
    .await;
    assert_eq!(msg.payload.as_ref(), payload.as_bytes());
    header(&msg, "echo-version")
        .unwrap_or_else(|| panic!("reply without echo-version: {}", describe(&msg)))
}

/// An exception no handler catches ends like a Rust panic: a trap, the dead
/// letter's `Evhost-Error` quoting the exception's type and message, the
/// traceback in the log, and the plugin serving the next message.
#[tokio::test(flavor = "multi_thread")]
async fn uncaught_python_exception_is_a_trap_quoting_it() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add_as("echo-py", &python_wasm("echo-py"));
    let host = start_host(&dir, &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.pyecho").await;
    publish(&client, "test.pyecho", &[("x-custom", "kept")], b"crash").await;

    let letter = next_dead_letter(&mut dead, "echo-py's dead letter", &host).await;
    letter.assert_about("test.pyecho", "echo-py", "trap", 1, &host);
    assert_eq!(letter.message.payload.as_ref(), b"crash");
    assert_eq!(header(&letter.message, "x-custom").as_deref(), Some("kept"));
    assert!(
        letter
            .error
            .contains("app.DeliberateCrash: deliberate crash in echo-py v1"),
        "Evhost-Error must quote the exception: {:?}",
        letter.error
    );
    assert!(
        letter.error.contains("app.py:"),
        "Evhost-Error must say where it was raised: {:?}",
        letter.error
    );
    host.wait_for("the traceback in the log", WAIT, |l| {
        l.field_str("plugin").as_deref() == Some("echo-py")
            && l.raw.contains("Traceback (most recent call last)")
    })
    .await;

    assert_eq!(
        pyecho_roundtrip(&client, &host, "after the crash").await,
        "1"
    );
}

/// Replacing echo-py with its second version, and back, under a steady
/// stream: every message answered exactly once, by one version or the other.
#[tokio::test(flavor = "multi_thread")]
async fn python_reload_under_steady_stream_loses_and_duplicates_nothing() {
    const STREAM_MIN: usize = 500;
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    let (v1, v2) = (python_wasm("echo-py"), python_wasm("echo-py-v2"));
    dir.add_as("echo-py", &v1);
    let host = start_host(&dir, &nats.url()).await;
    let client = connect(&nats.url()).await;
    assert_eq!(pyecho_roundtrip(&client, &host, "before").await, "1");

    let mut out = subscribe(&client, "test.pyecho.out").await;
    let replies: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let collector = {
        let replies = replies.clone();
        tokio::spawn(async move {
            while let Some(msg) = out.next().await {
                let id = String::from_utf8_lossy(&msg.payload).into_owned();
                let version = header(&msg, "echo-version").unwrap_or_default();
                replies.lock().unwrap().entry(id).or_default().push(version);
            }
        })
    };
    let reloads_done = Arc::new(AtomicBool::new(false));
    let publisher = {
        let client = client.clone();
        let reloads_done = reloads_done.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            let mut sent = 0usize;
            while sent < 100 * STREAM_MIN
                && (sent < STREAM_MIN || !reloads_done.load(Ordering::SeqCst))
            {
                tick.tick().await;
                client
                    .publish("test.pyecho", format!("id-{sent:06}").into())
                    .await
                    .expect("publish to test.pyecho");
                sent += 1;
            }
            client.flush().await.expect("flush");
            sent
        })
    };

    // v1 -> v2 -> v1, each a plain copy over the file.
    for src in [&v2, &v1] {
        let before = host.count_logs("plugin reloaded", Some("echo-py"));
        dir.copy_over("echo-py", src);
        host.wait_for_log_count("plugin reloaded", Some("echo-py"), before + 1, COMPILE_WAIT)
            .await;
    }
    reloads_done.store(true, Ordering::SeqCst);
    let total = publisher.await.expect("the publisher task");

    eventually(
        &format!("replies to all {total} messages"),
        WAIT,
        || (replies.lock().unwrap().len() >= total).then_some(()),
        || {
            format!(
                "{} of {total} answered\n{}",
                replies.lock().unwrap().len(),
                host.log_report()
            )
        },
    )
    .await;
    // A little longer, for any duplicate still on its way.
    tokio::time::sleep(Duration::from_millis(500)).await;
    collector.abort();
    let replies = replies.lock().unwrap().clone();

    let mut versions: HashMap<String, usize> = HashMap::new();
    for v in replies.values().flatten() {
        *versions.entry(v.clone()).or_default() += 1;
    }
    let missing: Vec<String> = (0..total)
        .map(|i| format!("id-{i:06}"))
        .filter(|id| !replies.contains_key(id))
        .collect();
    let duplicated: Vec<_> = replies.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(
        missing.is_empty() && duplicated.is_empty() && replies.len() == total,
        "of {total} messages, {} got no reply (first: {:?}), {} more than one (first: {:?}), \
         {} replies in all; versions seen: {versions:?}\n{}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        duplicated.len(),
        duplicated.iter().take(5).collect::<Vec<_>>(),
        replies.len(),
        host.log_report()
    );
    assert!(
        versions.get("1").is_some_and(|n| *n > 0) && versions.get("2").is_some_and(|n| *n > 0),
        "both versions answered: {versions:?}"
    );
    assert_eq!(pyecho_roundtrip(&client, &host, "after").await, "1");
    // The Rust plugins still load beside it (the build script skipped the
    // Python folder under plugins/).
    assert!(wasm("payment").is_file());
}

/// The Python test plugin, for the scenarios every SDK must pass.
fn echo_py_caller() -> SdkPlugin {
    SdkPlugin {
        name: "echo-py",
        wasm: python_wasm("echo-py"),
        tally: "test.pytally",
        fetch: "test.pyfetch",
        not_granted: "'secrets' is not granted",
        refused: Ending {
            kind: "permanent",
            attempts: 1,
            says: "refused by the host: http-request-denied",
        },
        oversized: Ending {
            kind: "permanent",
            attempts: 1,
            says: "HTTP response too large",
        },
    }
}

/// `evhost_sdk.kv` against a real bucket (`sdk_scenarios`).
#[tokio::test(flavor = "multi_thread")]
async fn python_handler_keeps_state_in_a_granted_bucket() {
    sdk_scenarios::keeps_state_in_a_granted_bucket(&echo_py_caller()).await;
}

/// `evhost_sdk.http`, in a component built against `handler-http`, against
/// real servers (`sdk_scenarios`).
#[tokio::test(flavor = "multi_thread")]
async fn python_http_reaches_what_the_manifest_grants_and_nothing_else() {
    sdk_scenarios::reaches_what_the_manifest_grants_and_nothing_else(&echo_py_caller()).await;
}

/// The Python payment with `provider_url` charges a real provider as the
/// Rust one does: a 503 is retried with the same `Idempotency-Key` until the
/// charge goes through, and a declined card (402) is a permanent dead letter.
#[tokio::test(flavor = "multi_thread")]
async fn python_payment_charges_a_real_provider() {
    use evhost_tests::provider::{Provider, one_idempotency_key};
    let provider = Provider::start().await;
    provider.fail_first(2);
    provider.decline("c-bad");
    let nats = NatsServer::start();
    let dir = python_payment(&format!(
        "[config]\nprovider_url = \"{}\"\n[delivery]\nbackoff = \"10ms\"\n\
         [capabilities]\nhttp = [\"{}\"]\n",
        provider.url(),
        provider.url()
    ));
    let host = start_host(&dir, &nats.url()).await;
    let client = connect(&nats.url()).await;
    let mut done = subscribe(&client, "payments.payment.completed").await;
    let mut dead = subscribe(&client, "dlq.orders.order.created").await;

    let order = OrderCreated::new("o-1", "c-1");
    publish(&client, "orders.order.created", &[], &order.to_bytes()).await;
    let completed = next_message(&mut done, WAIT, "payment completed", &host).await;
    assert_eq!(json(&completed)["order_id"], "o-1");
    let charges = provider.requests_to("/charges");
    assert_eq!(charges.len(), 3, "two 503s, then the charge: {charges:?}");
    one_idempotency_key(&charges, "payment:");
    let body: Value = serde_json::from_slice(&charges[2].body).unwrap();
    assert_eq!(body["order_id"], "o-1");
    assert_eq!(body["customer_id"], "c-1");
    assert_eq!(body["amount_cents"], order.total_cents);

    publish(
        &client,
        "orders.order.created",
        &[],
        &OrderCreated::new("o-2", "c-bad").to_bytes(),
    )
    .await;
    let letter = next_dead_letter(&mut dead, "the declined order", &host).await;
    letter.assert_about("orders.order.created", "payment", "permanent", 1, &host);
    assert!(
        letter.error.contains("card declined for customer c-bad"),
        "{}",
        letter.error
    );
}
