//! The sandbox: no filesystem, environment, arguments or network; clocks and
//! random numbers work.

use evhost_tests::{Host, NatsServer, PluginDir, WAIT, connect, next_message, publish, subscribe};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn handlers_cannot_reach_files_env_args_or_network() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    // Point the connection attempt at this test's own nats-server, which
    // certainly listens: only the sandbox can make it fail.
    dir.add_with_manifest(
        "snoop",
        &format!("[config]\naddr = \"127.0.0.1:{}\"\n", nats.port()),
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut out = subscribe(&client, "test.snoop.out").await;
    publish(&client, "test.snoop", &[], b"report").await;
    let msg = next_message(&mut out, WAIT, "snoop's report", &host).await;
    let report: Value = serde_json::from_slice(&msg.payload).unwrap_or_else(|e| {
        panic!(
            "snoop's report is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&msg.payload)
        )
    });
    let probe = |name: &str| -> (bool, String) {
        let p = &report[name];
        let ok = p["ok"]
            .as_bool()
            .unwrap_or_else(|| panic!("report has no probe {name}: {report:#}"));
        (ok, p["detail"].as_str().unwrap_or_default().to_string())
    };

    for denied in [
        "read_file",
        "read_dir_cwd",
        "read_dir_root",
        "write_file",
        "env",
        "args",
        "tcp_connect",
        "dns",
    ] {
        let (ok, detail) = probe(denied);
        assert!(
            !ok,
            "the sandbox let `{denied}` through ({detail}); full report: {report:#}\n{}",
            host.log_report()
        );
    }
    for allowed in ["wall_clock", "monotonic_clock", "random"] {
        let (ok, detail) = probe(allowed);
        assert!(
            ok,
            "`{allowed}` should work in the sandbox but failed: {detail}; full report: {report:#}\n{}",
            host.log_report()
        );
    }
}
