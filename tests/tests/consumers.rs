//! JetStream consumers follow the manifest across reloads: a subject keeps
//! its consumer whatever else changes, a new subject starts where `deliver`
//! says, changed settings reach the server, and a removed subject's consumer
//! is deleted once its messages are done. A removed plugin's consumers are
//! kept, and said so; `evhost consumers` lists them and deletes them once no
//! host serves them.

use std::collections::{BTreeMap, BTreeSet};
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
    let first = consumer_name_of(&js, "IN", "in.a").await;

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

/// The names of `infos`.
fn names(infos: &[async_nats::jetstream::consumer::Info]) -> BTreeSet<String> {
    infos.iter().map(|i| i.name.clone()).collect()
}

/// Whether `line` is the host saying `plugin`'s consumers are kept.
fn says_consumers_kept(line: &LogLine, plugin: &str) -> bool {
    line.message().is_some_and(|m| {
        m.starts_with("the removed plugin's durable consumers are kept on the server")
    }) && line.field_str("plugin").as_deref() == Some(plugin)
}

/// `evhost consumers delete --stream IN --durable DURABLE [EXTRA...]`.
fn delete_consumers(nats: &NatsServer, durable: &str, extra: &[&str]) -> CliOutput {
    let url = nats.url();
    let mut args = vec![
        "consumers",
        "delete",
        "--stream",
        "IN",
        "--durable",
        durable,
        "--nats",
        &url,
    ];
    args.extend_from_slice(extra);
    let out = evhost(&args, None);
    out.assert_no_panic();
    out
}

/// What the command itself wrote to stderr: its lines, not its log's (the
/// connection's, which start with a timestamp).
fn said(out: &CliOutput) -> Vec<&str> {
    out.stderr_lines()
        .into_iter()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_none_or(|t| humantime::parse_rfc3339_weak(t).is_err())
        })
        .collect()
}

