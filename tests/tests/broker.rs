//! The broker going away and coming back.

use evhost_tests::{Host, NatsServer, PluginDir, WAIT, connect, echo_roundtrip};

#[tokio::test(flavor = "multi_thread")]
async fn host_serves_again_after_nats_server_restarts() {
    let mut nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("echo");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    {
        let client = connect(&nats.url()).await;
        assert_eq!(echo_roundtrip(&client, &host, "before restart").await, "1");
    }
    let connected = host.count_logs("connected to NATS", None);
    assert!(
        connected >= 1,
        "the host logs `connected to NATS`\n{}",
        host.log_report()
    );

    nats.restart();
    // Every connection the host has (one per shard and one for the rest)
    // connects again.
    host.wait_for_log_count("connected to NATS", None, 2 * connected, WAIT)
        .await;
    assert!(
        host.try_exit_status().is_none(),
        "the host must survive a broker restart\n{}",
        host.log_report()
    );
    let client = connect(&nats.url()).await;
    assert_eq!(echo_roundtrip(&client, &host, "after restart").await, "1");
}
