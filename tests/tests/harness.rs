//! Self-tests of the harness: the parts every other test stands on, checked
//! against a real nats-server and the build script's real output, without
//! needing the evhost binary.

use std::time::Duration;

use evhost_tests::{
    LogLine, NatsServer, WAIT, connect, free_port, mentions_line_column, nats_server_bin, wasm,
};
use futures::StreamExt;

/// The header of a WebAssembly component (not a core module): magic, then
/// version 0x0d and layer 1.
const COMPONENT_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

#[test]
fn build_script_produced_every_test_plugin_as_a_component() {
    for name in [
        "echo", "echo-v2", "flaky", "panicker", "spinner", "membomb", "snoop", "bigout",
    ] {
        let path = wasm(name);
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes.starts_with(&COMPONENT_PREAMBLE),
            "{} is not a WebAssembly component (starts with {:02x?})",
            path.display(),
            &bytes[..bytes.len().min(8)]
        );
    }
    // The two builds of echo differ (their replies say different versions).
    assert_ne!(
        std::fs::read(wasm("echo")).unwrap(),
        std::fs::read(wasm("echo-v2")).unwrap(),
        "echo.wasm and echo-v2.wasm are the same file"
    );
}

#[test]
fn build_script_produced_the_example_plugins() {
    for name in ["payment", "inventory", "audit", "noop"] {
        let bytes = std::fs::read(wasm(name)).unwrap();
        assert!(
            bytes.starts_with(&COMPONENT_PREAMBLE),
            "{name}.wasm is not a component"
        );
    }
}

#[test]
fn the_nats_server_found_runs_and_is_a_jetstream_version() {
    let out = std::process::Command::new(nats_server_bin())
        .arg("--version")
        .output()
        .expect("run nats-server --version");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "nats-server --version failed: {out:?}"
    );
    // "nats-server: v2.9.10": JetStream key-value needs 2.6 or later.
    let version = text
        .trim()
        .rsplit('v')
        .next()
        .and_then(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or_else(|| panic!("no version in {text:?}"));
    assert!(version >= (2, 6), "nats-server {text} is too old");
}

#[test]
fn a_free_port_can_be_listened_on() {
    for _ in 0..20 {
        let port = free_port();
        std::net::TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|err| panic!("free_port gave {port}, which cannot be bound: {err}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_server_carries_messages_and_restarts_on_its_port() {
    let mut server = NatsServer::start();
    assert_ne!(server.port(), 4222);
    let url = server.url();
    assert_eq!(url, format!("nats://127.0.0.1:{}", server.port()));

    let client = connect(&url).await;
    let mut sub = client.subscribe("harness.ping").await.unwrap();
    client.flush().await.unwrap();
    client.publish("harness.ping", "one".into()).await.unwrap();
    client.flush().await.unwrap();
    let msg = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message within the wait")
        .expect("the subscription is open");
    assert_eq!(msg.payload.as_ref(), b"one");
    drop(sub);
    drop(client);

    server.restart();
    assert_eq!(server.url(), url, "restart keeps the port");
    let client = connect(&url).await;
    let mut sub = client.subscribe("harness.ping").await.unwrap();
    client.flush().await.unwrap();
    client.publish("harness.ping", "two".into()).await.unwrap();
    client.flush().await.unwrap();
    let msg = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message within the wait after restart")
        .expect("the subscription is open");
    assert_eq!(msg.payload.as_ref(), b"two");

    server.stop();
    assert!(
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], server.port())),
            Duration::from_secs(1)
        )
        .is_err(),
        "the server still accepts connections after stop()"
    );
}

#[test]
fn two_servers_get_two_ports() {
    let a = NatsServer::start();
    let b = NatsServer::start();
    assert_ne!(a.port(), b.port());
}

#[test]
fn log_lines_are_read_as_tracing_json() {
    let line = LogLine {
        raw: String::new(),
        json: Some(serde_json::json!({
            "timestamp": "2026-01-01T00:00:00Z",
            "level": "INFO",
            "fields": {"message": "plugin loaded", "plugin": "echo", "compile_ms": 12},
            "target": "evhost"
        })),
    };
    assert_eq!(line.message(), Some("plugin loaded"));
    assert_eq!(line.level(), Some("INFO"));
    assert!(line.is("plugin loaded", Some("echo")));
    assert!(line.is("plugin loaded", None));
    assert!(!line.is("plugin loaded", Some("flaky")));
    assert!(!line.is("plugin removed", None));
    assert_eq!(line.field_str("compile_ms").as_deref(), Some("12"));

    // A field recorded on a span counts too.
    let in_span = LogLine {
        raw: String::new(),
        json: Some(serde_json::json!({
            "level": "INFO",
            "fields": {"message": "echo: hi"},
            "span": {"plugin": "echo", "name": "handle"}
        })),
    };
    assert!(in_span.is("echo: hi", Some("echo")));
}

#[test]
fn line_and_column_are_recognised() {
    assert!(mentions_line_column("echo.toml:3:15: invalid type", 3));
    assert!(mentions_line_column(
        "TOML parse error at line 3, column 15",
        3
    ));
    assert!(!mentions_line_column("echo.toml:13:15: invalid type", 3));
    assert!(!mentions_line_column("echo.toml: invalid type", 3));
}
