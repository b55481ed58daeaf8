//! `GET /plugins` on the `--metrics` listener, and `evhost status` printing
//! it: each plugin with its version, subjects, mode and counters; a broken
//! file dropped over a serving plugin shows as its last error (the file and
//! the cause) while the old version keeps serving; a plugin that never
//! loaded shows as rejected.

use std::time::{Duration, Instant};

use evhost_tests::{
    Host, NatsServer, PluginDir, WAIT, connect, echo_roundtrip, evhost, free_port, plugin_entry,
    plugins_json, wasm,
};
use serde_json::Value;

/// Polls `/plugins` until `check` accepts `name`'s entry; fails with the
/// last answer and the host's log.
async fn wait_for_entry(
    addr: &str,
    host: &Host,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let plugins = plugins_json(addr, host).await;
        if let Some(entry) = plugin_entry(&plugins, name)
            && check(entry)
        {
            return entry.clone();
        }
        if Instant::now() >= deadline {
            panic!(
                "/plugins never showed {what} for {name}; last: {plugins:#}\n{}",
                host.log_report()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_shows_versions_counters_and_why_a_dropped_file_is_not_serving() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("echo");
    let addr = format!("127.0.0.1:{}", free_port());
    let host = Host::start(&dir.path(), &nats.url(), &["--metrics", &addr]);
    let loaded = host.wait_for_log("plugin loaded", Some("echo"), WAIT).await;
    let version = loaded.field_str("version").expect("a version in the log");
    host.wait_for_log("host ready", None, WAIT).await;
    let client = connect(&nats.url()).await;
    for i in 0..3 {
        assert_eq!(echo_roundtrip(&client, &host, &format!("m{i}")).await, "1");
    }

    let echo = wait_for_entry(&addr, &host, "echo", "ok = 3", |e| e["counters"]["ok"] == 3).await;
    assert_eq!(echo["status"], "serving", "{echo:#}");
    assert_eq!(echo["version"], version.as_str(), "{echo:#}");
    assert_eq!(
        echo["subjects"],
        serde_json::json!(["test.echo"]),
        "{echo:#}"
    );
    assert_eq!(echo["mode"], "core", "{echo:#}");
    assert_eq!(echo["queue_group"], "echo", "{echo:#}");
    assert_eq!(echo["counters"]["retried"], 0, "{echo:#}");
    assert_eq!(echo["counters"]["dead_letters"]["trap"], 0, "{echo:#}");
    assert_eq!(echo["last_error"], Value::Null, "{echo:#}");

    // A broken .wasm over the serving plugin: the error names the file and
    // the cause, and the old version keeps serving.
    dir.write_atomic("echo.wasm", b"\0asm not really a component");
    host.wait_for_log("plugin rejected", Some("echo"), WAIT)
        .await;
    let echo = wait_for_entry(&addr, &host, "echo", "a last error", |e| {
        !e["last_error"].is_null()
    })
    .await;
    let error = &echo["last_error"];
    assert_eq!(
        error["file"],
        dir.wasm_path("echo").display().to_string(),
        "{echo:#}"
    );
    assert!(
        !error["error"].as_str().unwrap_or("").trim().is_empty(),
        "{echo:#}"
    );
    assert_eq!(echo["status"], "serving", "{echo:#}");
    assert_eq!(echo["version"], version.as_str(), "{echo:#}");
    assert_eq!(echo_roundtrip(&client, &host, "still here").await, "1");

    // Put back: no error.
    dir.write_atomic("echo.wasm", &std::fs::read(wasm("echo")).unwrap());
    wait_for_entry(&addr, &host, "echo", "no last error", |e| {
        e["last_error"].is_null()
    })
    .await;

    // A broken manifest: its line, column and cause.
    dir.write_manifest("echo", "[limits]\ncolour = 1\n");
    let echo = wait_for_entry(&addr, &host, "echo", "the manifest's error", |e| {
        !e["last_error"].is_null()
    })
    .await;
    assert_eq!(
        echo["last_error"]["file"],
        dir.manifest_path("echo").display().to_string(),
        "{echo:#}"
    );
    let cause = echo["last_error"]["error"].as_str().unwrap_or("");
    assert!(cause.starts_with("2:1: unknown field `colour`"), "{echo:#}");
    assert_eq!(echo_roundtrip(&client, &host, "and still").await, "1");

    // A plugin that never loaded is listed as rejected.
    dir.write_atomic("ghost.wasm", b"nothing like wasm");
    let ghost = wait_for_entry(&addr, &host, "ghost", "rejected", |e| {
        e["status"] == "rejected"
    })
    .await;
    assert_eq!(ghost["version"], Value::Null, "{ghost:#}");
    assert_eq!(
        ghost["last_error"]["file"],
        dir.wasm_path("ghost").display().to_string()
    );

    // evhost status prints the same as a table, with the errors under it.
    wait_for_entry(&addr, &host, "echo", "ok = 5", |e| e["counters"]["ok"] == 5).await;
    let out = evhost(&["status", "--listen", &addr], None);
    out.assert_no_panic();
    assert_eq!(out.code, Some(0), "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("PLUGIN"), "{out}");
    let row = |name: &str| {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    let echo_row = row("echo");
    assert_eq!(echo_row[1], "serving", "{out}");
    assert_eq!(echo_row[2], version, "{out}");
    assert_eq!(echo_row[3], "core", "{out}");
    assert_eq!(echo_row[4], "test.echo", "{out}");
    assert_eq!(echo_row[5], "5", "ok count\n{out}");
    assert_eq!(row("ghost")[1], "rejected", "{out}");
    assert!(
        out.stdout.contains(&format!(
            "echo: {} rejected at",
            dir.manifest_path("echo").display()
        )),
        "{out}"
    );
    let out = evhost(&["status", "--listen", &addr, "--json"], None);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(plugin_entry(&out.json(), "ghost").is_some(), "{out}");

    // Nothing listening: one line.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let out = evhost(&["status", "--listen", &nowhere], None);
    out.assert_no_panic();
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stderr_lines().len(), 1, "{out}");
    assert!(out.stderr.contains("cannot reach a host at"), "{out}");
}
