//! `evhost run --metrics ADDR`: per-plugin counts of how messages ended, as
//! Prometheus text at `/metrics`, kept across a reload.

use std::time::{Duration, Instant};

use evhost_tests::{
    Host, NatsServer, OrderCreated, PluginDir, WAIT, connect, free_port, next_dead_letter,
    next_message, plugin_entry, plugins_json, publish, subscribe, wasm,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The response to `GET path` at `addr`: status line and body.
async fn get(addr: &str, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the metrics endpoint {addr}: {e}"));
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").as_bytes())
        .await
        .expect("send the request");
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .await
        .expect("read the response");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// The value of the sample `series` (name and labels, exactly), if present.
fn sample(body: &str, series: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until `series` reads `want`, failing with the last body seen.
async fn wait_for_sample(addr: &str, series: &str, want: u64, host: &Host) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = get(addr, "/metrics").await;
        if sample(&body, series) == Some(want) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{series} never reached {want}; last /metrics:\n{body}\n{}",
                host.log_report()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_outcomes_per_plugin_and_survive_a_reload() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("payment");
    let addr = format!("127.0.0.1:{}", free_port());
    let host = Host::start(&dir.path(), &nats.url(), &["--metrics", &addr]);
    host.wait_for_log("host ready", None, WAIT).await;

    let client = connect(&nats.url()).await;
    let mut payments = subscribe(&client, "payments.payment.completed").await;
    let mut dead = subscribe(&client, "dlq.>").await;

    let ok = r#"evhost_messages_total{plugin="payment",outcome="ok"}"#;
    let permanent = r#"evhost_messages_total{plugin="payment",outcome="dead-letter-permanent"}"#;
    let (status, body) = get(&addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "body:\n{body}");
    assert_eq!(sample(&body, ok), Some(0), "before any message:\n{body}");

    for i in 0..2 {
        let order = OrderCreated::new(&format!("ord-{i}"), "cust-1");
        publish(&client, "orders.order.created", &[], &order.to_bytes()).await;
        next_message(&mut payments, WAIT, "a payment", &host).await;
    }
    publish(&client, "orders.order.created", &[], b"{not json").await;
    next_dead_letter(&mut dead, "the malformed order's dead letter", &host).await;
    wait_for_sample(&addr, ok, 2, &host).await;
    wait_for_sample(&addr, permanent, 1, &host).await;

    // A reload swaps the version, not the counters.
    dir.write_manifest("payment", "[limits]\nconcurrency = 8\n");
    host.wait_for_log("plugin reloaded", Some("payment"), WAIT)
        .await;
    let order = OrderCreated::new("ord-after", "cust-1");
    publish(&client, "orders.order.created", &[], &order.to_bytes()).await;
    next_message(&mut payments, WAIT, "a payment after the reload", &host).await;
    wait_for_sample(&addr, ok, 3, &host).await;

    let (status, _) = get(&addr, "/").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_metrics_address_in_use_is_a_one_line_error() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("payment");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address").to_string();
    let host = Host::start(&dir.path(), &nats.url(), &["--metrics", &addr]);
    let status = host.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(1), "exit status\n{}", host.log_report());
    let logs = host.logs();
    assert!(
        logs.contains(&format!("cannot listen for metrics on {addr}")),
        "the error names the address:\n{logs}"
    );
    assert!(
        !logs.contains("panicked") && !logs.contains("stack backtrace"),
        "{logs}"
    );
}

/// The line of `series` whose labels start with `labels_prefix`, if any.
fn line_starting<'a>(body: &'a str, prefix: &str) -> Option<&'a str> {
    body.lines().find(|l| l.starts_with(prefix))
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_durations_in_flight_reloads_versions_connections_and_consumer_pending() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let js = async_nats::jetstream::new(client.clone());
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "IN".into(),
        subjects: vec!["test.echo".into()],
        ..Default::default()
    })
    .await
    .expect("create the IN stream");
    for i in 0..5 {
        js.publish("test.echo", format!("m{i}").into())
            .await
            .expect("publish")
            .await
            .expect("publish ack");
    }
    let manifest = "[limits]\nconcurrency = 2\n[jetstream]\nstream = \"IN\"\nack_wait = \"5s\"\n";
    let dir = PluginDir::new();
    dir.add_with_manifest("echo", manifest);
    let addr = format!("127.0.0.1:{}", free_port());
    let host = Host::start(&dir.path(), &nats.url(), &["--metrics", &addr]);
    host.wait_for_log("host ready", None, WAIT).await;

    wait_for_sample(
        &addr,
        r#"evhost_messages_total{plugin="echo",outcome="ok"}"#,
        5,
        &host,
    )
    .await;
    let (_, body) = get(&addr, "/metrics").await;
    assert_eq!(
        sample(
            &body,
            r#"messaging_process_duration_seconds_count{messaging_system="nats",plugin="echo"}"#
        ),
        Some(5),
        "one observation per handler call:\n{body}"
    );
    assert!(
        body.contains("# TYPE messaging_process_duration_seconds histogram"),
        "{body}"
    );
    assert_eq!(
        sample(&body, r#"evhost_messages_in_flight{plugin="echo"}"#),
        Some(0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            r#"evhost_plugin_reloads_total{plugin="echo",result="loaded"}"#
        ),
        Some(1),
        "{body}"
    );
    let plugins = plugins_json(&addr, &host).await;
    let version = plugin_entry(&plugins, "echo").expect("echo in /plugins")["version"]
        .as_str()
        .expect("a version")
        .to_string();
    assert_eq!(
        sample(
            &body,
            &format!(r#"evhost_plugin_info{{plugin="echo",version="{version}"}}"#)
        ),
        Some(1),
        "{body}"
    );
    assert_eq!(
        sample(&body, r#"evhost_nats_connection_up{connection="main"}"#),
        Some(1),
        "{body}"
    );
    let pending = line_starting(
        &body,
        r#"evhost_jetstream_consumer_pending_messages{plugin="echo",stream="IN",consumer=""#,
    )
    .unwrap_or_else(|| panic!("no pending gauge for echo's consumer:\n{body}"));
    assert!(
        pending.ends_with("} 0"),
        "everything was delivered: {pending}"
    );

    // A broken file is a rejected load; a manifest change a reload.
    dir.write_atomic("echo.wasm", b"not a component");
    host.wait_for_log("plugin rejected", Some("echo"), WAIT)
        .await;
    wait_for_sample(
        &addr,
        r#"evhost_plugin_reloads_total{plugin="echo",result="rejected"}"#,
        1,
        &host,
    )
    .await;
    dir.copy_over("echo", &wasm("echo"));
    dir.write_manifest(
        "echo",
        &manifest.replace("concurrency = 2", "concurrency = 3"),
    );
    wait_for_sample(
        &addr,
        r#"evhost_plugin_reloads_total{plugin="echo",result="reloaded"}"#,
        1,
        &host,
    )
    .await;
    let (_, body) = get(&addr, "/metrics").await;
    assert_eq!(
        body.lines()
            .filter(|l| l.starts_with("evhost_plugin_info{"))
            .count(),
        1,
        "one info series, for the version serving:\n{body}"
    );
}
