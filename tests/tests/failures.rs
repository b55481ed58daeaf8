//! Handlers that fail, trap, spin, hoard memory or return forbidden outputs:
//! each becomes the right dead letter, publishes nothing, and leaves the rest
//! of the host serving.

use evhost_tests::{
    Host, NatsServer, PluginDir, WAIT, connect, describe, echo_roundtrip, header, next_dead_letter,
    next_message, pending_message, publish, subscribe,
};

#[tokio::test(flavor = "multi_thread")]
async fn flaky_handler_succeeds_on_its_third_attempt() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "flaky",
        "[config]\nfail_attempts = 2\n\n[delivery]\nmax_attempts = 5\nbackoff = \"10ms\"\n",
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.>").await;
    let mut out = subscribe(&client, "test.flaky.out").await;
    publish(&client, "test.flaky", &[], b"try me").await;

    let msg = next_message(&mut out, WAIT, "flaky's output", &host).await;
    assert_eq!(
        header(&msg, "attempt").as_deref(),
        Some("3"),
        "the success came on the third attempt: {}\n{}",
        describe(&msg),
        host.log_report()
    );
    assert_eq!(msg.payload.as_ref(), b"try me");
    assert!(
        pending_message(&mut out).is_none(),
        "failed attempts must publish nothing\n{}",
        host.log_report()
    );
    if let Some(msg) = pending_message(&mut dead) {
        panic!("dead-lettered: {}\n{}", describe(&msg), host.log_report());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_failures_are_exhausted_after_max_attempts() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "flaky",
        "[config]\nalways = true\n\n[delivery]\nmax_attempts = 3\nbackoff = \"10ms\"\n",
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.flaky").await;
    let mut out = subscribe(&client, "test.flaky.out").await;
    publish(&client, "test.flaky", &[("x-trace", "abc")], b"never works").await;

    let letter = next_dead_letter(&mut dead, "flaky's dead letter", &host).await;
    letter.assert_about("test.flaky", "flaky", "exhausted", 3, &host);
    assert_eq!(letter.message.payload.as_ref(), b"never works");
    assert_eq!(header(&letter.message, "x-trace").as_deref(), Some("abc"));
    assert!(
        letter.error.contains("always failing"),
        "Evhost-Error carries the handler's reason: {:?}",
        letter.error
    );
    assert!(pending_message(&mut out).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn panic_is_a_trap_and_the_host_keeps_serving() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("panicker").add("echo");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.panic").await;
    publish(&client, "test.panic", &[], b"boom").await;

    let letter = next_dead_letter(&mut dead, "panicker's dead letter", &host).await;
    letter.assert_about("test.panic", "panicker", "trap", 1, &host);
    assert_eq!(letter.message.payload.as_ref(), b"boom");

    // The panic message went to the guest's stderr, which the host logs
    // tagged with the plugin.
    host.wait_for("panicker's panic message in the log", WAIT, |l| {
        l.raw.contains("deliberate panic") && l.field_str("plugin").as_deref() == Some("panicker")
    })
    .await;

    assert_eq!(echo_roundtrip(&client, &host, "after the panic").await, "1");
    // The same plugin traps again rather than being wedged.
    publish(&client, "test.panic", &[], b"boom again").await;
    let letter = next_dead_letter(&mut dead, "panicker's second dead letter", &host).await;
    assert_eq!(letter.kind, "trap");
    assert_eq!(letter.message.payload.as_ref(), b"boom again");
}

#[tokio::test(flavor = "multi_thread")]
async fn endless_loop_times_out_and_the_host_keeps_serving() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "spinner",
        "[limits]\ntimeout_ms = 200\n\n[delivery]\nmax_attempts = 2\nbackoff = \"10ms\"\n",
    )
    .add("echo");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.spin").await;
    publish(&client, "test.spin", &[], b"spin").await;

    let letter = next_dead_letter(&mut dead, "spinner's dead letter", &host).await;
    letter.assert_about("test.spin", "spinner", "timeout", 2, &host);
    assert_eq!(letter.message.payload.as_ref(), b"spin");
    assert_eq!(echo_roundtrip(&client, &host, "after the spin").await, "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_cap_is_a_trap_and_the_host_keeps_serving() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add_with_manifest("membomb", "[limits]\nmemory_mb = 16\n")
        .add("echo");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.membomb").await;
    publish(&client, "test.membomb", &[], b"eat").await;

    let letter = next_dead_letter(&mut dead, "membomb's dead letter", &host).await;
    letter.assert_about("test.membomb", "membomb", "trap", 1, &host);
    assert!(
        letter.error.to_lowercase().contains("memory"),
        "Evhost-Error should say memory ran out: {:?}",
        letter.error
    );
    assert_eq!(echo_roundtrip(&client, &host, "after the bomb").await, "1");
}

