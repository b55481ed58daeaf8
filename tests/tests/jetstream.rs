//! JetStream delivery, end to end: nothing lost, every effect once, many
//! hosts. Each test feeds a stream (`IN`) and captures the plugin's outputs
//! in another (`OUT`), then checks that every input was handled and that no
//! output was stored twice.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, consumer, stream};
use evhost_tests::*;
use futures::StreamExt;

/// The echo plugin on JetStream: `IN` captures `test.echo`, its replies go to
/// `test.echo.out`, captured by `OUT` (created by the test).
fn echo_manifest(extra_jetstream: &str, config: &str) -> String {
    format!(
        "[config]\n{config}\n[limits]\nconcurrency = 8\n[jetstream]\nstream = \"IN\"\n\
         create_stream = true\nstream_subjects = [\"test.echo\"]\nack_wait = \"2s\"\n{extra_jetstream}\n"
    )
}

async fn out_stream(js: &jetstream::Context, subject: &str) {
    js.get_or_create_stream(stream::Config {
        name: "OUT".into(),
        subjects: vec![subject.into()],
        ..Default::default()
    })
    .await
    .expect("create the OUT stream");
}

async fn in_stream(js: &jetstream::Context, subject: &str) {
    js.get_or_create_stream(stream::Config {
        name: "IN".into(),
        subjects: vec![subject.into()],
        ..Default::default()
    })
    .await
    .expect("create the IN stream");
}

/// Publishes `ids` to `subject` through JetStream, waiting for each ack.
async fn publish_ids(
    js: &jetstream::Context,
    subject: &str,
    ids: impl IntoIterator<Item = String>,
) {
    for id in ids {
        js.publish(subject.to_string(), id.into_bytes().into())
            .await
            .expect("publish")
            .await
            .expect("publish ack");
    }
}

/// Every payload stored in stream `name`, in order.
async fn stored(js: &jetstream::Context, name: &str) -> Vec<String> {
    let stream = js.get_stream(name).await.expect("get stream");
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("create a reading consumer");
    let mut payloads = Vec::new();
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_millis(300))
            .messages()
            .await
            .expect("fetch");
        let before = payloads.len();
        while let Some(msg) = batch.next().await {
            let msg = msg.expect("message");
            payloads.push(String::from_utf8_lossy(&msg.payload).to_string());
        }
        if payloads.len() == before {
            return payloads;
        }
    }
}

