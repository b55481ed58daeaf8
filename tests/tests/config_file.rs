//! The host's configuration file, `evhost run --config evhost.toml`: a host
//! given nothing else serves; the environment overrides the file and flags
//! override both; a mistake in the file is one line with its line and
//! column; the file's `[limits]`, `[delivery]` and `[jetstream]` reach the
//! plugins whose manifests leave them out, and only those (`[jetstream]`
//! only JetStream plugins); the example in `deploy/`
//! starts a host; a `replicas` count the server cannot keep rejects the
//! plugin that would create a stream, and only that one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use evhost_tests::{
    Host, NatsServer, PluginDir, WAIT, connect, echo_roundtrip, evhost, free_port, http_get,
    next_dead_letter, plugin_entry, plugins_json, publish, subscribe, wasm,
};

/// Writes `text` as `evhost.toml` in `dir` and returns its path.
fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("evhost.toml");
    std::fs::write(&path, text).expect("write evhost.toml");
    path
}

fn addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Waits until `GET /healthz` at `addr` answers 200.
async fn wait_listening(addr: &str, host: &Host) {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if let Some((200, _)) = http_get(addr, "/healthz").await {
            return;
        }
        if let Some(status) = host.try_exit_status() {
            panic!("evhost exited ({status})\n{}", host.log_report());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing answers at {addr}\n{}", host.log_report());
}

/// Starts `evhost ARGS` with `env` and waits for `host ready`.
async fn start_ready(args: &[&str], env: &[(&str, &str)]) -> Host {
    let host = Host::start_args(args, env);
    host.wait_for_log("host ready", None, WAIT).await;
    host
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_file_alone_runs_a_host_and_the_environment_then_flags_override_it() {
    let nats = NatsServer::start();
    let url = nats.url();
    let client = connect(&url).await;
    let dir = PluginDir::new();
    dir.add("echo");
    let etc = tempfile::tempdir().unwrap();
    let (file_addr, env_addr, flag_addr) = (addr(), addr(), addr());
    // Relative paths start at the file's folder.
    std::fs::create_dir(etc.path().join("cache")).unwrap();
    let config = write_config(
        etc.path(),
        &format!(
            "plugins = {plugins:?}\nmetrics = {file_addr:?}\nlog_format = \"json\"\n\
             cache_dir = \"cache\"\n\n[nats]\nservers = [{url:?}]\n",
            plugins = dir.path().display().to_string(),
            url = nats.url(),
        ),
    );
    let config = config.to_str().unwrap();

    // The file alone.
    let host = start_ready(&["run", "--config", config], &[]).await;
    assert_eq!(echo_roundtrip(&client, &host, "from the file").await, "1");
    wait_listening(&file_addr, &host).await;
    let plugins = plugins_json(&file_addr, &host).await;
    assert!(plugin_entry(&plugins, "echo").is_some(), "{plugins}");
    let cached = std::fs::read_dir(etc.path().join("cache")).unwrap().count();
    assert!(cached > 0, "nothing in the cache_dir the file names");
    drop(host);

    // The environment over the file: another listener, another server list
    // (the file's names a server that is not there).
    let dead_end = "nats://127.0.0.1:1";
    let elsewhere = write_config(
        etc.path(),
        &std::fs::read_to_string(config)
            .unwrap()
            .replace(&nats.url(), dead_end),
    );
    assert_eq!(elsewhere.to_str().unwrap(), config);
    let env = [
        ("EVHOST_METRICS", env_addr.as_str()),
        ("NATS_URL", url.as_str()),
    ];
    let host = start_ready(&["run", "--config", config], &env).await;
    assert_eq!(echo_roundtrip(&client, &host, "from the env").await, "1");
    wait_listening(&env_addr, &host).await;
    assert!(
        http_get(&file_addr, "/healthz").await.is_none(),
        "the file's address answers although EVHOST_METRICS overrides it"
    );
    drop(host);

    // Flags over both.
    let env = [
        ("EVHOST_METRICS", env_addr.as_str()),
        ("NATS_URL", dead_end),
    ];
    let host = start_ready(
        &[
            "run",
            "--config",
            config,
            "--metrics",
            &flag_addr,
            "--nats",
            &url,
        ],
        &env,
    )
    .await;
    assert_eq!(echo_roundtrip(&client, &host, "from the flags").await, "1");
    wait_listening(&flag_addr, &host).await;
    assert!(
        http_get(&env_addr, "/healthz").await.is_none(),
        "EVHOST_METRICS's address answers although --metrics overrides it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mistake_in_the_config_file_is_one_line_with_its_line_and_column() {
    let etc = tempfile::tempdir().unwrap();
    for (text, expected) in [
        (
            "plugins = \"/srv/plugins\"\nplugns = \"/srv/other\"\n",
            ":2:1: unknown field `plugns`",
        ),
        ("drain_timeout = 30\n", ":1:17: invalid type: integer `30`"),
        (
            "plugins = \"p\"\n\n[limits]\nconcurrency = 0\n",
            ":4:15: limits.concurrency must be between 1 and 10000, not 0",
        ),
        (
            "[delivery]\nack_wait = \"5s\"\n",
            ":2:1: unknown field `ack_wait`",
        ),
        (
            "plugins = \"p\"\nreplicas = 9\n",
            ":2:12: replicas: replicas must be a whole number from 1 to 5",
        ),
    ] {
        let config = write_config(etc.path(), text);
        let out = evhost(&["run", "--config", config.to_str().unwrap()], None);
        out.assert_no_panic();
        assert_eq!(out.code, Some(1), "{text:?}\n{out}");
        let lines = out.stderr_lines();
        assert_eq!(lines.len(), 1, "{text:?}: one line\n{out}");
        let want = format!("error: {}{expected}", config.display());
        assert!(
            lines[0].starts_with(&want),
            "{text:?}: {:?}\nwant {want:?}",
            lines[0]
        );
    }
    // No plugins folder anywhere: a usage mistake, exit 2.
    let config = write_config(etc.path(), "metrics = \"127.0.0.1:0\"\n");
    let out = evhost(&["run", "--config", config.to_str().unwrap()], None);
    assert_eq!(out.code, Some(2), "{out}");
    assert_eq!(out.stderr_lines().len(), 1, "{out}");
    assert!(out.stderr.contains("no plugins folder"), "{out}");
    let out = evhost(&["run", "--config", "/nonexistent/evhost.toml"], None);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr
            .starts_with("error: /nonexistent/evhost.toml: cannot read the configuration file"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_files_plugin_defaults_apply_where_a_manifest_is_silent_and_only_there() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    // spinner never returns: its dead letter says which time limit and how
    // many attempts it had.
    dir.add("spinner");
    dir.add_as("spinner-own", &wasm("spinner"));
    dir.write_manifest(
        "spinner-own",
        "subjects = [\"test.spin.own\"]\n\n[limits]\ntimeout_ms = 700\n\n[delivery]\nmax_attempts = 1\n",
    );
    // A JetStream plugin takes the file's [jetstream] ack_wait; a second
    // one sets its own.
    for (name, own) in [("echo-js", ""), ("echo-js-own", "ack_wait = \"4s\"\n")] {
        dir.add_as(name, &wasm("echo"));
        dir.write_manifest(
            name,
            &format!(
                "subjects = [\"test.{name}\"]\n[jetstream]\nstream = \"IN\"\n\
                 create_stream = true\nstream_subjects = [\"test.echo-js\", \"test.echo-js-own\"]\n{own}"
            ),
        );
    }
    let etc = tempfile::tempdir().unwrap();
    let listen = addr();
    let config = write_config(
        etc.path(),
        &format!(
            "plugins = {plugins:?}\nmetrics = {listen:?}\nlog_format = \"json\"\n\n\
             [nats]\nservers = {url:?}\n\n\
             [limits]\ntimeout_ms = 200\n\n[delivery]\nmax_attempts = 2\nbackoff = \"10ms\"\n\n\
             [jetstream]\nack_wait = \"7s\"\n",
            plugins = dir.path().display().to_string(),
            url = nats.url(),
        ),
    );
    let host = start_ready(&["run", "--config", config.to_str().unwrap()], &[]).await;
    let client = connect(&nats.url()).await;

    let mut dead = subscribe(&client, "dlq.test.spin").await;
    publish(&client, "test.spin", &[], b"spin").await;
    let letter = next_dead_letter(&mut dead, "spinner's dead letter", &host).await;
    letter.assert_about("test.spin", "spinner", "timeout", 2, &host);
    assert!(letter.error.contains("200 ms"), "{:?}", letter.error);

    let mut dead = subscribe(&client, "dlq.test.spin.own").await;
    publish(&client, "test.spin.own", &[], b"spin").await;
    let letter = next_dead_letter(&mut dead, "spinner-own's dead letter", &host).await;
    letter.assert_about("test.spin.own", "spinner-own", "timeout", 1, &host);
    assert!(letter.error.contains("700 ms"), "{:?}", letter.error);

    let plugins = plugins_json(&listen, &host).await;
    let limits = |name: &str| {
        let p = plugin_entry(&plugins, name).unwrap_or_else(|| panic!("{name}: {plugins}"));
        (
            p["limits"]["timeout_ms"].as_u64(),
            p["delivery"]["max_attempts"].as_u64(),
            p["limits"]["concurrency"].as_u64(),
        )
    };
    assert_eq!(limits("spinner"), (Some(200), Some(2), Some(16)));
    assert_eq!(limits("spinner-own"), (Some(700), Some(1), Some(16)));
    // The file's [jetstream] made no core plugin a JetStream one.
    let mode = |name: &str| plugin_entry(&plugins, name).unwrap()["mode"].clone();
    assert_eq!(mode("spinner"), "core", "{plugins}");
    assert_eq!(mode("echo-js"), "jetstream", "{plugins}");
    // The server's consumers carry the file's ack_wait, or the manifest's own.
    let js = async_nats::jetstream::new(client.clone());
    for (subject, ack_wait) in [("test.echo-js", 7), ("test.echo-js-own", 4)] {
        let mut consumer = evhost_tests::consumer_of(&js, "IN", subject).await;
        let info = consumer.info().await.expect("consumer info");
        assert_eq!(
            info.config.ack_wait,
            Duration::from_secs(ack_wait),
            "{subject}"
        );
    }
}

/// The example `deploy/evhost.toml` starts a host: everything but what
/// differs on a test machine (the plugins folder, the servers, the
/// credentials, the listener, the cache) comes from it.
#[tokio::test(flavor = "multi_thread")]
async fn the_deploy_example_config_runs_a_host() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/evhost.toml");
    let text = std::fs::read_to_string(&example).expect("deploy/evhost.toml");
    let nats = NatsServer::start_with_config(
        r#"authorization { users = [ { user: evhost, password: "example-secret" } ] }"#,
    );
    let dir = PluginDir::new();
    dir.add("echo");
    let listen = addr();
    let cache = tempfile::tempdir().unwrap();
    let url = nats.url();
    let host = start_ready(
        &[
            "run",
            "--config",
            example.to_str().unwrap(),
            "--plugins",
            dir.path().to_str().unwrap(),
            "--nats",
            &url,
            "--user",
            "evhost",
            "--password",
            "example-secret",
            "--metrics",
            &listen,
            "--cache-dir",
            cache.path().to_str().unwrap(),
            "--log-format",
            "json",
        ],
        &[],
    )
    .await;
    let client = async_nats::ConnectOptions::with_user_and_password(
        "evhost".into(),
        "example-secret".into(),
    )
    .connect(&url)
    .await
    .expect("the test client connects");
    assert_eq!(echo_roundtrip(&client, &host, "deployed").await, "1");
    // The example's own plugin defaults are in force.
    let plugins = plugins_json(&listen, &host).await;
    let echo = plugin_entry(&plugins, "echo").expect("echo listed");
    let timeout = text
        .lines()
        .find_map(|l| l.strip_prefix("timeout_ms = "))
        .expect("the example sets [limits] timeout_ms");
    assert_eq!(
        echo["limits"]["timeout_ms"].as_u64(),
        Some(timeout.trim().parse().unwrap()),
        "{plugins}"
    );
}

/// `replicas = 3` in the file against a single server: the plugin that
/// would create a stream is rejected with one line naming the stream and
/// the server's reason; the host keeps serving the others; a flag of 1
/// overrides the file.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_a_single_server_cannot_keep_reject_the_plugin_that_creates_a_stream() {
    let nats = NatsServer::start();
    let url = nats.url();
    let client = connect(&url).await;
    let dir = PluginDir::new();
    dir.add("echo");
    dir.add_with_manifest(
        "counter",
        "[jetstream]\nstream = \"COUNTS\"\ncreate_stream = true\nstream_subjects = [\"test.counter\"]\n",
    );
    let etc = tempfile::tempdir().unwrap();
    let config = write_config(
        etc.path(),
        &format!(
            "plugins = {:?}\nlog_format = \"json\"\nreplicas = 3\n",
            dir.path().display().to_string()
        ),
    );
    let config = config.to_str().unwrap();

    let host = start_ready(&["run", "--config", config, "--nats", &url], &[]).await;
    let rejected = host
        .wait_for_log("plugin rejected", Some("counter"), WAIT)
        .await;
    let error = rejected.field_str("error").unwrap_or_default();
    assert!(
        error.contains("cannot create stream COUNTS") && error.contains("replicas"),
        "{error}\n{}",
        host.log_report()
    );
    assert!(!error.contains('\n'), "{error}");
    assert_eq!(echo_roundtrip(&client, &host, "still served").await, "1");
    let js = async_nats::jetstream::new(client.clone());
    assert!(js.get_stream("COUNTS").await.is_err(), "COUNTS was made");
    drop(host);

    // The flag over the file: one replica, which the server keeps.
    let host = start_ready(
        &["run", "--config", config, "--nats", &url, "--replicas", "1"],
        &[],
    )
    .await;
    assert_eq!(
        host.count_logs("plugin rejected", None),
        0,
        "{}",
        host.log_report()
    );
    let mut counts = js.get_stream("COUNTS").await.expect("COUNTS made");
    assert_eq!(counts.info().await.unwrap().config.num_replicas, 1);
}
