//! JetStream consumers follow the manifest across reloads: a subject keeps
//! its consumer whatever else changes, a new subject starts where `deliver`
//! says, changed settings reach the server, and a removed subject's consumer
//! is deleted once its messages are done.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use evhost_tests::*;

/// echo on JetStream, consuming `subjects` from `IN` (which captures `in.>`).
fn manifest(subjects: &[&str], extra: &str) -> String {
    manifest_with_config(subjects, extra, "")
}

/// Like [`manifest`], with `[config]` lines.
fn manifest_with_config(subjects: &[&str], extra: &str, config: &str) -> String {
    let list: Vec<String> = subjects.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "subjects = [{}]\n[config]\n{config}\n[limits]\nconcurrency = 4\n[jetstream]\n\
         stream = \"IN\"\nack_wait = \"2s\"\n{extra}\n",
        list.join(", ")
    )
}

async fn setup() -> (NatsServer, async_nats::Client, jetstream::Context) {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "IN".into(),
        subjects: vec!["in.>".into()],
        ..Default::default()
    })
    .await
    .expect("create IN");
    (nats, client, js)
}

async fn store(js: &jetstream::Context, subject: &str, payload: &str) {
    js.publish(subject.to_string(), payload.to_string().into())
        .await
        .expect("publish")
        .await
        .expect("stored");
}

