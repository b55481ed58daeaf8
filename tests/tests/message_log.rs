//! `EVHOST_LOG=debug` gives one line per message, in both delivery modes,
//! naming the plugin, the subject, the attempt, how it ended and how long it
//! took (the `message` span, reported when it closes).

use async_nats::jetstream::{self, stream};
use evhost_tests::*;

/// Whether `line` is the closing line of a message of `plugin` on `subject`
/// that ended as `outcome`, with an attempt number and a duration.
fn is_message_line(line: &LogLine, plugin: &str, subject: &str, outcome: &str) -> bool {
    line.field_str("plugin").as_deref() == Some(plugin)
        && line.field_str("subject").as_deref() == Some(subject)
        && line.field_str("outcome").as_deref() == Some(outcome)
        && line.field("attempt").is_some()
        && line.field("duration_us").is_some()
}

fn debug_host(dir: &PluginDir, url: &str) -> Host {
    Host::start_with(
        &dir.path(),
        url,
        HostOptions {
            log_level: "debug".to_string(),
            ..HostOptions::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn each_message_is_one_debug_line_with_its_outcome_in_both_modes() {
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
    let dir = PluginDir::new();
    dir.add("echo");
    dir.add_as("jsecho", &wasm("echo"));
    dir.write_manifest(
        "jsecho",
        "subjects = [\"in.a\"]\n[jetstream]\nstream = \"IN\"\n",
    );
    let host = debug_host(&dir, &nats.url());
    host.wait_for_log("host ready", None, WAIT).await;

    // Core NATS.
    let mut out = subscribe(&client, "test.echo.out").await;
    publish(&client, "test.echo", &[], b"core").await;
    next_message(&mut out, WAIT, "echo's reply", &host).await;
    host.wait_for("core echo's message line", WAIT, |l| {
        is_message_line(l, "echo", "test.echo", "ok")
    })
    .await;

    // JetStream.
    js.publish("in.a", "stored".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let line = host
        .wait_for("jsecho's message line", WAIT, |l| {
            is_message_line(l, "jsecho", "in.a", "ok")
        })
        .await;
    assert_eq!(
        line.field_str("stream").as_deref(),
        Some("IN"),
        "{}",
        line.raw
    );
    assert!(line.field("seq").is_some(), "{}", line.raw);
}
