//! `evhost dlq`: dead letters read back from the stream that kept them,
//! shown with their payloads or as JSON, and replayed only where the publish
//! rules allow. Anyone who can publish to `dlq.>` can plant a dead letter, so
//! replay treats every letter as untrusted.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use evhost_tests::*;
use futures::StreamExt;

/// A stream `DLQ` capturing `dlq.>`, as `create_dead_letter_stream` makes it.
async fn dead_letter_stream(js: &jetstream::Context) -> stream::Stream {
    js.create_stream(stream::Config {
        name: "DLQ".into(),
        subjects: vec!["dlq.>".into()],
        ..Default::default()
    })
    .await
    .expect("create the DLQ stream")
}

/// Stores a dead letter on `subject` claiming to come from `original`.
async fn plant(js: &jetstream::Context, subject: &str, original: &str, payload: &str) {
    let mut headers = HeaderMap::new();
    headers.insert("Evhost-Original-Subject", original);
    headers.insert("Evhost-Error-Kind", "permanent");
    headers.insert("Evhost-Plugin", "payment");
    headers.insert("x-kept", "yes");
    js.publish_with_headers(subject.to_string(), headers, payload.to_string().into())
        .await
        .expect("publish the dead letter")
        .await
        .expect("the dead letter is stored");
}

/// #20 item 5: a letter planted on `dlq.>` that claims to come from
/// `$JS.API.STREAM.DELETE.VICTIM` made the operator's replay delete the
/// stream with the operator's rights. Replay must apply the publish rules to
/// its targets, and refuse letters whose subject is not the dead-letter
/// prefix plus the subject they claim to come from; the honest letter next
/// to them is still replayed.
#[tokio::test(flavor = "multi_thread")]
async fn replay_refuses_planted_letters_and_the_stream_survives() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "VICTIM".into(),
        subjects: vec!["victim.>".into()],
        ..Default::default()
    })
    .await
    .expect("create VICTIM");
    js.publish("victim.one", "keep me".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let mut dlq = dead_letter_stream(&js).await;
    // Its subject is the prefix plus its claim, but the claim is a system subject.
    plant(
        &js,
        "dlq.$JS.API.STREAM.DELETE.VICTIM",
        "$JS.API.STREAM.DELETE.VICTIM",
        "",
    )
    .await;
    // An ordinary-looking letter claiming a system subject.
    plant(
        &js,
        "dlq.orders.order.created",
        "$JS.API.STREAM.DELETE.VICTIM",
        "",
    )
    .await;
    // A letter whose claim does not match the subject it was found on.
    plant(&js, "dlq.orders.a", "orders.b", "redirected").await;
    // The honest one.
    plant(&js, "dlq.orders.c", "orders.c", "good").await;

    let mut replayed = subscribe(&client, "orders.>").await;
    let out = evhost(
        &["dlq", "replay", "--stream", "DLQ", "--nats", &nats.url()],
        None,
    );
    out.assert_no_panic();

    let mut victim = js
        .get_stream("VICTIM")
        .await
        .unwrap_or_else(|e| panic!("replay deleted the VICTIM stream ({e}):\n{out}"));
    assert_eq!(
        victim.info().await.expect("VICTIM info").state.messages,
        1,
        "VICTIM keeps its message:\n{out}"
    );
    let good = tokio::time::timeout(WAIT, replayed.next())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the honest letter was not replayed:\n{out}"));
    assert_eq!(good.subject.as_str(), "orders.c");
    assert_eq!(good.payload.as_ref(), b"good");
    assert_eq!(header(&good, "x-kept").as_deref(), Some("yes"));
    assert!(header(&good, "Evhost-Original-Subject").is_none());
    client.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        pending_message(&mut replayed).is_none(),
        "only the honest letter is replayed (not the one redirected to orders.b):\n{out}"
    );
    assert_eq!(out.code, Some(1), "refusals make the exit code 1:\n{out}");
    let refusals: Vec<&str> = out
        .stderr_lines()
        .into_iter()
        .filter(|l| l.starts_with("refused dead letter"))
        .collect();
    assert_eq!(refusals.len(), 3, "one line per refused letter:\n{out}");
    assert!(
        refusals
            .iter()
            .filter(|l| l.contains("system subject"))
            .count()
            == 2,
        "{out}"
    );
    assert!(
        refusals.iter().any(|l| l.contains("orders.b")
            && l.contains("dlq.orders.a")
            && l.contains("does not match")),
        "{out}"
    );
    assert_eq!(
        dlq.info().await.expect("DLQ info").state.messages,
        3,
        "refused letters stay in the stream, the replayed one is deleted:\n{out}"
    );
}

/// Core mode can keep its dead letters in a stream the manifest names (and
/// asks the host to create), so `evhost dlq list --json` run afterwards, with
/// no flags but the server, shows them: the letter with its kind, plugin and
/// original payload bytes.
#[tokio::test(flavor = "multi_thread")]
async fn core_dead_letters_kept_in_a_stream_are_listed_as_json_afterwards() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "bigout",
        "[delivery]\nmax_attempts = 1\ndead_letter_stream = \"DLQ\"\ncreate_dead_letter_stream = true\n",
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    // `system` makes bigout publish to a `$JS.API` subject: invalid-output.
    publish(&client, "test.bigout", &[], b"system").await;
    let js = jetstream::new(client.clone());
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let stored = match js.get_stream("DLQ").await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        };
        if stored == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dead letter never reached the DLQ stream\n{}",
            host.log_report()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let out = evhost(&["dlq", "list", "--json", "--nats", &nats.url()], None);
    out.assert_no_panic();
    assert_eq!(out.code, Some(0), "{out}");
    let letters: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("dlq list --json prints JSON ({e}):\n{out}"));
    let letters = letters.as_array().expect("a JSON array");
    assert_eq!(letters.len(), 1, "{out}");
    let letter = &letters[0];
    assert_eq!(letter["original_subject"], "test.bigout", "{letter:#}");
    assert_eq!(letter["plugin"], "bigout", "{letter:#}");
    assert_eq!(letter["kind"], "invalid-output", "{letter:#}");
    assert_eq!(letter["payload"], "system", "{letter:#}");
}
