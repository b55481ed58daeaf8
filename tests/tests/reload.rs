//! Hot reload: replacing, breaking and removing plugins while the host runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evhost_tests::{
    Host, LogLine, NatsServer, PluginDir, WAIT, connect, describe, echo_roundtrip, eventually,
    header, next_message, publish, subscribe, wasm,
};
use futures::StreamExt;

/// Messages published in the steady stream, at least.
const STREAM_MIN: usize = 2000;
/// Replacements of echo.wasm during the stream.
const RELOADS: usize = 10;

#[tokio::test(flavor = "multi_thread")]
async fn reload_under_steady_stream_loses_and_duplicates_nothing() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("echo");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let initial = host
        .wait_for_log("plugin loaded", Some("echo"), WAIT)
        .await
        .field_str("version")
        .unwrap_or_else(|| panic!("`plugin loaded` has no version\n{}", host.log_report()));

    let client = connect(&nats.url()).await;
    let mut out = subscribe(&client, "test.echo.out").await;

    // The replies, collected as they come: id -> the versions that answered it.
    let replies: Replies = Arc::new(Mutex::new(HashMap::new()));
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

    // The steady stream: one message every 2 ms until the reloads are done
    // and at least STREAM_MIN are out.
    let reloads_done = Arc::new(AtomicBool::new(false));
    let publisher = {
        let client = client.clone();
        let reloads_done = reloads_done.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            let mut sent = 0usize;
            // An upper bound, so a stuck reload cannot make this run forever.
            while sent < 50 * STREAM_MIN
                && (sent < STREAM_MIN || !reloads_done.load(Ordering::SeqCst))
            {
                tick.tick().await;
                client
                    .publish("test.echo", format!("id-{sent:06}").into())
                    .await
                    .expect("publish to test.echo");
                sent += 1;
            }
            client.flush().await.expect("flush");
            sent
        })
    };

    // Replace echo.wasm in place (a plain copy, not a rename), alternating v2
    // and v1, waiting for each swap before the next copy.
    for k in 0..RELOADS {
        let src = if k % 2 == 0 {
            wasm("echo-v2")
        } else {
            wasm("echo")
        };
        let before = host.count_logs("plugin reloaded", Some("echo"));
        dir.copy_over("echo", &src);
        host.wait_for_log_count("plugin reloaded", Some("echo"), before + 1, WAIT)
            .await;
    }
    reloads_done.store(true, Ordering::SeqCst);
    let total = publisher.await.expect("the publisher task");
    assert!(total >= STREAM_MIN);

    // Wait for every id to be answered, then a little longer for any
    // duplicate still on its way.
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
    let mut duplicated: Vec<(&String, &Vec<String>)> =
        replies.iter().filter(|(_, v)| v.len() > 1).collect();
    duplicated.sort();
    let strangers: Vec<&String> = replies
        .keys()
        .filter(|id| {
            id.strip_prefix("id-")
                .and_then(|n| n.parse::<usize>().ok())
                .is_none_or(|n| n >= total)
        })
        .collect();
    assert!(
        missing.is_empty() && duplicated.is_empty() && strangers.is_empty(),
        "of {total} messages, {} got no reply (first: {:?}), {} got more than one \
         (first: {:?}), {} replies were for nothing sent ({:?}); versions seen: {versions:?}\n{}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        duplicated.len(),
        duplicated.iter().take(5).collect::<Vec<_>>(),
        strangers.len(),
        strangers.iter().take(5).collect::<Vec<_>>(),
        host.log_report()
    );
    assert!(
        versions.get("1").copied().unwrap_or(0) > 0 && versions.get("2").copied().unwrap_or(0) > 0,
        "both versions must have answered during the stream: {versions:?}"
    );

    // The log tells the story: one swap per copy, alternating between two
    // digests, each naming the one it replaced.
    let reloads: Vec<LogLine> = host.find_logs(|l| l.is("plugin reloaded", Some("echo")));
    assert_eq!(
        reloads.len(),
        RELOADS,
        "one `plugin reloaded` per replacement\n{}",
        host.log_report()
    );
    let mut previous = initial.clone();
    for (k, line) in reloads.iter().enumerate() {
        let version = line.field_str("version").unwrap_or_default();
        let previous_version = line.field_str("previous_version").unwrap_or_default();
        assert_eq!(
            previous_version, previous,
            "reload #{k}: previous_version names the version it replaced: {}",
            line.raw
        );
        assert_ne!(
            version, previous,
            "reload #{k} changed nothing: {}",
            line.raw
        );
        if k % 2 == 1 {
            assert_eq!(version, initial, "reload #{k} put v1 back: {}", line.raw);
        }
        previous = version;
    }
    // Finally v1 serves again.
    assert_eq!(
        echo_roundtrip(&client, &host, "after the reloads").await,
        "1"
    );
}