/// Publishes `payload` to `test.bigout` and expects an `invalid-output` dead
/// letter, with nothing published on `out`.
async fn expect_invalid_output(
    client: &async_nats::Client,
    host: &Host,
    dead: &mut async_nats::Subscriber,
    out: &mut async_nats::Subscriber,
    payload: &[u8],
) {
    publish(client, "test.bigout", &[], payload).await;
    let what = format!(
        "the invalid-output dead letter for {:?}",
        String::from_utf8_lossy(payload)
    );
    let letter = next_dead_letter(dead, &what, host).await;
    letter.assert_about("test.bigout", "bigout", "invalid-output", 1, host);
    assert_eq!(letter.message.payload.as_ref(), payload);
    // The host publishes on one connection, in order: an output of this
    // attempt would have arrived before its dead letter.
    if let Some(msg) = pending_message(out) {
        panic!(
            "an output of an invalid attempt was published: {}\n{}",
            describe(&msg),
            host.log_report()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_outputs_publish_nothing() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("bigout").add("echo");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.bigout").await;
    let mut out = subscribe(&client, "test.bigout.>").await;
    // 10 000 outputs against the default max_outputs of 100.
    expect_invalid_output(&client, &host, &mut dead, &mut out, b"many").await;
    assert_eq!(echo_roundtrip(&client, &host, "after bigout").await, "1");
    assert!(pending_message(&mut out).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn output_limits_from_the_manifest_hold_and_valid_outputs_pass() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "bigout",
        "[config]\ncount = 3\nsize = 10\n\n[limits]\nmax_outputs = 3\nmax_output_bytes = 30\n",
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.bigout").await;
    let mut out = subscribe(&client, "test.bigout.>").await;

    // Within both limits exactly: all three are published.
    publish(&client, "test.bigout", &[], b"fits").await;
    for i in 0..3 {
        let msg = next_message(&mut out, WAIT, &format!("bigout output #{i}"), &host).await;
        assert_eq!(msg.subject.as_str(), "test.bigout.out");
        assert_eq!(msg.payload.len(), 10);
    }

    // One byte over max_output_bytes.
    dir.write_manifest(
        "bigout",
        "[config]\ncount = 3\nsize = 11\n\n[limits]\nmax_outputs = 3\nmax_output_bytes = 30\n",
    );
    host.wait_for_log("plugin reloaded", Some("bigout"), WAIT)
        .await;
    expect_invalid_output(&client, &host, &mut dead, &mut out, b"too big").await;

    // One output over max_outputs.
    dir.write_manifest(
        "bigout",
        "[config]\ncount = 4\nsize = 1\n\n[limits]\nmax_outputs = 3\nmax_output_bytes = 30\n",
    );
    host.wait_for_log_count("plugin reloaded", Some("bigout"), 2, WAIT)
        .await;
    expect_invalid_output(&client, &host, &mut dead, &mut out, b"too many").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forbidden_subjects_are_invalid_outputs() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("bigout");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.bigout").await;
    let mut out = subscribe(&client, "test.bigout.>").await;
    let mut inbox = subscribe(&client, "_INBOX.>").await;

    for payload in ["system", "sys", "inbox", "wildcard"] {
        expect_invalid_output(&client, &host, &mut dead, &mut out, payload.as_bytes()).await;
    }
    assert!(
        pending_message(&mut inbox).is_none(),
        "a foreign _INBOX subject was published to\n{}",
        host.log_report()
    );
    drop(inbox);

    // The input's own reply-to is the one inbox a handler may answer.
    let reply = tokio::time::timeout(WAIT, client.request("test.bigout", "reply".into()))
        .await
        .unwrap_or_else(|_| panic!("no reply within {WAIT:?}\n{}", host.log_report()))
        .unwrap_or_else(|e| panic!("request failed: {e}\n{}", host.log_report()));
    assert_eq!(reply.payload.as_ref(), b"bigout");
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_allow_list_is_enforced() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "bigout",
        "[config]\ncount = 1\nsubject = \"test.bigout.out\"\n\n[publish]\nallow = [\"test.bigout.allowed.>\"]\n",
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.bigout").await;
    let mut out = subscribe(&client, "test.bigout.>").await;
    expect_invalid_output(&client, &host, &mut dead, &mut out, b"not allowed").await;

    dir.write_manifest(
        "bigout",
        "[config]\ncount = 1\nsubject = \"test.bigout.allowed.one\"\n\n[publish]\nallow = [\"test.bigout.allowed.>\"]\n",
    );
    host.wait_for_log("plugin reloaded", Some("bigout"), WAIT)
        .await;
    publish(&client, "test.bigout", &[], b"allowed").await;
    let msg = next_message(&mut out, WAIT, "the allowed output", &host).await;
    assert_eq!(msg.subject.as_str(), "test.bigout.allowed.one");
    if let Some(msg) = pending_message(&mut dead) {
        panic!("dead-lettered: {}\n{}", describe(&msg), host.log_report());
    }
}
