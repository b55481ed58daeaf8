//! Isolation and sharing: whether instances keep state between messages,
//! and several hosts splitting one plugin's messages through its queue group.

use evhost_tests::*;

/// Sends `n` messages one after the other and returns the counter's replies.
async fn counts(client: &async_nats::Client, host: &Host, n: usize) -> Vec<String> {
    let mut out = subscribe(client, "test.counter.out").await;
    let mut replies = Vec::new();
    for _ in 0..n {
        publish(client, "test.counter", &[], b"tick").await;
        let reply = next_message(&mut out, WAIT, "a counter reply", host).await;
        replies.push(String::from_utf8_lossy(&reply.payload).to_string());
    }
    replies
}

#[tokio::test(flavor = "multi_thread")]
async fn reuse_keeps_an_instance_warm_and_recycles_it() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "counter",
        "[limits]\nconcurrency = 1\nisolation = \"reuse\"\nrecycle_after = 3\n",
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let client = connect(&nats.url()).await;
    // The load-time check instance counts nothing; a recycled one starts over.
    assert_eq!(
        counts(&client, &host, 7).await,
        ["1", "2", "3", "1", "2", "3", "1"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn message_isolation_gives_every_message_a_fresh_instance() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "counter",
        "[limits]\nconcurrency = 1\nisolation = \"message\"\n",
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let client = connect(&nats.url()).await;
    assert_eq!(counts(&client, &host, 4).await, ["1", "1", "1", "1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hosts_in_one_queue_group_split_the_messages() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add_with_manifest("echo", "[config]\nsleep_ms = 2\n");
    let hosts = [
        Host::start_ready(&dir.path(), &nats.url()).await,
        Host::start_ready(&dir.path(), &nats.url()).await,
    ];
    let client = connect(&nats.url()).await;
    let mut out = subscribe(&client, "test.echo.out").await;
    let n = 200;
    for i in 0..n {
        publish(&client, "test.echo", &[], format!("m{i}").as_bytes()).await;
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..n {
        let reply = next_message(&mut out, WAIT, "an echo reply", &hosts[0]).await;
        assert!(
            seen.insert(reply.payload.to_vec()),
            "answered twice: {}",
            describe(&reply)
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(pending_message(&mut out).is_none(), "no extra replies");
    let calls: Vec<usize> = hosts
        .iter()
        .map(|h| {
            h.find_logs(|l| l.message().is_some_and(|m| m.starts_with("echo: sleeping")))
                .len()
        })
        .collect();
    assert_eq!(
        calls.iter().sum::<usize>(),
        n,
        "each message handled by exactly one host: {calls:?}"
    );
    assert!(
        calls.iter().all(|c| *c > 0),
        "both hosts took a share: {calls:?}"
    );
}