type Replies = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// Rejection of a broken replacement, whatever its kind.
async fn expect_rejected(host: &Host, file: &str, before: usize) -> LogLine {
    let line = host
        .wait_for_nth(
            &format!("`plugin rejected` naming {file}"),
            before + 1,
            WAIT,
            |l| l.message() == Some("plugin rejected"),
        )
        .await;
    assert_eq!(
        line.level(),
        Some("ERROR"),
        "a rejection is an error: {}",
        line.raw
    );
    let named = line.field_str("file").unwrap_or_default();
    assert!(
        named.ends_with(file),
        "the rejection names the file {file}: {}",
        line.raw
    );
    assert!(
        !line.field_str("error").unwrap_or_default().is_empty(),
        "the rejection says why: {}",
        line.raw
    );
    line
}

fn rejections(host: &Host) -> usize {
    host.find_logs(|l| l.message() == Some("plugin rejected"))
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_wasm_is_rejected_and_the_old_version_keeps_serving() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("echo");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let client = connect(&nats.url()).await;
    assert_eq!(echo_roundtrip(&client, &host, "before").await, "1");

    let before = rejections(&host);
    dir.write_atomic(
        "echo.wasm",
        b"this is not a WebAssembly component\n\x00\x01\x02",
    );
    expect_rejected(&host, "echo.wasm", before).await;
    assert_eq!(echo_roundtrip(&client, &host, "after garbage").await, "1");
    assert_eq!(host.count_logs("plugin removed", Some("echo")), 0);

    // A good file afterwards is taken.
    let reloads = host.count_logs("plugin reloaded", Some("echo"));
    dir.write_atomic("echo.wasm", &std::fs::read(wasm("echo-v2")).unwrap());
    host.wait_for_log_count("plugin reloaded", Some("echo"), reloads + 1, WAIT)
        .await;
    assert_eq!(echo_roundtrip(&client, &host, "after the fix").await, "2");
}

