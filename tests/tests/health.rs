//! `/healthz` and `/readyz` on the `--metrics` listener: not ready while the
//! plugins are loading, while one waits for its stream, or while NATS is
//! down; ready once every plugin is served and again after NATS comes back;
//! healthy throughout.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use evhost_tests::python::python_wasm;
use evhost_tests::{
    Host, NatsServer, PluginDir, WAIT, connect, echo_roundtrip, free_port, next_message, subscribe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` at `addr`: the status code and body, or `None` while nothing
/// listens there.
async fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Polls `GET path` until it answers `code` with `body`; fails with the last
/// answer and the host's log.
async fn wait_for_answer(addr: &str, path: &str, code: u16, body: &str, host: &Host) {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    while Instant::now() < deadline {
        last = get(addr, path).await;
        if last.as_ref().is_some_and(|(c, b)| *c == code && b == body) {
            return;
        }
        if let Some(status) = host.try_exit_status() {
            panic!("evhost exited ({status})\n{}", host.log_report());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "GET {path} never answered {code} {body:?}; last answer: {last:?}\n{}",
        host.log_report()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_follows_loading_and_the_nats_connection_while_healthz_stays_up() {
    let mut nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("echo");
    // A Python component takes seconds to compile (with the compiled-code
    // cache off), so "loading" is a state the test can see.
    dir.add_as("echo-py", &python_wasm("echo-py"));
    let addr = format!("127.0.0.1:{}", free_port());
    let host = Host::start(
        &dir.path(),
        &nats.url(),
        &["--metrics", &addr, "--no-compile-cache"],
    );

    wait_for_answer(&addr, "/healthz", 200, "ok\n", &host).await;
    wait_for_answer(&addr, "/readyz", 503, "not ready: loading plugins\n", &host).await;
    assert_eq!(
        host.count_logs("host ready", None),
        0,
        "{}",
        host.log_report()
    );

    host.wait_for_log("host ready", None, Duration::from_secs(120))
        .await;
    wait_for_answer(&addr, "/readyz", 200, "ready\n", &host).await;
    let client = connect(&nats.url()).await;
    assert_eq!(echo_roundtrip(&client, &host, "ready").await, "1");

    nats.stop();
    wait_for_answer(
        &addr,
        "/readyz",
        503,
        "not ready: not connected to NATS\n",
        &host,
    )
    .await;
    wait_for_answer(&addr, "/healthz", 200, "ok\n", &host).await;

    nats.restart();
    wait_for_answer(&addr, "/readyz", 200, "ready\n", &host).await;
    let client = connect(&nats.url()).await;
    assert_eq!(echo_roundtrip(&client, &host, "back").await, "1");

    let (code, _) = get(&addr, "/nothing").await.expect("an answer");
    assert_eq!(code, 404);
}

/// A plugin whose stream is not there yet keeps the host not ready (its
/// version is not serving, and the host loads it again until it binds);
/// once the stream is made and the plugin binds, the host is ready. A
/// plugin rejected for a broken file does not hold readiness back: the host
/// has done all it can with it.
#[tokio::test(flavor = "multi_thread")]
async fn readyz_waits_for_a_plugin_whose_stream_is_not_there_yet() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = PluginDir::new();
    dir.add_with_manifest("echo", "[jetstream]\nstream = \"IN\"\n");
    dir.add("counter");
    dir.write_atomic("broken.wasm", b"not a component");
    let addr = format!("127.0.0.1:{}", free_port());
    let host = Host::start(&dir.path(), &nats.url(), &["--metrics", &addr]);

    host.wait_for_log("host ready", None, WAIT).await;
    let waiting = "not ready: waiting to bind echo (its stream or JetStream not available yet; tried again)\n";
    wait_for_answer(&addr, "/readyz", 503, waiting, &host).await;
    // Still waiting after a retry; counter serves meanwhile.
    host.wait_for_log_count("plugin rejected", Some("echo"), 2, WAIT)
        .await;
    wait_for_answer(&addr, "/readyz", 503, waiting, &host).await;
    let mut counts = subscribe(&client, "test.counter.out").await;
    evhost_tests::publish(&client, "test.counter", &[], b"").await;
    next_message(&mut counts, WAIT, "counter's answer", &host).await;

    jetstream::new(client.clone())
        .get_or_create_stream(jetstream::stream::Config {
            name: "IN".into(),
            subjects: vec!["test.echo".into()],
            ..Default::default()
        })
        .await
        .expect("create the IN stream");
    host.wait_for_log("plugin loaded", Some("echo"), WAIT).await;
    wait_for_answer(&addr, "/readyz", 200, "ready\n", &host).await;
    assert_eq!(
        host.count_logs("plugin rejected", Some("broken")),
        1,
        "{}",
        host.log_report()
    );
}
