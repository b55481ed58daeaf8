//! Publishers and plugins are untrusted: neither may make the host's NATS
//! user act for them beyond what the plugin's manifest grants.

use async_nats::HeaderMap;
use evhost_tests::{
    Host, NatsServer, PluginDir, WAIT, connect, next_dead_letter, pending_message, subscribe,
};

/// A request to `noop` (which answers every request) whose reply subject is a
/// JetStream API call or a key-value key. Before the fix the host answered,
/// and so deleted the stream or wrote the key with its own rights.
#[tokio::test(flavor = "multi_thread")]
async fn a_reply_to_a_system_subject_is_refused_and_request_reply_still_works() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "PRECIOUS".into(),
        subjects: vec!["precious.>".into()],
        ..Default::default()
    })
    .await
    .expect("create the PRECIOUS stream");
    js.publish("precious.one", "keep me".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    // The stream a key-value bucket `secrets` lives in, made by hand as the
    // host does (nats-server 2.9 cannot take async-nats's create_key_value).
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "KV_secrets".into(),
        subjects: vec!["$KV.secrets.>".into()],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .expect("create the KV_secrets stream");

    let dir = PluginDir::new();
    dir.add_with_manifest("noop", "[delivery]\nmax_attempts = 1\n");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut dead = subscribe(&client, "dlq.bench.noop").await;

    for hostile in [
        "$JS.API.STREAM.DELETE.PRECIOUS",
        "$KV.secrets.api_key",
        "$SYS.REQ.SERVER.PING",
    ] {
        client
            .publish_with_reply_and_headers(
                "bench.noop",
                hostile.to_string(),
                HeaderMap::new(),
                "x".into(),
            )
            .await
            .expect("publish the hostile request");
        client.flush().await.expect("flush");
        let letter = next_dead_letter(&mut dead, &format!("the refusal of {hostile}"), &host).await;
        letter.assert_about("bench.noop", "noop", "invalid-output", 1, &host);
        assert!(
            letter.error.contains("system subject") && letter.error.contains(hostile),
            "the dead letter names the refused reply subject: {:?}",
            letter.error
        );
    }

    let mut stream = js
        .get_stream("PRECIOUS")
        .await
        .unwrap_or_else(|e| panic!("the stream is gone: {e}\n{}", host.log_report()));
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.state.messages, 1, "the stream keeps its message");
    let mut kv = js
        .get_stream("KV_secrets")
        .await
        .expect("KV_secrets stream");
    assert_eq!(
        kv.info().await.expect("kv info").state.messages,
        0,
        "no key was written through a reply"
    );

    // Ordinary request/reply (an `_INBOX.` reply subject) still works.
    let answer = tokio::time::timeout(WAIT, client.request("bench.noop", "ping".into()))
        .await
        .expect("the request was answered in time")
        .unwrap_or_else(|e| panic!("request failed: {e}\n{}", host.log_report()));
    assert!(
        answer.payload.is_empty(),
        "noop answers with an empty reply"
    );
    assert!(
        pending_message(&mut dead).is_none(),
        "the request was not dead-lettered"
    );
}

/// A plugin may not subscribe where system traffic flows: a manifest asking
/// for `$KV.>` (every key-value write), `_INBOX.>` or a bare `>` is rejected
/// in one line, and the other plugins keep serving.
#[tokio::test(flavor = "multi_thread")]
async fn system_and_unrooted_subscriptions_are_refused() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = PluginDir::new();
    dir.add("echo");
    for (name, subjects) in [
        ("kvspy", "$KV.>"),
        ("inboxspy", "_INBOX.>"),
        ("allspy", ">"),
    ] {
        dir.add_as(name, &evhost_tests::wasm("echo"));
        dir.write_manifest(name, &format!("subjects = [\"{subjects}\"]\n"));
    }
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    for (name, why) in [
        ("kvspy", "system subject"),
        ("inboxspy", "system subject"),
        ("allspy", "starts with a wildcard"),
    ] {
        let line = host
            .wait_for(&format!("{name} rejected"), WAIT, |l| {
                l.is("plugin rejected", Some(name))
            })
            .await;
        assert!(line.raw.contains(why), "{name}: {}", line.raw);
        assert_eq!(host.count_logs("plugin loaded", Some(name)), 0);
    }
    evhost_tests::echo_roundtrip(&client, &host, "still serving").await;
}

/// `Nats-*` headers steer JetStream (`Nats-Rollup: all` purges a stream) and
/// `Evhost-*` headers are the host's: an output carrying one is refused.
#[tokio::test(flavor = "multi_thread")]
async fn outputs_may_not_carry_nats_or_evhost_headers() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "OUT".into(),
        subjects: vec!["test.bigout.out".into()],
        allow_rollup: true,
        ..Default::default()
    })
    .await
    .expect("create OUT");
    for i in 0..3 {
        js.publish("test.bigout.out", format!("kept {i}").into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    let dir = PluginDir::new();
    dir.add_with_manifest("bigout", "[delivery]\nmax_attempts = 1\n");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.bigout").await;
    for header in [
        "Nats-Rollup=all",
        "Nats-Msg-Id=forged",
        "Evhost-Error-Kind=permanent",
    ] {
        let payload = format!("header:{header}");
        evhost_tests::publish(&client, "test.bigout", &[], payload.as_bytes()).await;
        let letter = next_dead_letter(&mut dead, &format!("the refusal of {header}"), &host).await;
        letter.assert_about("test.bigout", "bigout", "invalid-output", 1, &host);
        assert!(
            letter.error.contains("reserved"),
            "{header}: {}",
            letter.error
        );
    }
    let mut out = js.get_stream("OUT").await.expect("OUT");
    assert_eq!(
        out.info().await.expect("info").state.messages,
        3,
        "nothing was rolled up or added"
    );
}