/// Putting the serving version's file back after a rejection changes
/// nothing that is served, and says so: the operator sees the fix taken.
#[tokio::test(flavor = "multi_thread")]
async fn putting_the_old_file_back_after_a_rejection_is_logged() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("echo");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let client = connect(&nats.url()).await;

    let before = rejections(&host);
    dir.write_atomic("echo.wasm", b"not a component");
    expect_rejected(&host, "echo.wasm", before).await;
    dir.write_atomic("echo.wasm", &std::fs::read(wasm("echo")).unwrap());
    let line = host
        .wait_for_log(
            "plugin files valid again; the version serving is unchanged",
            Some("echo"),
            WAIT,
        )
        .await;
    assert!(line.field("version").is_some(), "{}", line.raw);
    assert_eq!(echo_roundtrip(&client, &host, "after the fix").await, "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_wasm_is_rejected_and_the_old_version_keeps_serving() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("echo");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let client = connect(&nats.url()).await;
    assert_eq!(echo_roundtrip(&client, &host, "before").await, "1");

    let v2 = std::fs::read(wasm("echo-v2")).unwrap();
    let before = rejections(&host);
    // Written in place, not renamed: as a copy that stopped half way.
    std::fs::write(dir.wasm_path("echo"), &v2[..v2.len() / 2]).unwrap();
    expect_rejected(&host, "echo.wasm", before).await;
    assert_eq!(
        echo_roundtrip(&client, &host, "after truncation").await,
        "1"
    );
    assert_eq!(
        host.count_logs("plugin reloaded", Some("echo")),
        0,
        "half a file must never be loaded\n{}",
        host.log_report()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_manifest_is_rejected_and_the_old_settings_keep_serving() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("echo");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let client = connect(&nats.url()).await;
    assert_eq!(echo_roundtrip(&client, &host, "before").await, "1");

    let before = rejections(&host);
    dir.write_manifest("echo", "[limits]\nconcurrency = 4\nno_such_key = 1\n");
    let line = expect_rejected(&host, "echo.toml", before).await;
    assert!(
        line.field_str("error")
            .unwrap_or_default()
            .contains("no_such_key"),
        "the rejection names the unknown key: {}",
        line.raw
    );
    assert_eq!(
        echo_roundtrip(&client, &host, "after bad manifest").await,
        "1"
    );

    // A wrong type is rejected too.
    let before = rejections(&host);
    dir.write_manifest(
        "echo",
        "[config]\nsleep_ms = 1\n[limits]\ntimeout_ms = \"soon\"\n",
    );
    expect_rejected(&host, "echo.toml", before).await;
    assert_eq!(
        echo_roundtrip(&client, &host, "after wrong type").await,
        "1"
    );

    // A good manifest afterwards is taken: its config reaches the plugin.
    let reloads = host.count_logs("plugin reloaded", Some("echo"));
    dir.write_manifest("echo", "[config]\nsleep_ms = 1\n");
    host.wait_for_log_count("plugin reloaded", Some("echo"), reloads + 1, WAIT)
        .await;
    assert_eq!(echo_roundtrip(&client, &host, "after the fix").await, "1");
    host.wait_for(
        "echo's log line `echo: sleeping` (config applied)",
        WAIT,
        |l| l.raw.contains("echo: sleeping") && l.field_str("plugin").as_deref() == Some("echo"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn removed_plugin_stops_receiving() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("echo").add("flaky");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let client = connect(&nats.url()).await;
    assert_eq!(echo_roundtrip(&client, &host, "before").await, "1");

    dir.remove("echo");
    host.wait_for_log("plugin removed", Some("echo"), WAIT)
        .await;

    // Nobody subscribes to test.echo any more: the server answers a request
    // with "no responders". (Echo replies elsewhere, so while it is still
    // subscribed a request only times out.)
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let request = async_nats::Request::new()
            .payload("anyone?".into())
            .timeout(Some(Duration::from_millis(500)));
        match client.send_request("test.echo", request).await {
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => break,
            Err(e) if e.kind() == async_nats::RequestErrorKind::TimedOut => {}
            Err(e) => panic!("request failed: {e}"),
            Ok(msg) => panic!("unexpected reply: {}", describe(&msg)),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "test.echo still has a subscriber {WAIT:?} after `plugin removed`\n{}",
            host.log_report()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The other plugin is untouched.
    let mut out = subscribe(&client, "test.flaky.out").await;
    publish(&client, "test.flaky", &[], b"still here").await;
    let msg = next_message(&mut out, WAIT, "flaky's reply after echo's removal", &host).await;
    assert_eq!(msg.payload.as_ref(), b"still here");
}

/// Reload lines say what changed; a connection is one line; moving a plugin
/// to JetStream (a new serve task) is a reload, not a removal.
#[tokio::test(flavor = "multi_thread")]
async fn reload_lines_say_what_changed_and_connections_log_once() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add_with_manifest("echo", "[config]\nx = 1\n");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    assert_eq!(
        host.find_logs(
            |l| l.raw.contains("connected successfully") || l.raw.contains("event: connected")
        )
        .len(),
        0,
        "the client's own connection lines are held back\n{}",
        host.log_report()
    );
    assert!(host.count_logs("connected to NATS", None) >= 1);

    dir.write_manifest("echo", "[config]\nx = 2\n");
    let line = host
        .wait_for_log("plugin reloaded", Some("echo"), WAIT)
        .await;
    assert_eq!(
        line.field_str("changed").as_deref(),
        Some("manifest"),
        "{}",
        line.raw
    );

    dir.write_manifest(
        "echo",
        "[jetstream]\nstream = \"IN\"\ncreate_stream = true\nstream_subjects = [\"test.echo\"]\n",
    );
    let line = host
        .wait_for_log_count("plugin reloaded", Some("echo"), 2, WAIT)
        .await;
    assert_eq!(line.field_str("changed").as_deref(), Some("manifest"));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        host.count_logs("plugin removed", Some("echo")),
        0,
        "still served, so not removed\n{}",
        host.log_report()
    );
}
