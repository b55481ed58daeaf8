//! The example order flow: payment, inventory and audit handling
//! `orders.order.created`, and the dead letters of orders that cannot succeed.

use evhost_tests::{
    Host, HostOptions, NatsServer, OrderCreated, PluginDir, WAIT, connect, describe, header,
    next_dead_letter, next_message, pending_message, publish, subscribe,
};
use serde_json::Value;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn json(msg: &async_nats::Message) -> Value {
    serde_json::from_slice(&msg.payload)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe(msg)))
}

/// Checks that `event` answers `order`: same order id, caused by its event,
/// an id of its own, and the trace carried over.
fn assert_caused_by(msg: &async_nats::Message, order: &OrderCreated, host: &Host) {
    let event = json(msg);
    let context = || format!("{}\n{}", describe(msg), host.log_report());
    assert_eq!(
        event["order_id"].as_str(),
        Some(order.order_id.as_str()),
        "order_id; {}",
        context()
    );
    assert_eq!(
        event["causation_id"].as_str(),
        Some(order.event_id.as_str()),
        "causation_id must be the order event's id; {}",
        context()
    );
    let event_id = event["event_id"].as_str().unwrap_or_default();
    assert!(
        !event_id.is_empty() && event_id != order.event_id,
        "event_id must be new and non-empty; {}",
        context()
    );
    assert_eq!(
        header(msg, "traceparent").as_deref(),
        Some(TRACEPARENT),
        "traceparent must be carried over; {}",
        context()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn order_created_yields_payment_and_reservation_with_trace() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("payment").add("inventory").add("audit");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    assert_eq!(
        host.wait_for_log("host ready", None, WAIT)
            .await
            .field_str("plugins")
            .as_deref(),
        Some("3"),
        "host ready counts the plugins\n{}",
        host.log_report()
    );

    let client = connect(&nats.url()).await;
    let mut payments = subscribe(&client, "payments.payment.completed").await;
    let mut reservations = subscribe(&client, "inventory.reservation.created").await;
    let mut dead = subscribe(&client, "dlq.>").await;

    let order = OrderCreated::new("ord-1001", "cust-42");
    publish(
        &client,
        "orders.order.created",
        &[("traceparent", TRACEPARENT)],
        &order.to_bytes(),
    )
    .await;

    let payment = next_message(&mut payments, WAIT, "payments.payment.completed", &host).await;
    assert_caused_by(&payment, &order, &host);
    let reservation = next_message(
        &mut reservations,
        WAIT,
        "inventory.reservation.created",
        &host,
    )
    .await;
    assert_caused_by(&reservation, &order, &host);

    assert!(
        pending_message(&mut payments).is_none(),
        "more than one payment for one order\n{}",
        host.log_report()
    );
    // Audit saw all three events (its log lines are tagged with the plugin).
    for subject in [
        "orders.order.created",
        "payments.payment.completed",
        "inventory.reservation.created",
    ] {
        host.wait_for(&format!("audit's log line for {subject}"), WAIT, |l| {
            l.field_str("plugin").as_deref() == Some("audit")
                && l.message()
                    .is_some_and(|m| m.starts_with(&format!("audit {subject} ")))
        })
        .await;
    }
    host.wait_for("audit's log line naming the order's event_id", WAIT, |l| {
        l.field_str("plugin").as_deref() == Some("audit")
            && l.message().is_some_and(|m| {
                m.starts_with("audit orders.order.created ")
                    && m.ends_with(&format!("event_id={}", order.event_id))
            })
    })
    .await;

    if let Some(msg) = pending_message(&mut dead) {
        panic!(
            "a valid order was dead-lettered: {}\n{}",
            describe(&msg),
            host.log_report()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_payload_is_dead_lettered_as_permanent_byte_for_byte() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("payment");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.orders.order.created").await;
    let mut payments = subscribe(&client, "payments.>").await;

    let payload: &[u8] = b"\xff\xfe{not json\x00\x80\xc3(";
    publish(
        &client,
        "orders.order.created",
        &[("x-custom", "kept"), ("traceparent", TRACEPARENT)],
        payload,
    )
    .await;

    let letter = next_dead_letter(&mut dead, "the dead letter of a malformed order", &host).await;
    letter.assert_about("orders.order.created", "payment", "permanent", 1, &host);
    assert_eq!(
        letter.message.payload.as_ref(),
        payload,
        "the dead letter's payload must be byte-identical"
    );
    assert_eq!(
        header(&letter.message, "x-custom").as_deref(),
        Some("kept"),
        "original headers are kept: {}",
        describe(&letter.message)
    );
    assert_eq!(
        header(&letter.message, "traceparent").as_deref(),
        Some(TRACEPARENT),
        "original headers are kept: {}",
        describe(&letter.message)
    );
    assert!(
        pending_message(&mut payments).is_none(),
        "a failed message must publish nothing\n{}",
        host.log_report()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_business_rules_are_permanent() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "payment",
        "[config]\ndecline_customers = \"cust-stolen-card, cust-blocked\"\n",
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.orders.order.created").await;
    let mut payments = subscribe(&client, "payments.>").await;

    // The total is not the sum of the items.
    let mismatch = OrderCreated::new("ord-2001", "cust-42").with_wrong_total();
    publish(&client, "orders.order.created", &[], &mismatch.to_bytes()).await;
    let letter = next_dead_letter(&mut dead, "the dead letter of a total mismatch", &host).await;
    letter.assert_about("orders.order.created", "payment", "permanent", 1, &host);
    assert_eq!(letter.message.payload.as_ref(), mismatch.to_bytes());

    // The card is declined.
    let declined = OrderCreated::new("ord-2002", "cust-blocked");
    publish(&client, "orders.order.created", &[], &declined.to_bytes()).await;
    let letter = next_dead_letter(&mut dead, "the dead letter of a declined card", &host).await;
    letter.assert_about("orders.order.created", "payment", "permanent", 1, &host);
    assert_eq!(letter.message.payload.as_ref(), declined.to_bytes());

    assert!(
        pending_message(&mut payments).is_none(),
        "a rejected order must publish no payment event\n{}",
        host.log_report()
    );

    // A customer not on the list still pays: the rules above were the cause.
    let fine = OrderCreated::new("ord-2003", "cust-42");
    publish(&client, "orders.order.created", &[], &fine.to_bytes()).await;
    let payment = next_message(&mut payments, WAIT, "payment of a valid order", &host).await;
    assert_eq!(payment.subject.as_str(), "payments.payment.completed");
    assert_eq!(json(&payment)["order_id"].as_str(), Some("ord-2003"));
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_failures_are_retried_until_success() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "payment",
        "[config]\nfail_attempts = 2\n\n[delivery]\nmax_attempts = 5\nbackoff = \"10ms\"\n",
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.>").await;
    let mut payments = subscribe(&client, "payments.payment.completed").await;

    let order = OrderCreated::new("ord-3001", "cust-42");
    publish(
        &client,
        "orders.order.created",
        &[("traceparent", TRACEPARENT)],
        &order.to_bytes(),
    )
    .await;
    let payment = next_message(&mut payments, WAIT, "payment after two retries", &host).await;
    assert_caused_by(&payment, &order, &host);
    if let Some(msg) = pending_message(&mut dead) {
        panic!(
            "a message that succeeded on retry was dead-lettered: {}\n{}",
            describe(&msg),
            host.log_report()
        );
    }
    assert!(
        pending_message(&mut payments).is_none(),
        "the failed attempts must not publish anything\n{}",
        host.log_report()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unavailable_payment_service_is_exhausted() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "payment",
        "[config]\nunavailable = true\n\n[delivery]\nmax_attempts = 3\nbackoff = \"10ms\"\n",
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.orders.order.created").await;
    let order = OrderCreated::new("ord-4001", "cust-42");
    publish(&client, "orders.order.created", &[], &order.to_bytes()).await;
    let letter = next_dead_letter(&mut dead, "the dead letter after 3 attempts", &host).await;
    letter.assert_about("orders.order.created", "payment", "exhausted", 3, &host);
    assert_eq!(letter.message.payload.as_ref(), order.to_bytes());
}

/// The SDK asks the host once per instance whether a level is recorded and
/// skips the lines nobody reads: payment's per-charge `debug!` line is in the
/// log when the host records the guest's debug lines, and absent otherwise.
#[tokio::test(flavor = "multi_thread")]
async fn guest_debug_lines_follow_the_host_log_level() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    for (filter, recorded) in [("info,evhost::guest=debug", true), ("info", false)] {
        let dir = PluginDir::new();
        dir.add("payment");
        let host = Host::start_with(
            &dir.path(),
            &nats.url(),
            HostOptions {
                log_level: filter.to_string(),
                ..HostOptions::default()
            },
        );
        host.wait_for_log("host ready", None, WAIT).await;
        let mut payments = subscribe(&client, "payments.payment.completed").await;
        // Two orders: the answer the SDK remembers after the first must hold
        // for the second.
        for n in 1..=2 {
            let order = OrderCreated::new(&format!("ord-60{n}"), "cust-42");
            publish(&client, "orders.order.created", &[], &order.to_bytes()).await;
            next_message(&mut payments, WAIT, "payment", &host).await;
        }
        // The log is read from the host's stderr on a thread of its own and
        // can lag behind the outputs on NATS: stop the host, which reads its
        // log to the end, before counting the lines in it.
        host.sigterm();
        assert!(
            host.wait_exit(WAIT).await.success(),
            "{}",
            host.log_report()
        );
        let charged = host.find_logs(|l| {
            l.field_str("plugin").as_deref() == Some("payment")
                && l.message().is_some_and(|m| m.starts_with("charged "))
        });
        if recorded {
            assert_eq!(
                charged.len(),
                2,
                "with EVHOST_LOG={filter} each charge is logged at debug\n{}",
                host.log_report()
            );
            assert_eq!(charged[0].level(), Some("DEBUG"), "{}", charged[0].raw);
        } else {
            assert!(
                charged.is_empty(),
                "with EVHOST_LOG={filter} no debug line is recorded\n{}",
                host.log_report()
            );
        }
    }
}

/// The SDK remembers `[config]` values per instance; a changed manifest loads
/// new instances, so the new value is what the handler reads after a reload.
#[tokio::test(flavor = "multi_thread")]
async fn a_changed_config_value_reaches_the_handler_after_reload() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add_with_manifest("payment", "[config]\nversion = \"v1\"\n");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let client = connect(&nats.url()).await;
    let mut payments = subscribe(&client, "payments.payment.completed").await;

    let order = OrderCreated::new("ord-7001", "cust-42");
    publish(&client, "orders.order.created", &[], &order.to_bytes()).await;
    let first = next_message(&mut payments, WAIT, "payment from v1", &host).await;
    assert_eq!(json(&first)["handler_version"].as_str(), Some("v1"));

    dir.write_manifest("payment", "[config]\nversion = \"v2\"\n");
    host.wait_for_log("plugin reloaded", Some("payment"), WAIT)
        .await;
    let order = OrderCreated::new("ord-7002", "cust-42");
    publish(&client, "orders.order.created", &[], &order.to_bytes()).await;
    let second = next_message(&mut payments, WAIT, "payment after the reload", &host).await;
    assert_eq!(
        json(&second)["handler_version"].as_str(),
        Some("v2"),
        "the reloaded manifest's value is read, not a remembered one\n{}",
        host.log_report()
    );
}