/// Waits until `OUT` holds an output for every id, then asserts that none is
/// there twice.
async fn assert_each_once(js: &jetstream::Context, ids: &[String], context: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let outputs = stored(js, "OUT").await;
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for o in &outputs {
            *counts.entry(o.as_str()).or_default() += 1;
        }
        let missing: Vec<&String> = ids
            .iter()
            .filter(|id| !counts.contains_key(id.as_str()))
            .collect();
        if missing.is_empty() {
            let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
            assert!(
                doubled.is_empty(),
                "outputs stored twice: {doubled:?}\n{}",
                context()
            );
            assert_eq!(
                outputs.len(),
                ids.len(),
                "unexpected outputs\n{}",
                context()
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} inputs never produced an output (first: {:?})\n{}",
            missing.len(),
            ids.len(),
            missing.first(),
            context()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A server with the `IN` (`test.echo`) and `OUT` (`test.echo.out`) streams,
/// a client, and an empty plugin folder.
async fn echo_setup() -> (
    NatsServer,
    async_nats::Client,
    jetstream::Context,
    PluginDir,
) {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let js = jetstream::new(client.clone());
    in_stream(&js, "test.echo").await;
    out_stream(&js, "test.echo.out").await;
    (nats, client, js, PluginDir::new())
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

/// Guest log lines saying echo started a message (echo logs one per call
/// when `sleep_ms` is set).
fn echo_calls(host: &Host) -> usize {
    host.find_logs(|l| l.message().is_some_and(|m| m.starts_with("echo: sleeping")))
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_stream_then_restart_loses_nothing_and_doubles_nothing() {
    let (nats, _client, js, dir) = echo_setup().await;
    dir.add_with_manifest("echo", &echo_manifest("", "sleep_ms = 5"));

    let inputs = ids("k", 400);
    publish_ids(&js, "test.echo", inputs.clone()).await;
    let first = Host::start_ready(&dir.path(), &nats.url()).await;
    eventually(
        "some outputs before the kill",
        WAIT,
        || (echo_calls(&first) >= 60).then_some(()),
        || first.log_report(),
    )
    .await;
    first.sigkill();
    first.wait_exit(WAIT).await;

    let second = Host::start_ready(&dir.path(), &nats.url()).await;
    assert_each_once(&js, &inputs, || {
        format!("{}\n{}", first.log_report(), second.log_report())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_server_restart_mid_stream_loses_nothing_and_doubles_nothing() {
    let (mut nats, client, js, dir) = echo_setup().await;
    dir.add_with_manifest("echo", &echo_manifest("", "sleep_ms = 2"));
    let host = Host::start_ready(&dir.path(), &nats.url()).await;

    let before = ids("before", 150);
    publish_ids(&js, "test.echo", before.clone()).await;
    eventually(
        "some outputs before the restart",
        WAIT,
        || (echo_calls(&host) >= 30).then_some(()),
        || host.log_report(),
    )
    .await;
    drop(js);
    drop(client);
    nats.restart();

    let client = connect(&nats.url()).await;
    let js = jetstream::new(client.clone());
    let after = ids("after", 150);
    publish_ids(&js, "test.echo", after.clone()).await;
    let all: Vec<String> = before.into_iter().chain(after).collect();
    assert_each_once(&js, &all, || host.log_report()).await;
    assert!(
        host.try_exit_status().is_none(),
        "the host died with the server\n{}",
        host.log_report()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn three_hosts_share_one_consumer_and_split_the_work() {
    let (nats, _client, js, dir) = echo_setup().await;
    dir.add_with_manifest("echo", &echo_manifest("", "sleep_ms = 5"));
    let hosts = [
        Host::start_ready(&dir.path(), &nats.url()).await,
        Host::start_ready(&dir.path(), &nats.url()).await,
        Host::start_ready(&dir.path(), &nats.url()).await,
    ];

    let inputs = ids("s", 600);
    publish_ids(&js, "test.echo", inputs.clone()).await;
    let report = || {
        hosts
            .iter()
            .map(Host::log_report)
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    assert_each_once(&js, &inputs, report).await;
    let calls: Vec<usize> = hosts.iter().map(echo_calls).collect();
    assert_eq!(
        calls.iter().sum::<usize>(),
        inputs.len(),
        "each message handled exactly once: {calls:?}"
    );
    assert!(
        calls.iter().all(|c| *c > 0),
        "every host took a share of the work: {calls:?}"
    );
}

/// Milliseconds since the epoch of a JSON log line's `timestamp`.
fn log_time(line: &LogLine) -> SystemTime {
    let stamp = line
        .json
        .as_ref()
        .and_then(|j| j.get("timestamp"))
        .and_then(|t| t.as_str())
        .expect("timestamp");
    humantime::parse_rfc3339_weak(stamp.trim_end_matches('Z')).expect("RFC 3339 timestamp")
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_failures_are_naked_with_the_configured_backoff() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let js = jetstream::new(client.clone());
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "flaky",
        "[config]\nfail_attempts = 2\n[jetstream]\nstream = \"IN\"\ncreate_stream = true\n\
         stream_subjects = [\"test.flaky\"]\n[delivery]\nbackoff = [\"400ms\", \"1200ms\"]\nmax_attempts = 5\n",
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut out = subscribe(&client, "test.flaky.out").await;
    js.publish("test.flaky", "once".into())
        .await
        .expect("publish")
        .await
        .expect("ack");

    let reply = next_message(&mut out, WAIT, "the flaky reply", &host).await;
    assert_eq!(
        header(&reply, "attempt").as_deref(),
        Some("3"),
        "succeeds on the third delivery"
    );
    let naks = host.find_logs(|l| l.message() == Some("attempt failed; NAK with delay"));
    assert_eq!(naks.len(), 2, "two NAKs\n{}", host.log_report());
    // The second failure came at least the first delay (less jitter) after the first.
    let gap = log_time(&naks[1])
        .duration_since(log_time(&naks[0]))
        .expect("ordered");
    assert!(
        gap >= Duration::from_millis(400 * 8 / 10 - 50),
        "first backoff too short: {gap:?}"
    );
    assert!(
        gap < Duration::from_millis(400 * 12 / 10 + 1500),
        "first backoff far too long: {gap:?}"
    );
    let delays: Vec<String> = naks
        .iter()
        .filter_map(|l| l.field_str("retry_in_ms"))
        .collect();
    let delays: Vec<u64> = delays
        .iter()
        .map(|d| d.parse().expect("retry_in_ms"))
        .collect();
    assert!((320..=480).contains(&delays[0]), "first delay {delays:?}");
    assert!((960..=1440).contains(&delays[1]), "second delay {delays:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_attempts_dead_letters_through_a_stream_then_terms() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let js = jetstream::new(client.clone());
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "flaky",
        "[config]\nalways = \"true\"\n[jetstream]\nstream = \"IN\"\ncreate_stream = true\n\
         stream_subjects = [\"test.flaky\"]\n[delivery]\nbackoff = \"20ms\"\nmax_attempts = 3\n\
         dead_letter_stream = \"DLQ\"\ncreate_dead_letter_stream = true\n",
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut dlq = subscribe(&client, "dlq.>").await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("x-tag", "keep-me");
    js.publish_with_headers("test.flaky", headers, "doomed".into())
        .await
        .expect("publish")
        .await
        .expect("ack");

    let letter = DeadLetter::parse(next_message(&mut dlq, WAIT, "the dead letter", &host).await);
    letter.assert_about("test.flaky", "flaky", "exhausted", 3, &host);
    assert_eq!(letter.message.payload.as_ref(), b"doomed");
    assert_eq!(header(&letter.message, "x-tag").as_deref(), Some("keep-me"));
    assert_eq!(
        header(&letter.message, "Evhost-Stream").as_deref(),
        Some("IN")
    );
    assert_eq!(
        header(&letter.message, "Evhost-Stream-Seq").as_deref(),
        Some("1")
    );
    assert_eq!(
        stored(&js, "DLQ").await,
        vec!["doomed".to_string()],
        "the dead letter is in its stream"
    );

    // TERMed: the consumer has nothing pending or awaiting an ack.
    let mut consumer = consumer_of(&js, "IN", "test.flaky").await;
    let info = eventually_info(&mut consumer, |i| {
        i.num_ack_pending == 0 && i.num_pending == 0
    })
    .await;
    assert_eq!(info.num_redelivered, 0, "not redelivered after TERM");
}

async fn eventually_info(
    consumer: &mut consumer::PullConsumer,
    done: impl Fn(&consumer::Info) -> bool,
) -> consumer::Info {
    let deadline = Instant::now() + WAIT;
    loop {
        let info = consumer.info().await.expect("consumer info").clone();
        if done(&info) || Instant::now() > deadline {
            assert!(done(&info), "consumer never settled: {info:?}");
            return info;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dedup_by_event_id_survives_a_host_restart() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let js = jetstream::new(client.clone());
    in_stream(&js, "test.echo").await;
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "echo",
        &echo_manifest(
            "dedup = \"json:/event_id\"\ndedup_ttl = \"1h\"",
            "sleep_ms = 1",
        ),
    );
    let mut out = subscribe(&client, "test.echo.out").await;

    let first = Host::start_ready(&dir.path(), &nats.url()).await;
    js.publish("test.echo", r#"{"event_id":"e-42"}"#.into())
        .await
        .unwrap()
        .await
        .unwrap();
    next_message(&mut out, WAIT, "the first reply", &first).await;
    first.sigterm();
    assert!(first.wait_exit(WAIT).await.success());

    let second = Host::start_ready(&dir.path(), &nats.url()).await;
    // The same event again (a new stream message), then a different one.
    js.publish("test.echo", r#"{"event_id":"e-42"}"#.into())
        .await
        .unwrap()
        .await
        .unwrap();
    js.publish("test.echo", r#"{"event_id":"e-43"}"#.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let reply = next_message(&mut out, WAIT, "the reply to e-43", &second).await;
    assert_eq!(
        reply.payload.as_ref(),
        br#"{"event_id":"e-43"}"#,
        "only the new event is handled"
    );
    second
        .wait_for_log("duplicate: already handled; acking", Some("echo"), WAIT)
        .await;
    assert_eq!(
        echo_calls(&first) + echo_calls(&second),
        2,
        "the handler ran once per event"
    );
    assert!(
        pending_message(&mut out).is_none(),
        "no second reply for e-42"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hot_reload_under_load_keeps_the_consumer() {
    let (nats, _client, js, dir) = echo_setup().await;
    let manifest = echo_manifest("", "sleep_ms = 1");
    dir.add_with_manifest("echo", &manifest);
    let host = Host::start_ready(&dir.path(), &nats.url()).await;

    let inputs = ids("r", 500);
    let publisher = {
        let js = js.clone();
        let inputs = inputs.clone();
        tokio::spawn(async move {
            for chunk in inputs.chunks(25) {
                publish_ids(&js, "test.echo", chunk.to_vec()).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    for round in 1..=4 {
        let version = if round % 2 == 1 {
            wasm("echo-v2")
        } else {
            wasm("echo")
        };
        dir.write_atomic("echo.wasm", &std::fs::read(version).unwrap());
        host.wait_for_log_count("plugin reloaded", Some("echo"), round, WAIT)
            .await;
    }
    publisher.await.unwrap();
    assert_each_once(&js, &inputs, || host.log_report()).await;
    assert_eq!(
        echo_calls(&host),
        inputs.len(),
        "no message handled twice (no redelivery storm)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dlq_replay_round_trip() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let js = jetstream::new(client.clone());
    let dir = PluginDir::new();
    let manifest = |always: bool| {
        format!(
            "[config]\nalways = \"{always}\"\n[jetstream]\nstream = \"IN\"\ncreate_stream = true\n\
             stream_subjects = [\"test.flaky\"]\n[delivery]\nbackoff = \"10ms\"\nmax_attempts = 2\n\
             dead_letter_stream = \"DLQ\"\ncreate_dead_letter_stream = true\n"
        )
    };
    dir.add_with_manifest("flaky", &manifest(true));
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    for i in 0..3 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("x-tag", format!("t{i}").as_str());
        js.publish_with_headers("test.flaky", headers, format!("m{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let letters = eventually_stored(&js, "DLQ", 3).await;
    assert_eq!(letters.len(), 3);

    // The fix is deployed: the same plugin now succeeds.
    dir.write_manifest("flaky", &manifest(false));
    host.wait_for_log("plugin reloaded", Some("flaky"), WAIT)
        .await;
    let mut out = subscribe(&client, "test.flaky.out").await;
    let mut tapped = subscribe(&client, "test.flaky").await;

    let replay = std::process::Command::new(evhost_bin())
        .args([
            "dlq",
            "replay",
            "--stream",
            "DLQ",
            "--subject",
            "dlq.>",
            "--wait",
            "500ms",
            "--nats",
            &nats.url(),
        ])
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run evhost dlq replay");
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    assert!(
        String::from_utf8_lossy(&replay.stdout).contains("replayed 3"),
        "{}",
        String::from_utf8_lossy(&replay.stdout)
    );

    let mut payloads = Vec::new();
    for _ in 0..3 {
        let again = next_message(&mut tapped, WAIT, "a replayed message", &host).await;
        assert!(
            header(&again, "x-tag").is_some_and(|t| t.starts_with('t')),
            "original header kept: {}",
            describe(&again)
        );
        assert!(
            header(&again, "Evhost-Error-Kind").is_none(),
            "Evhost-* headers dropped: {}",
            describe(&again)
        );
        next_message(&mut out, WAIT, "the reply to a replayed message", &host).await;
        payloads.push(String::from_utf8_lossy(&again.payload).to_string());
    }
    payloads.sort();
    assert_eq!(payloads, ["m0", "m1", "m2"]);
    assert!(
        stored(&js, "DLQ").await.is_empty(),
        "replayed dead letters leave the DLQ stream"
    );
}

async fn eventually_stored(js: &jetstream::Context, stream: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = stored(js, stream).await;
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_and_acks_in_flight_then_another_host_takes_the_rest() {
    let (nats, _client, js, dir) = echo_setup().await;
    dir.add_with_manifest(
        "echo",
        &evhost_tests::edited(
            &echo_manifest("", "sleep_ms = 400"),
            "concurrency = 8",
            "concurrency = 4",
        ),
    );
    let first = Host::start_ready(&dir.path(), &nats.url()).await;
    let inputs = ids("t", 20);
    publish_ids(&js, "test.echo", inputs.clone()).await;
    eventually(
        "four messages in flight",
        WAIT,
        || (echo_calls(&first) >= 4).then_some(()),
        || first.log_report(),
    )
    .await;
    first.sigterm();
    assert!(
        first.wait_exit(WAIT).await.success(),
        "exit 0\n{}",
        first.log_report()
    );

    // Everything the first host started was finished: its outputs are stored.
    let started = echo_calls(&first);
    assert_eq!(
        stored(&js, "OUT").await.len(),
        started,
        "every started message published its output"
    );
    // What it had pulled but not started it handed back for another host.
    let returned: usize = first
        .find_logs(|l| l.message() == Some("returned pulled messages not yet started"))
        .iter()
        .filter_map(|l| l.field_str("returned")?.parse::<usize>().ok())
        .sum();
    assert!(started + returned <= inputs.len());

    let second = Host::start_ready(&dir.path(), &nats.url()).await;
    assert_each_once(&js, &inputs, || {
        format!("{}\n{}", first.log_report(), second.log_report())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_handler_keeps_its_message_with_in_progress_acks() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let js = jetstream::new(client.clone());
    in_stream(&js, "test.echo").await;
    let dir = PluginDir::new();
    // Three times the ack wait: without in-progress acks it would be redelivered.
    dir.add_with_manifest(
        "echo",
        &evhost_tests::edited(
            &echo_manifest("", "sleep_ms = 3000"),
            "ack_wait = \"2s\"",
            "ack_wait = \"1s\"",
        ),
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut out = subscribe(&client, "test.echo.out").await;
    js.publish("test.echo", "slow".into())
        .await
        .unwrap()
        .await
        .unwrap();
    next_message(&mut out, WAIT, "the slow reply", &host).await;
    let mut consumer = consumer_of(&js, "IN", "test.echo").await;
    let info = eventually_info(&mut consumer, |i| i.num_ack_pending == 0).await;
    assert_eq!(info.num_redelivered, 0, "never redelivered: {info:?}");
    assert_eq!(echo_calls(&host), 1, "handled once\n{}", host.log_report());
}

/// A plugin whose stream is not there when the host starts is rejected in
/// one line that says when it is tried again, and serves once the stream is
/// made: no file change, no restart. (A host that starts while the servers
/// restart meets the same: JetStream answers only after a moment.)
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_whose_stream_comes_later_serves_once_it_is_there() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let js = jetstream::new(client.clone());
    let dir = PluginDir::new();
    dir.add_with_manifest("echo", "[jetstream]\nstream = \"IN\"\n");
    dir.add("counter");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let rejected = host
        .wait_for_log("plugin rejected", Some("echo"), WAIT)
        .await;
    let error = rejected.field_str("error").unwrap_or_default();
    assert!(error.contains("stream IN not found"), "{error}");
    assert_eq!(
        rejected.field("retry_in_ms").and_then(|v| v.as_u64()),
        Some(1000),
        "{}",
        host.log_report()
    );
    // Still not there at the first retry: rejected again, a longer wait.
    let again = host
        .wait_for_log_count("plugin rejected", Some("echo"), 2, WAIT)
        .await;
    assert_eq!(
        again.field("retry_in_ms").and_then(|v| v.as_u64()),
        Some(2000)
    );
    // The other plugin serves meanwhile.
    let mut counts = subscribe(&client, "test.counter.out").await;
    publish(&client, "test.counter", &[], b"").await;
    next_message(&mut counts, WAIT, "counter's answer", &host).await;

    in_stream(&js, "test.echo").await;
    host.wait_for_log("plugin loaded", Some("echo"), WAIT).await;
    let mut echoes = subscribe(&client, "test.echo.out").await;
    js.publish("test.echo", "after".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let msg = next_message(&mut echoes, WAIT, "echo's answer", &host).await;
    assert_eq!(msg.payload.as_ref(), b"after");
    // Bound: no more retries.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let rejections = host.count_logs("plugin rejected", Some("echo"));
    assert!(rejections >= 2, "{}", host.log_report());
    let loads = host.count_logs("plugin loaded", Some("echo"));
    assert_eq!(loads, 1, "{}", host.log_report());
    assert_eq!(
        host.count_logs("plugin rejected", Some("echo")),
        rejections,
        "tried again after it bound\n{}",
        host.log_report()
    );
}