/// Asserts that `out` is a refusal: exit code 1 and one line saying a host
/// may still serve the plugin.
fn assert_refused(out: &CliOutput) {
    assert_eq!(out.code, Some(1), "{out}");
    let lines = said(out);
    assert_eq!(lines.len(), 1, "one line:\n{out}");
    assert!(
        lines[0].starts_with("refused:")
            && lines[0].contains("a host may still be serving the plugin")
            && lines[0].contains("--yes"),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
}

/// #20, finding 11: removing a JetStream plugin's `.wasm` deletes none of its
/// durable consumers (other hosts may still serve it, and consumers made
/// anew for a plugin added back would start at `deliver`, replaying the
/// stream), but it is no longer silent: once the plugin has drained, the
/// host logs one line naming them and the command that deletes them (not on
/// a reload, not at shutdown). `evhost consumers list` shows them; `delete`
/// refuses while the plugin, added back, is served again, and `--yes`
/// deletes them anyway.
#[tokio::test(flavor = "multi_thread")]
async fn a_removed_plugin_keeps_its_consumers_and_the_host_says_how_to_delete_them() {
    let (nats, _client, js) = setup().await;
    let url = nats.url();
    let dir = PluginDir::new();
    dir.add_with_manifest("echo", &manifest(&["in.a", "in.b"], ""));
    let host = Host::start_ready(&dir.path(), &url).await;
    let a = consumer_name_of(&js, "IN", "in.a").await;
    let b = consumer_name_of(&js, "IN", "in.b").await;
    let both: BTreeSet<String> = [a.clone(), b.clone()].into();
    // A reload is no removal, not even one that takes the plugin off
    // JetStream (its serve task drains and a new one starts) and back.
    dir.write_manifest(
        "echo",
        "subjects = [\"in.a\", \"in.b\"]\n[limits]\nconcurrency = 4\n",
    );
    host.wait_for_log("plugin reloaded", Some("echo"), WAIT)
        .await;
    dir.write_manifest(
        "echo",
        &manifest(&["in.a", "in.b"], "[delivery]\nmax_attempts = 4"),
    );
    host.wait_for_log_count("plugin reloaded", Some("echo"), 2, WAIT)
        .await;
    assert_eq!(
        names(&consumers_of(&js, "IN").await),
        both,
        "the same consumers again"
    );

    dir.remove("echo");
    host.wait_for_log("plugin removed", Some("echo"), WAIT)
        .await;
    let kept = host
        .wait_for("the line saying echo's consumers are kept", WAIT, |l| {
            says_consumers_kept(l, "echo")
        })
        .await;
    let command = "evhost consumers delete --stream IN --durable evhost-echo";
    assert_eq!(kept.level(), Some("INFO"), "{}", kept.raw);
    assert_eq!(
        kept.field_str("stream").as_deref(),
        Some("IN"),
        "{}",
        kept.raw
    );
    assert_eq!(
        kept.field_str("durable").as_deref(),
        Some("evhost-echo"),
        "{}",
        kept.raw
    );
    let listed = kept.field_str("consumers").unwrap_or_default();
    assert!(
        listed.contains(&a) && listed.contains(&b),
        "both consumers named: {}",
        kept.raw
    );
    assert!(
        kept.message()
            .is_some_and(|m| m.contains(&format!("`{command}`"))),
        "the command that deletes them: {}",
        kept.raw
    );
    assert_eq!(
        names(&consumers_of(&js, "IN").await),
        both,
        "kept on the server\n{}",
        host.log_report()
    );

    let out = evhost(
        &["consumers", "list", "--stream", "IN", "--nats", &url],
        None,
    );
    out.assert_no_panic();
    assert_eq!(out.code, Some(0), "{out}");
    let rows: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(rows.len(), 3, "a header and a line per consumer:\n{out}");
    assert!(rows[0].starts_with("CONSUMER"), "{out}");
    for (name, subject) in [(&a, "in.a"), (&b, "in.b")] {
        assert!(
            rows.iter().any(|r| r.starts_with(name.as_str())
                && r.contains(" evhost-echo ")
                && r.contains(&format!(" {subject} "))),
            "{name} on {subject}:\n{out}"
        );
    }
    let out = evhost(
        &[
            "consumers",
            "list",
            "--stream",
            "IN",
            "--durable",
            "evhost-echo",
            "--json",
            "--nats",
            &url,
        ],
        None,
    );
    out.assert_no_panic();
    assert_eq!(out.code, Some(0), "{out}");
    let json = out.json();
    let entries = json.as_array().expect("a JSON array");
    let listed: BTreeSet<String> = entries
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(listed, both, "{out}");
    for entry in entries {
        assert_eq!(entry["durable"], "evhost-echo", "{out}");
        assert_eq!(entry["stream"], "IN", "{out}");
        let subject = if entry["name"] == a.as_str() {
            "in.a"
        } else {
            "in.b"
        };
        assert_eq!(entry["filter_subject"], subject, "{out}");
        for count in ["pending", "ack_pending", "waiting"] {
            assert!(entry[count].is_u64(), "{count}: {out}");
        }
    }

    // Added back: the host serves it again, on the same consumers.
    dir.add_with_manifest(
        "echo",
        &manifest(&["in.a", "in.b"], "[delivery]\nmax_attempts = 4"),
    );
    host.wait_for_log_count("plugin loaded", Some("echo"), 2, WAIT)
        .await;
    assert_eq!(names(&consumers_of(&js, "IN").await), both);
    assert_refused(&delete_consumers(&nats, "evhost-echo", &[]));
    assert_eq!(
        names(&consumers_of(&js, "IN").await),
        both,
        "a refusal deletes nothing"
    );
    let forced = delete_consumers(&nats, "evhost-echo", &["--yes"]);
    assert_eq!(forced.code, Some(0), "{forced}");
    for name in [&a, &b] {
        assert!(
            forced
                .stdout
                .lines()
                .any(|l| l.starts_with(&format!("deleted consumer {name} "))),
            "{forced}"
        );
    }
    assert!(
        consumers_of(&js, "IN").await.is_empty(),
        "--yes deletes them while a host serves them"
    );

    // A shutdown is no removal either.
    host.sigterm();
    host.wait_exit(WAIT).await;
    assert_eq!(
        host.find_logs(|l| says_consumers_kept(l, "echo")).len(),
        1,
        "{}",
        host.log_report()
    );
}

/// `evhost consumers delete` deletes the consumers evhost made for one
/// durable only once no host serves them: refused while a second host
/// serves the plugin (its first host has dropped it), then, that host
/// stopped, it deletes exactly them, leaving another durable's consumer on
/// the same stream (still served) and other applications' consumers, one of
/// them named like evhost's, alone.
#[tokio::test(flavor = "multi_thread")]
async fn consumers_delete_waits_for_every_host_and_deletes_only_that_durable() {
    use async_nats::jetstream::consumer::{PullConsumer, pull};
    let (nats, client, js) = setup().await;
    let url = nats.url();
    let first = PluginDir::new();
    first.add_with_manifest("echo", &manifest(&["in.a", "in.b"], ""));
    // Another plugin on the same stream: durable evhost-echo2, which starts
    // like evhost-echo.
    first.write_manifest("echo2", &manifest(&["in.c"], ""));
    first.add_as("echo2", &wasm("echo"));
    let host = Host::start_ready(&first.path(), &url).await;
    let second = PluginDir::new();
    second.add_with_manifest("echo", &manifest(&["in.a", "in.b"], ""));
    let other_host = Host::start_ready(&second.path(), &url).await;
    let stream = js.get_stream("IN").await.expect("stream IN");
    for (name, subject, description) in [
        ("audit", "in.a", "the audit service"),
        ("evhost-echo-deadbeef", "in.b", "someone else's"),
    ] {
        let _: PullConsumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(name.into()),
                description: Some(description.into()),
                filter_subject: subject.into(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("create consumer {name}: {e}"));
    }
    let a = consumer_name_of(&js, "IN", "in.a").await;
    let b = consumer_name_of(&js, "IN", "in.b").await;
    let all = names(&consumers_of(&js, "IN").await);
    assert_eq!(all.len(), 5, "{all:?}");
    let survivors: BTreeSet<String> = all
        .iter()
        .filter(|n| **n != a && **n != b)
        .cloned()
        .collect();

    // `list` shows evhost's consumers, none of the others.
    let out = evhost(
        &["consumers", "list", "--stream", "IN", "--nats", &url],
        None,
    );
    out.assert_no_panic();
    assert_eq!(out.code, Some(0), "{out}");
    let c = consumer_name_of(&js, "IN", "in.c").await;
    let shown: BTreeSet<&str> = out
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(shown, [a.as_str(), b.as_str(), c.as_str()].into(), "{out}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with(c.as_str()) && l.contains(" evhost-echo2 ")),
        "{out}"
    );
    assert!(
        said(&out)
            .iter()
            .any(|l| l.contains("2 other consumer(s) not shown")),
        "{out}"
    );

    first.remove("echo");
    host.wait_for("the line saying echo's consumers are kept", WAIT, |l| {
        says_consumers_kept(l, "echo")
    })
    .await;
    assert_refused(&delete_consumers(&nats, "evhost-echo", &[]));
    assert_eq!(
        names(&consumers_of(&js, "IN").await),
        all,
        "a refusal deletes nothing"
    );

    other_host.sigterm();
    other_host.wait_exit(WAIT).await;
    // The server may count the stopped host's pull requests until it has
    // seen its connection close (at the latest until they expire, 5 s): ask
    // until the answer is not a refusal.
    let deadline = std::time::Instant::now() + WAIT;
    let deleted = loop {
        let out = delete_consumers(&nats, "evhost-echo", &[]);
        if out.code != Some(1) || std::time::Instant::now() > deadline {
            break out;
        }
        assert_refused(&out);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(deleted.code, Some(0), "{deleted}");
    let lines: BTreeSet<&str> = deleted.stdout.lines().collect();
    let expected: BTreeSet<String> = [(&a, "in.a"), (&b, "in.b")]
        .iter()
        .map(|(n, s)| format!("deleted consumer {n} ({s})"))
        .collect();
    assert_eq!(
        lines,
        expected.iter().map(String::as_str).collect(),
        "{deleted}"
    );
    assert_eq!(
        names(&consumers_of(&js, "IN").await),
        survivors,
        "only evhost-echo's consumers are deleted\n{deleted}"
    );
    // echo2 is still served from its consumer.
    let mut out = subscribe(&client, "test.echo.out").await;
    store(&js, "in.c", "still-c").await;
    let mut seen = BTreeMap::new();
    replies(&mut out, &mut seen, |s| s.contains_key("still-c"), &host).await;

    // Nothing left of the durable: one line, exit 1.
    let again = delete_consumers(&nats, "evhost-echo", &[]);
    assert_eq!(again.code, Some(1), "{again}");
    let lines = said(&again);
    assert_eq!(lines.len(), 1, "{again}");
    assert!(
        lines[0].starts_with("error: stream IN has no consumer of durable evhost-echo"),
        "{again}"
    );
    let missing = evhost(
        &["consumers", "list", "--stream", "NOPE", "--nats", &url],
        None,
    );
    missing.assert_no_panic();
    assert_eq!(missing.code, Some(1), "{missing}");
    let lines = said(&missing);
    assert!(
        lines.len() == 1 && lines[0].starts_with("error: cannot find stream NOPE"),
        "{missing}"
    );
    // A name that would reach into the JetStream API subject is refused
    // before anything is asked of the server; every consumer stays.
    let before = names(&consumers_of(&js, "IN").await);
    for (stream, durable) in [
        ("IN.>", "evhost-echo2"),
        ("IN", "evhost-echo2.*"),
        ("I N", "x"),
    ] {
        let out = evhost(
            &[
                "consumers",
                "delete",
                "--stream",
                stream,
                "--durable",
                durable,
                "--yes",
                "--nats",
                &url,
            ],
            None,
        );
        out.assert_no_panic();
        assert_eq!(out.code, Some(1), "{out}");
        let lines = said(&out);
        assert!(
            lines.len() == 1 && lines[0].contains("is not a"),
            "{stream} {durable}: {out}"
        );
    }
    assert_eq!(names(&consumers_of(&js, "IN").await), before);
}
