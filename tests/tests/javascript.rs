//! JavaScript handlers through the real host: `plugins/audit-js` (the order
//! flow's audit, in JavaScript) and the `echo-js` test plugin, built with
//! componentize-js (see `evhost_tests::javascript`), against a real
//! nats-server.
//!
//! The JavaScript audit runs beside the Rust one, on the same events, to
//! compare what they log; `echo-js` carries the outcomes audit never has
//! (transient, exhausted, permanent, undecodable, a crash) and the reload.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evhost_tests::javascript::javascript_wasm;
use evhost_tests::sdk_scenarios::{
    self, COMPILE_WAIT, Ending, SdkPlugin, start_compiling_host as start_host,
};
use evhost_tests::{
    Host, LogLine, NatsServer, OrderCreated, PluginDir, WAIT, connect, describe, eventually,
    evhost_with_timeout, header, next_dead_letter, next_message, pending_message, publish,
    subscribe,
};
use futures::StreamExt;
use serde_json::Value;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn json(msg: &async_nats::Message) -> Value {
    serde_json::from_slice(&msg.payload)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe(msg)))
}

/// A plugins folder with `echo-js` (version 1) and `manifest`.
fn echo_js(manifest: &str) -> PluginDir {
    let dir = PluginDir::new();
    dir.write_manifest("echo-js", manifest);
    dir.add_as("echo-js", &javascript_wasm("echo-js"));
    dir
}

/// The audit lines `plugin` has logged so far, in order.
fn audit_lines(host: &Host, plugin: &str) -> Vec<String> {
    host.find_logs(|l: &LogLine| {
        l.field_str("plugin").as_deref() == Some(plugin)
            && l.message().is_some_and(|m| m.starts_with("audit "))
    })
    .iter()
    .filter_map(|l| l.message().map(str::to_string))
    .collect()
}

/// The subjects `evhost check` prints for a plugin, sorted.
fn checked_subjects(wasm: &std::path::Path) -> (Vec<String>, String) {
    // A JavaScript component compiles for tens of seconds (more on a busy
    // machine) the first time.
    let out = evhost_tests::evhost_with_timeout(
        &["check", &wasm.to_string_lossy()],
        None,
        std::time::Duration::from_secs(180),
    );
    assert_eq!(out.code, Some(0), "evhost check failed:\n{out}");
    let text = format!("{}{}", out.stdout, out.stderr);
    let mut subjects: Vec<String> = ["orders.>", "payments.>", "inventory.>"]
        .iter()
        .filter(|s| text.contains(*s))
        .map(|s| s.to_string())
        .collect();
    subjects.sort();
    (subjects, text)
}

