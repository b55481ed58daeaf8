//! Shutdown: SIGTERM and SIGINT stop the host after it finishes what it has
//! started, publishing those messages' outputs, and it exits 0.

use std::collections::BTreeSet;

use evhost_tests::{Host, NatsServer, PluginDir, WAIT, connect, next_message, publish, subscribe};

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_messages_and_exits_zero() {
    const IN_FLIGHT: usize = 8;
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "echo",
        "[config]\nsleep_ms = 500\n\n[limits]\nconcurrency = 8\n",
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;

    let client = connect(&nats.url()).await;
    let mut out = subscribe(&client, "test.echo.out").await;
    for i in 0..IN_FLIGHT {
        publish(&client, "test.echo", &[], format!("drain-{i}").as_bytes()).await;
    }
    // In flight: each handler has logged that it started sleeping.
    host.wait_for_nth(
        &format!("{IN_FLIGHT} `echo: sleeping` lines from echo"),
        IN_FLIGHT,
        WAIT,
        |l| l.raw.contains("echo: sleeping") && l.field_str("plugin").as_deref() == Some("echo"),
    )
    .await;
    assert!(
        host.try_exit_status().is_none(),
        "the host exited early\n{}",
        host.log_report()
    );

    host.sigterm();

    let mut answered = BTreeSet::new();
    while answered.len() < IN_FLIGHT {
        let msg = next_message(
            &mut out,
            WAIT,
            &format!(
                "the replies of the {IN_FLIGHT} in-flight messages after SIGTERM (have {answered:?})"
            ),
            &host,
        )
        .await;
        let id = String::from_utf8_lossy(&msg.payload).into_owned();
        assert!(answered.insert(id.clone()), "{id} was answered twice");
    }
    let expected: BTreeSet<String> = (0..IN_FLIGHT).map(|i| format!("drain-{i}")).collect();
    assert_eq!(answered, expected);

    let status = host.wait_exit(WAIT).await;
    assert_eq!(
        status.code(),
        Some(0),
        "evhost exits 0 after SIGTERM ({status})\n{}",
        host.log_report()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_exits_zero() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("echo");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    host.sigint();
    let status = host.wait_exit(WAIT).await;
    assert_eq!(
        status.code(),
        Some(0),
        "evhost exits 0 after SIGINT ({status})\n{}",
        host.log_report()
    );
}

/// A SIGTERM while a plugin is still loading (a Python component compiles
/// for seconds, here with the compiled-code cache off) ends the host at once
/// instead of after the compile: before, the main loop awaited every load
/// and a first SIGTERM waited with it.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_long_load_exits_without_waiting_for_it() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add_as("echo-py", &evhost_tests::python::python_wasm("echo-py"));
    let host = Host::start(&dir.path(), &nats.url(), &["--no-compile-cache"]);
    host.wait_for_log("connected to NATS", None, WAIT).await;
    // Well into the compile, which takes 10 s and more here.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        host.count_logs("host ready", None),
        0,
        "{}",
        host.log_report()
    );
    let asked = std::time::Instant::now();
    host.sigterm();
    let status = host.wait_exit(std::time::Duration::from_secs(60)).await;
    let took = asked.elapsed();
    assert!(status.success(), "{status}\n{}", host.log_report());
    // It did not wait for the load: the plugin never finished loading.
    assert_eq!(
        host.count_logs("plugin loaded", Some("echo-py")),
        0,
        "exited {took:?} after SIGTERM, after the load\n{}",
        host.log_report()
    );
    assert!(
        took < std::time::Duration::from_secs(8),
        "exited {took:?} after SIGTERM\n{}",
        host.log_report()
    );
    assert_eq!(host.count_logs("host ready", None), 0);
}