/// Reads echo's replies (core NATS, so a duplicate is seen even where a
/// stream would drop it) until `quiet` passes without one; counts each payload.
async fn replies(
    out: &mut async_nats::Subscriber,
    seen: &mut BTreeMap<String, usize>,
    until: impl Fn(&BTreeMap<String, usize>) -> bool,
    host: &Host,
) {
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !until(seen) {
        match tokio::time::timeout_at(deadline, out.next()).await {
            Ok(Some(msg)) => {
                *seen
                    .entry(String::from_utf8_lossy(&msg.payload).into_owned())
                    .or_default() += 1
            }
            _ => panic!("replies so far: {seen:?}\n{}", host.log_report()),
        }
    }
    // Anything that was going to be replayed would come now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while let Some(msg) = pending_message(out) {
        *seen
            .entry(String::from_utf8_lossy(&msg.payload).into_owned())
            .or_default() += 1;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn adding_a_subject_replays_nothing_and_starts_where_deliver_says() {
    let (nats, client, js) = setup().await;
    let dir = PluginDir::new();
    dir.add_with_manifest("echo", &manifest(&["in.a"], ""));
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut out = subscribe(&client, "test.echo.out").await;
    for i in 0..5 {
        store(&js, "in.a", &format!("a{i}")).await;
    }
    // History on the subject the plugin does not consume yet.
    for i in 0..3 {
        store(&js, "in.b", &format!("old-b{i}")).await;
    }
    let mut seen = BTreeMap::new();
    replies(&mut out, &mut seen, |s| s.len() == 5, &host).await;
    let first = consumer_of(&js, "IN", "in.a")
        .await
        .cached_info()
        .name
        .clone();

    dir.write_manifest("echo", &manifest(&["in.a", "in.b"], "deliver = \"new\""));
    host.wait_for_log("plugin reloaded", Some("echo"), WAIT)
        .await;
    store(&js, "in.a", "a5").await;
    store(&js, "in.b", "new-b").await;
    replies(
        &mut out,
        &mut seen,
        |s| s.contains_key("a5") && s.contains_key("new-b"),
        &host,
    )
    .await;

    let expected: BTreeMap<String, usize> = ["a0", "a1", "a2", "a3", "a4", "a5", "new-b"]
        .iter()
        .map(|p| (p.to_string(), 1))
        .collect();
    assert_eq!(
        seen,
        expected,
        "in.a continues with no duplicate; in.b starts with new messages only\n{}",
        host.log_report()
    );
    assert_eq!(
        consumer_of(&js, "IN", "in.a").await.cached_info().name,
        first,
        "in.a keeps its consumer"
    );
    let all = consumers_of(&js, "IN").await;
    assert_eq!(
        all.len(),
        2,
        "one consumer per subject, none orphaned: {all:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_ack_wait_reaches_the_server_and_paces_in_progress_acks() {
    let (nats, client, js) = setup().await;
    let dir = PluginDir::new();
    dir.add_with_manifest("echo", &manifest(&["in.a"], ""));
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let before = consumer_of(&js, "IN", "in.a").await;
    assert_eq!(before.cached_info().config.ack_wait, Duration::from_secs(2));

    // ack_wait 1 s, and a handler that takes 3 s: only in-progress acks
    // paced by the new ack_wait keep the message from being redelivered.
    let slow = manifest_with_config(&["in.a"], "", "sleep_ms = 3000");
    assert!(
        slow.contains("ack_wait = \"2s\""),
        "the fixture sets ack_wait: {slow}"
    );
    dir.write_manifest(
        "echo",
        &evhost_tests::edited(&slow, "ack_wait = \"2s\"", "ack_wait = \"1s\""),
    );
    host.wait_for_log("plugin reloaded", Some("echo"), WAIT)
        .await;
    let mut consumer = consumer_of(&js, "IN", "in.a").await;
    assert_eq!(
        consumer.cached_info().name,
        before.cached_info().name,
        "the same consumer, updated in place"
    );
    let info = consumer.info().await.expect("consumer info").clone();
    assert_eq!(
        info.config.ack_wait,
        Duration::from_secs(1),
        "the server holds the new ack_wait\n{}",
        host.log_report()
    );

    let mut out = subscribe(&client, "test.echo.out").await;
    store(&js, "in.a", "slow").await;
    let mut seen = BTreeMap::new();
    replies(&mut out, &mut seen, |s| s.contains_key("slow"), &host).await;
    assert_eq!(
        seen.get("slow"),
        Some(&1),
        "{seen:?}\n{}",
        host.log_report()
    );
    let info = consumer.info().await.expect("consumer info").clone();
    assert_eq!(info.num_redelivered, 0, "never redelivered: {info:?}");
    assert_eq!(info.num_ack_pending, 0, "acked: {info:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_subject_loses_its_consumer_after_its_messages_finish() {
    let (nats, client, js) = setup().await;
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "echo",
        &manifest_with_config(&["in.a", "in.b"], "", "sleep_ms = 1500"),
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    assert_eq!(consumers_of(&js, "IN").await.len(), 2);
    let mut out = subscribe(&client, "test.echo.out").await;
    store(&js, "in.b", "last-b").await;
    host.wait_for("echo to start on last-b", WAIT, |l| {
        l.raw.contains("echo: sleeping")
    })
    .await;

    // Removed while its message is being handled.
    dir.write_manifest(
        "echo",
        &manifest_with_config(&["in.a"], "", "sleep_ms = 1500"),
    );
    host.wait_for_log(
        "deleted the consumer of a subject no longer in the manifest",
        Some("echo"),
        WAIT,
    )
    .await;
    let mut seen = BTreeMap::new();
    replies(&mut out, &mut seen, |s| s.contains_key("last-b"), &host).await;
    assert_eq!(seen.get("last-b"), Some(&1), "finished before the delete");
    let left: Vec<String> = consumers_of(&js, "IN")
        .await
        .into_iter()
        .map(|i| i.config.filter_subject)
        .collect();
    assert_eq!(left, vec!["in.a".to_string()], "{}", host.log_report());
}

/// A message whose deliveries never reach a decision (one that drops the
/// connection, a host killed mid-message) is not delivered forever: the
/// consumers cap deliveries at `max_attempts` plus a margin, and follow a
/// changed `max_attempts` on reload.
#[tokio::test(flavor = "multi_thread")]
async fn consumers_bound_deliveries_above_max_attempts() {
    let (nats, _client, js) = setup().await;
    let dir = PluginDir::new();
    dir.add_with_manifest("echo", &manifest(&["in.a"], "[delivery]\nmax_attempts = 3"));
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let consumer = consumer_of(&js, "IN", "in.a").await;
    assert_eq!(
        consumer.cached_info().config.max_deliver,
        13,
        "3 attempts + 10"
    );

    dir.write_manifest("echo", &manifest(&["in.a"], "[delivery]\nmax_attempts = 4"));
    host.wait_for_log("plugin reloaded", Some("echo"), WAIT)
        .await;
    let after = consumer_of(&js, "IN", "in.a").await;
    assert_eq!(after.cached_info().name, consumer.cached_info().name);
    assert_eq!(
        after.cached_info().config.max_deliver,
        14,
        "updated in place\n{}",
        host.log_report()
    );
}