/// The Rust and the JavaScript audit, side by side on the same events, log
/// the same lines: the sample events of `examples/events/`, an order and
/// what the flow's payment and inventory publish for it, and payloads at the
/// edges of JSON (not UTF-8, a byte-order mark, no event_id, nesting past
/// serde_json's limit, a lone surrogate, a number out of range), which
/// serde_json refuses and so must the JavaScript audit.
#[tokio::test(flavor = "multi_thread")]
async fn javascript_audit_logs_what_the_rust_audit_logs() {
    let audit_js = javascript_wasm("audit-js");
    // The same subscriptions, and no wasi:http imported (built with `-d http
    // -d fetch-event`).
    let (js_subjects, js_check) = checked_subjects(&audit_js);
    let (rust_subjects, _) = checked_subjects(&evhost_tests::wasm("audit"));
    assert_eq!(js_subjects, rust_subjects, "evhost check:\n{js_check}");
    assert_eq!(js_subjects.len(), 3, "evhost check:\n{js_check}");
    assert!(
        !js_check.contains("wasi:http"),
        "the JavaScript audit must import no wasi:http:\n{js_check}"
    );

    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("payment")
        .add("inventory")
        .add("audit")
        .add_as("audit-js", &audit_js);
    let host = start_host(&dir, &nats.url()).await;
    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.>").await;
    let mut flow = subscribe(&client, "inventory.reservation.created").await;

    let events = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/events");
    let mut published: Vec<(String, Vec<u8>)> = Vec::new();
    for subject in [
        "payments.payment.completed",
        "payments.payment.failed",
        "inventory.reservation.created",
        "inventory.reservation.failed",
    ] {
        let payload = std::fs::read(events.join(format!("{subject}.json")))
            .unwrap_or_else(|e| panic!("read the example {subject}: {e}"));
        published.push((subject.to_string(), payload));
    }
    // The malformed sample order, where payment and inventory do not take it.
    let malformed = std::fs::read(events.join("orders.order.created.malformed.json"))
        .expect("read the malformed sample order");
    published.push(("orders.odd.event".to_string(), malformed));
    // An object with an event_id, holding `n` nested arrays.
    let deep = |n: usize| {
        format!(
            "{{\"event_id\":\"deep-{n}\",\"x\":{}{}}}",
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    for payload in [
        b"\xff\xfe{not json\x00\x80\xc3(".to_vec(),
        b"\xef\xbb\xbf{\"event_id\":\"after-a-bom\"}".to_vec(),
        br#"{"event_id":42}"#.to_vec(),
        br#"["event_id","e-in-a-list"]"#.to_vec(),
        br#"{"order_id":"no-event-id"}"#.to_vec(),
        br#"{"event_id":"dup-1","event_id":"dup-2"}"#.to_vec(),
        br#"{"event_id":"e-\ud83d\ude00 \u00e9\u0001"}"#.to_vec(),
        br#"{"event_id":"lone","x":"\ud800"}"#.to_vec(),
        br#"{"event_id":"huge","n":1e400}"#.to_vec(),
        br#"{"event_id":"tiny","n":1e-400}"#.to_vec(),
        deep(126).into_bytes(),
        deep(127).into_bytes(),
        Vec::new(),
    ] {
        published.push(("orders.odd.event".to_string(), payload));
    }
    // And the flow itself: payment and inventory answer a valid order, and
    // both audits see their outputs.
    let order = OrderCreated::new("ord-js-1", "cust-42");
    published.push(("orders.order.created".to_string(), order.to_bytes()));
    for (subject, payload) in &published {
        publish(&client, subject, &[("traceparent", TRACEPARENT)], payload).await;
    }
    // Inventory's reservation of the order (not the sample published above).
    loop {
        let msg = next_message(&mut flow, WAIT, "inventory's reservation", &host).await;
        if json(&msg)["causation_id"].as_str() == Some(order.event_id.as_str()) {
            break;
        }
    }
    // Every published event, plus payment's and inventory's outputs.
    let expected = published.len() + 2;
    for plugin in ["audit", "audit-js"] {
        eventually(
            &format!("{expected} audit lines from {plugin}"),
            WAIT,
            || (audit_lines(&host, plugin).len() >= expected).then_some(()),
            || host.log_report(),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut rust, mut js) = (audit_lines(&host, "audit"), audit_lines(&host, "audit-js"));
    assert_eq!(rust.len(), expected, "{}", host.log_report());
    rust.sort();
    js.sort();
    assert_eq!(
        js,
        rust,
        "the JavaScript audit logs what the Rust audit logs\n{}",
        host.log_report()
    );
    // Some lines spelled out, so the comparison is not of two empty sets.
    for line in [
        format!(
            "audit orders.order.created ({} bytes) event_id={}",
            order.to_bytes().len(),
            order.event_id
        ),
        "audit orders.odd.event (0 bytes)".to_string(),
        format!(
            "audit orders.odd.event ({} bytes) event_id=deep-126",
            deep(126).len()
        ),
        format!("audit orders.odd.event ({} bytes)", deep(127).len()),
    ] {
        assert!(js.contains(&line), "no {line:?} among {js:#?}");
    }
    assert!(
        js.iter().any(
            |l| l.starts_with("audit payments.payment.completed (") && l.contains(" event_id=")
        ),
        "{js:#?}"
    );
    if let Some(msg) = pending_message(&mut dead) {
        panic!(
            "audit never fails, and the order is valid: {}\n{}",
            describe(&msg),
            host.log_report()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn javascript_handler_retries_transient_failures_until_success() {
    let nats = NatsServer::start();
    let dir = echo_js(
        "[config]\nfail_attempts = 2\n\n[delivery]\nmax_attempts = 5\nbackoff = \"10ms\"\n",
    );
    let host = start_host(&dir, &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.>").await;
    let mut accepted = subscribe(&client, "test.jsorder.accepted").await;
    let order = OrderCreated::new("ord-js-3001", "cust-42");
    publish(
        &client,
        "test.jsorder",
        &[
            ("Nats-Msg-Id", "order-js-3001"),
            ("traceparent", TRACEPARENT),
        ],
        &order.to_bytes(),
    )
    .await;

    let msg = next_message(
        &mut accepted,
        WAIT,
        "the order accepted after two retries",
        &host,
    )
    .await;
    let event = json(&msg);
    assert_eq!(event["order_id"].as_str(), Some("ord-js-3001"));
    assert_eq!(event["amount_cents"].as_u64(), Some(order.total_cents));
    assert_eq!(
        event["causation_id"].as_str(),
        Some(order.event_id.as_str())
    );
    assert_eq!(event["attempt"].as_u64(), Some(3));
    assert_eq!(event["version"].as_str(), Some("1"));
    // The host's idempotency key, from the publisher's Nats-Msg-Id.
    assert_eq!(
        event["idempotency_key"].as_str(),
        Some("echo-js:order-js-3001"),
        "{}",
        describe(&msg)
    );
    assert_eq!(
        header(&msg, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(header(&msg, "traceparent").as_deref(), Some(TRACEPARENT));
    // Attempts 1 and 2 failed as transient, with the handler's reason.
    for attempt in 1..=2 {
        host.wait_for(&format!("the retry line of attempt {attempt}"), WAIT, |l| {
            l.field_str("plugin").as_deref() == Some("echo-js")
                && l.field_str("kind").as_deref() == Some("transient")
                && l.field_str("attempt").as_deref() == Some(&attempt.to_string())
                && l.field_str("error").as_deref()
                    == Some(&format!("order service unavailable (attempt {attempt})"))
        })
        .await;
    }
    // log.info, formatted, in the host's log.
    host.wait_for("the handler's own log line", WAIT, |l| {
        l.field_str("plugin").as_deref() == Some("echo-js")
            && l.message() == Some("accepted order ord-js-3001 on attempt 3")
    })
    .await;
    assert!(
        pending_message(&mut dead).is_none(),
        "{}",
        host.log_report()
    );
    assert!(
        pending_message(&mut accepted).is_none(),
        "the failed attempts must publish nothing\n{}",
        host.log_report()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn javascript_handler_exhausts_its_attempts() {
    let nats = NatsServer::start();
    let dir = echo_js(
        "[config]\nunavailable = true\n\n[delivery]\nmax_attempts = 3\nbackoff = \"10ms\"\n",
    );
    let host = start_host(&dir, &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.jsorder").await;
    let mut accepted = subscribe(&client, "test.jsorder.accepted").await;
    let order = OrderCreated::new("ord-js-4001", "cust-42");
    publish(
        &client,
        "test.jsorder",
        &[("x-custom", "kept")],
        &order.to_bytes(),
    )
    .await;

    let letter = next_dead_letter(&mut dead, "the dead letter after 3 attempts", &host).await;
    letter.assert_about("test.jsorder", "echo-js", "exhausted", 3, &host);
    assert_eq!(letter.message.payload.as_ref(), order.to_bytes());
    assert_eq!(header(&letter.message, "x-custom").as_deref(), Some("kept"));
    assert!(
        letter
            .error
            .contains("order service unavailable (attempt 3)"),
        "Evhost-Error carries the last reason: {:?}",
        letter.error
    );
    assert!(
        pending_message(&mut accepted).is_none(),
        "{}",
        host.log_report()
    );
}

/// Undecodable payloads (not JSON, a field of the wrong type, a negative
/// quantity its `t.u32` refuses, a missing field, nesting serde_json would
/// refuse) and a broken business rule are dead-lettered at once, byte for
/// byte, with their headers.
#[tokio::test(flavor = "multi_thread")]
async fn javascript_handler_dead_letters_permanent_failures_byte_for_byte() {
    let nats = NatsServer::start();
    let dir = echo_js("");
    let host = start_host(&dir, &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.jsorder").await;
    let mut accepted = subscribe(&client, "test.jsorder.accepted").await;

    let order_json = |id: &str| {
        serde_json::to_value(OrderCreated::new(id, "cust-42")).expect("an order as JSON")
    };
    let mut negative = order_json("ord-js-5003");
    negative["items"][0]["quantity"] = Value::from(-2);
    let mut wrong_type = order_json("ord-js-5004");
    wrong_type["total_cents"] = Value::from("6499");
    let mut missing = order_json("ord-js-5005");
    missing.as_object_mut().unwrap().remove("event_id");
    // serde_json refuses nesting past 127 levels: so must the SDK.
    let deep_text = serde_json::to_string(&order_json("ord-js-5006"))
        .unwrap()
        .replacen(
            '{',
            &format!("{{\"extra\":{}{},", "[".repeat(130), "]".repeat(130)),
            1,
        );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"\xff\xfe{not json\x00\x80\xc3(".to_vec(),
            "payload does not decode as OrderCreated: not JSON",
        ),
        (
            serde_json::to_vec(&negative).unwrap(),
            "payload does not decode as OrderCreated: invalid value: integer `-2`, expected u32 at items[0].quantity",
        ),
        (
            serde_json::to_vec(&wrong_type).unwrap(),
            "payload does not decode as OrderCreated: invalid type: string \"6499\", expected u64 at total_cents",
        ),
        (
            serde_json::to_vec(&missing).unwrap(),
            "payload does not decode as OrderCreated: missing field `event_id`",
        ),
        (
            deep_text.into_bytes(),
            "payload does not decode as OrderCreated: not JSON: recursion limit exceeded",
        ),
        (
            OrderCreated::new("ord-js-5001", "cust-42")
                .with_wrong_total()
                .to_bytes(),
            "does not match the items",
        ),
    ];
    for (payload, reason) in &cases {
        publish(
            &client,
            "test.jsorder",
            &[("x-custom", "kept"), ("traceparent", TRACEPARENT)],
            payload,
        )
        .await;
        let letter =
            next_dead_letter(&mut dead, &format!("the dead letter ({reason})"), &host).await;
        letter.assert_about("test.jsorder", "echo-js", "permanent", 1, &host);
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
        pending_message(&mut accepted).is_none(),
        "a rejected order must publish nothing\n{}",
        host.log_report()
    );

    // A valid order is still accepted: the payloads above were the cause.
    let fine = OrderCreated::new("ord-js-5007", "cust-42");
    publish(&client, "test.jsorder", &[], &fine.to_bytes()).await;
    let msg = next_message(&mut accepted, WAIT, "a valid order accepted", &host).await;
    assert_eq!(json(&msg)["order_id"].as_str(), Some("ord-js-5007"));
}

/// Sends `payload` to `test.jsecho` and returns the reply's `echo-version`.
async fn jsecho_roundtrip(client: &async_nats::Client, host: &Host, payload: &str) -> String {
    let mut out = subscribe(client, "test.jsecho.out").await;
    publish(client, "test.jsecho", &[], payload.as_bytes()).await;
    let msg = next_message(
        &mut out,
        WAIT,
        &format!("echo-js's reply to {payload:?}"),
        host,
    )
    .await;
    assert_eq!(msg.payload.as_ref(), payload.as_bytes());
    header(&msg, "echo-version")
        .unwrap_or_else(|| panic!("reply without echo-version: {}", describe(&msg)))
}

/// An exception no handler catches ends like a Rust panic: a trap, the dead
/// letter's `Evhost-Error` quoting the exception's class and message and
/// where it was thrown, the stack in the log, and the plugin serving the
/// next message (also through a promise).
#[tokio::test(flavor = "multi_thread")]
async fn uncaught_javascript_exception_is_a_trap_quoting_it() {
    let nats = NatsServer::start();
    let dir = echo_js("");
    let host = start_host(&dir, &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.jsecho").await;
    publish(&client, "test.jsecho", &[("x-custom", "kept")], b"crash").await;

    let letter = next_dead_letter(&mut dead, "echo-js's dead letter", &host).await;
    letter.assert_about("test.jsecho", "echo-js", "trap", 1, &host);
    assert_eq!(letter.message.payload.as_ref(), b"crash");
    assert_eq!(header(&letter.message, "x-custom").as_deref(), Some("kept"));
    assert!(
        letter
            .error
            .contains("DeliberateCrash: deliberate crash in echo-js v1"),
        "Evhost-Error must quote the exception: {:?}",
        letter.error
    );
    assert!(
        letter
            .error
            .contains("panicked at tests/plugins-js/echo-js/echo.js:"),
        "Evhost-Error must say where it was thrown: {:?}",
        letter.error
    );
    host.wait_for("the stack in the log", WAIT, |l| {
        l.field_str("plugin").as_deref() == Some("echo-js")
            && l.raw.contains("echo@tests/plugins-js/echo-js/echo.js:")
    })
    .await;

    assert_eq!(
        jsecho_roundtrip(&client, &host, "after the crash").await,
        "1"
    );
    assert_eq!(
        jsecho_roundtrip(&client, &host, "async, through a promise").await,
        "1"
    );
}

/// Replacing echo-js with its second version, and back, under a steady
/// stream: every message answered exactly once, by one version or the other.
#[tokio::test(flavor = "multi_thread")]
async fn javascript_reload_under_steady_stream_loses_and_duplicates_nothing() {
    const STREAM_MIN: usize = 500;
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    let (v1, v2) = (javascript_wasm("echo-js"), javascript_wasm("echo-js-v2"));
    dir.add_as("echo-js", &v1);
    let host = start_host(&dir, &nats.url()).await;
    let client = connect(&nats.url()).await;
    assert_eq!(jsecho_roundtrip(&client, &host, "before").await, "1");

    let mut out = subscribe(&client, "test.jsecho.out").await;
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
                    .publish("test.jsecho", format!("id-{sent:06}").into())
                    .await
                    .expect("publish to test.jsecho");
                sent += 1;
            }
            client.flush().await.expect("flush");
            sent
        })
    };

    // v1 -> v2 -> v1, each a plain copy over the file.
    for src in [&v2, &v1] {
        let before = host.count_logs("plugin reloaded", Some("echo-js"));
        dir.copy_over("echo-js", src);
        host.wait_for_log_count("plugin reloaded", Some("echo-js"), before + 1, COMPILE_WAIT)
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
    assert_eq!(jsecho_roundtrip(&client, &host, "after").await, "1");
}

/// The JavaScript test plugin, for the scenarios every SDK must pass.
fn echo_js_caller() -> SdkPlugin {
    SdkPlugin {
        name: "echo-js",
        wasm: javascript_wasm("echo-js"),
        tally: "test.jstally",
        fetch: "test.jsfetch",
        not_granted: "\"secrets\" is not granted",
        // fetch does not say why it failed: transient, retried.
        refused: Ending {
            kind: "exhausted",
            attempts: 2,
            says: "failed",
        },
        oversized: Ending {
            kind: "exhausted",
            attempts: 2,
            says: "failed reading the answer",
        },
    }
}

/// The JavaScript SDK's `Bucket` against a real bucket (`sdk_scenarios`).
#[tokio::test(flavor = "multi_thread")]
async fn javascript_handler_keeps_state_in_a_granted_bucket() {
    sdk_scenarios::keeps_state_in_a_granted_bucket(&echo_js_caller()).await;
}

/// A POST whose request fails before its body is sent (a granted
/// destination where nothing listens, or one the host refuses) is an error
/// the JavaScript handler catches, every time: the SDK's `TransientError`.
/// Before the host drained such a body (`request_body.rs`), StarlingMonkey
/// often met the failed body write and aborted the handler instead: a trap
/// ("event loop error, but no exception is pending"), on about a third of
/// the runs of `evhost invoke`, whose runtime sends the request on another
/// thread while the guest writes the body.
#[tokio::test(flavor = "multi_thread")]
async fn a_javascript_post_that_cannot_be_sent_is_an_error_the_handler_catches() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("echo-js.toml");
    std::fs::write(
        &manifest,
        format!("[capabilities]\nhttp = [\"http://127.0.0.1:{closed}\"]\n"),
    )
    .unwrap();
    let wasm = javascript_wasm("echo-js");
    let nowhere = format!("http://127.0.0.1:{closed}/charges");
    let refused = "http://127.0.0.1:1/charges".to_string();
    tokio::task::spawn_blocking(move || {
        for round in 0..8 {
            for url in [&nowhere, &refused] {
                // The first run compiles the component (tens of seconds on
                // a busy machine); the rest load it from the cache.
                let out = evhost_with_timeout(
                    &[
                        "invoke",
                        wasm.to_str().unwrap(),
                        "--manifest",
                        manifest.to_str().unwrap(),
                        "--subject",
                        "test.jsfetch",
                        "--payload",
                        url,
                    ],
                    None,
                    COMPILE_WAIT,
                );
                out.assert_no_panic();
                let json = out.json();
                assert_eq!(json["outcome"], "transient", "{url}, run {round}: {out}");
                let error = json["error"].as_str().unwrap_or_default();
                assert!(
                    error.contains(&format!("HTTP POST {url} failed")),
                    "{url}, run {round}: {out}"
                );
            }
        }
    })
    .await
    .unwrap();
}

/// The JavaScript SDK's `http` (over `fetch`, in a component built with
/// wasi:http) against real servers (`sdk_scenarios`).
#[tokio::test(flavor = "multi_thread")]
async fn javascript_fetch_reaches_what_the_manifest_grants_and_nothing_else() {
    sdk_scenarios::reaches_what_the_manifest_grants_and_nothing_else(&echo_js_caller()).await;
}
