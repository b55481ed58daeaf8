//! `evhost dev`: the local loop starts its own nats-server, serves the
//! plugin folder against it, and stops the server on exit.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use evhost_tests::*;
use futures::StreamExt;

/// A running `evhost dev` with its stderr read line by line, started and
/// waited on until `host ready`.
struct Dev {
    child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Every stderr line read so far.
    seen: Vec<String>,
    url: String,
    store: std::path::PathBuf,
}

impl Dev {
    /// Starts `evhost dev` on `dir`, on any free port; in a process group
    /// of its own when `own_group` (as a shell runs a foreground job).
    async fn start(dir: &PluginDir, own_group: bool) -> Dev {
        let mut command = Command::new(evhost_bin());
        command
            .args(["dev", "--port", "0", "--plugins"])
            .arg(dir.path());
        Dev::spawn(command, own_group).await
    }

    /// Runs `command` (an `evhost dev`) and waits for `host ready`.
    async fn spawn(mut command: Command, own_group: bool) -> Dev {
        use std::os::unix::process::CommandExt as _;
        command
            .env_remove("RUST_BACKTRACE")
            .env("EVHOST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if own_group {
            command.process_group(0);
        }
        let mut child = command.spawn().expect("run evhost dev");
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut seen: Vec<String> = Vec::new();
        let (mut url, mut store) = (None, None);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline && !seen.iter().any(|l| l.contains("host ready")) {
            if let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(1), lines.recv()).await
            {
                if let Some(rest) = line.split("listening at ").nth(1) {
                    url = Some(rest.trim().to_string());
                }
                if let Some(rest) = line.split("JetStream store in ").nth(1) {
                    store = Some(std::path::PathBuf::from(rest.trim()));
                }
                seen.push(line);
            }
        }
        match (url, store) {
            (Some(url), Some(store)) if seen.iter().any(|l| l.contains("host ready")) => Dev {
                child,
                lines,
                seen,
                url,
                store,
            },
            _ => panic!(
                "dev did not start (URL, store, host ready):\n{}",
                seen.join("\n")
            ),
        }
    }

    /// Sends Ctrl-C as a terminal does (to the whole process group; the
    /// child must lead its own) and waits for the exit; fails with the log
    /// when it takes more than 20 s.
    async fn ctrl_c(&mut self) -> std::process::ExitStatus {
        let group = self.child.id() as i32;
        // SAFETY: signalling the process group we created.
        assert_eq!(unsafe { libc::kill(-group, libc::SIGINT) }, 0);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for evhost dev") {
                tokio::time::sleep(Duration::from_millis(200)).await;
                self.drain_lines();
                return status;
            }
            // Generous for a loaded machine; the host it replaces never exited.
            if started.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
                self.drain_lines();
                panic!(
                    "evhost dev still running 20 s after Ctrl-C:\n{}",
                    self.seen.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Reads the stderr lines that have arrived.
    fn drain_lines(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Publishes to echo and waits for the reply.
    async fn echo(&self, payload: &[u8]) {
        let client = connect(&self.url).await;
        let mut out = subscribe(&client, "test.echo.out").await;
        publish(&client, "test.echo", &[], payload).await;
        let reply = tokio::time::timeout(WAIT, out.next())
            .await
            .expect("a reply")
            .expect("subscription open");
        assert_eq!(reply.payload.as_ref(), payload);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_starts_a_server_serves_the_folder_and_stops_it() {
    let dir = PluginDir::new();
    dir.add("echo");
    let mut dev = Dev::start(&dir, false).await;
    assert!(
        dev.url.starts_with("nats://127.0.0.1:") && !dev.url.ends_with(":4222"),
        "its own server on a free port: {}",
        dev.url
    );
    dev.echo(b"hello dev").await;

    // SAFETY: signalling our own child.
    unsafe { libc::kill(dev.child.id() as i32, libc::SIGTERM) };
    let status = dev.child.wait().expect("wait for evhost dev");
    assert!(status.success(), "{status}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", dev.port())).is_err(),
        "the server stopped with evhost dev"
    );
}

#[test]
fn dev_without_nats_server_says_how_to_install_it() {
    let dir = PluginDir::new();
    let out = Command::new(evhost_bin())
        .args([
            "dev",
            "--nats-server",
            "/nonexistent/nats-server",
            "--plugins",
        ])
        .arg(dir.path())
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run evhost dev");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("apt-get install nats-server"), "{err}");
}

/// A terminal's Ctrl-C goes to the whole foreground process group. Before the
/// fix the dev nats-server, in the same group, died first and the host looped
/// on reconnects forever.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_to_the_terminal_group_ends_dev_and_removes_its_store() {
    let dir = PluginDir::new();
    dir.add("echo");
    let mut dev = Dev::start(&dir, true).await;
    assert!(dev.store.is_dir(), "the store exists while dev runs");
    dev.echo(b"before ctrl-c").await;

    let status = dev.ctrl_c().await;
    let seen = &dev.seen;
    let store = &dev.store;
    assert!(status.success(), "{status}\n{}", seen.join("\n"));
    assert!(
        !seen.iter().any(|l| l.contains("disconnected from NATS")),
        "the server outlived the host's drain (the terminal's Ctrl-C must not reach it):\n{}",
        seen.join("\n")
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", dev.port())).is_err(),
        "no nats-server left behind"
    );
    assert!(!store.exists(), "the store {} is removed", store.display());
    assert!(
        seen.iter().any(|l| l.contains("removed its store")),
        "dev says it removed the store:\n{}",
        seen.join("\n")
    );
}

/// `evhost run` whose server is gone still exits once `--drain-timeout` has
/// passed, rather than waiting for a reconnect that never comes.
#[tokio::test(flavor = "multi_thread")]
async fn run_exits_after_the_drain_timeout_when_nats_is_gone() {
    let mut nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("echo");
    let host = Host::start(&dir.path(), &nats.url(), &["--drain-timeout", "1s"]);
    host.wait_for_log("host ready", None, WAIT).await;
    nats.stop();
    host.wait_for_log("disconnected from NATS; reconnecting", None, WAIT)
        .await;
    host.sigterm();
    // Drain (1 s) + the bounded flush (5 s), with room for a loaded machine.
    let status = host.wait_exit(Duration::from_secs(30)).await;
    assert!(
        host.logs().contains("stopped"),
        "the host says it stopped ({status})\n{}",
        host.log_report()
    );
}

/// The repository's root, where the README and `examples/` live.
fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_path_buf()
}

/// Every command of the README's "Quick start" section, in order: the lines
/// of its ```sh blocks, split into words. Fails when one is not an `evhost`
/// command (the test could not run it) or needs a shell to split.
fn quick_start_commands(readme: &str) -> Vec<Vec<String>> {
    let section = readme
        .split("\n## Quick start\n")
        .nth(1)
        .expect("the README has a `## Quick start` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in section.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            command if in_sh && !command.is_empty() => {
                assert!(
                    command.starts_with("evhost ")
                        && !command.contains(['\'', '"', '$', '|', '&', ';', '\\']),
                    "the quick start's commands must be plain `evhost` commands this test runs: {command:?}"
                );
                commands.push(command.split_whitespace().map(str::to_string).collect());
            }
            _ => {}
        }
    }
    commands
}

/// The sorted keys of a JSON object.
fn keys(json: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = json
        .as_object()
        .expect("a JSON object")
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// How many messages the stream `name` holds (0 while it does not exist).
async fn stream_messages(js: &async_nats::jetstream::Context, name: &str) -> u64 {
    match js.get_stream(name).await {
        Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

/// Waits until the stream `name` holds `n` messages.
async fn wait_for_stream(js: &async_nats::jetstream::Context, name: &str, n: u64, dev: &mut Dev) {
    let deadline = Instant::now() + WAIT;
    while stream_messages(js, name).await < n {
        if Instant::now() > deadline {
            dev.drain_lines();
            panic!(
                "stream {name} never held {n} dead letters (has {}):\n{}",
                stream_messages(js, name).await,
                dev.seen.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// #21: the README's quick start, run command by command as written: `evhost
/// dev` (in its own process group, as a shell runs it), `evhost pub` of every
/// sample event, `dlq list` afterwards showing the malformed one, `dlq
/// replay`, and Ctrl-C. The commands run in a folder laid out like the
/// repository (`target/dev-plugins` holding the three plugins, the sample
/// events in `examples/events`), with `NATS_URL` set to the URL dev printed,
/// as the README says to do when port 4222 is taken.
#[tokio::test(flavor = "multi_thread")]
async fn the_readme_quick_start_runs_as_written() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README.md");
    let commands = quick_start_commands(&readme);
    assert!(
        commands
            .first()
            .is_some_and(|c| c[..2] == ["evhost", "dev"]),
        "the quick start starts with `evhost dev`: {commands:?}"
    );

    // Every sample event is published by the quick start.
    let events = root.join("examples/events");
    let mut samples: Vec<String> = std::fs::read_dir(&events)
        .expect("examples/events")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    samples.sort();
    assert!(samples.len() >= 6, "{samples:?}");
    for sample in &samples {
        let arg = format!("@examples/events/{sample}");
        assert!(
            commands
                .iter()
                .any(|c| c[..2] == ["evhost", "pub"] && c.contains(&arg)),
            "the quick start publishes {sample}"
        );
    }

    let work = tempfile::tempdir().expect("a working folder");
    let plugins = work.path().join("target/dev-plugins");
    std::fs::create_dir_all(&plugins).expect("create target/dev-plugins");
    for plugin in ["payment", "inventory", "audit"] {
        std::fs::copy(wasm(plugin), plugins.join(format!("{plugin}.wasm"))).expect("copy a plugin");
    }
    std::fs::create_dir_all(work.path().join("examples/events")).expect("create examples/events");
    for sample in &samples {
        std::fs::copy(
            events.join(sample),
            work.path().join("examples/events").join(sample),
        )
        .expect("copy a sample event");
    }

    let mut command = Command::new(evhost_bin());
    command.args(&commands[0][1..]).current_dir(work.path());
    let mut dev = Dev::spawn(command, true).await;
    assert!(
        dev.seen
            .iter()
            .any(|l| l.contains("evhost pub orders.order.created")),
        "dev says to publish with `evhost pub`:\n{}",
        dev.seen.join("\n")
    );
    let client = connect(&dev.url).await;
    let js = async_nats::jetstream::new(client.clone());
    let mut completed = subscribe(&client, "payments.payment.completed").await;
    let mut reserved = subscribe(&client, "inventory.reservation.created").await;
    let url = dev.url.clone();
    let env = [("NATS_URL", url.as_str())];
    let audited_orders = |dev: &Dev| {
        dev.seen
            .iter()
            .filter(|l| l.contains("audit orders.order.created (") && !l.contains("event_id="))
            .count()
    };
    let (mut listed, mut replayed, mut dead_letters) = (0, 0, 0u64);

    for command in &commands[1..] {
        let args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
        dev.drain_lines();
        let audited = audited_orders(&dev);
        let out = evhost_in(work.path(), &env, &args);
        out.assert_no_panic();
        dev.drain_lines();
        let shown = format!(
            "`{}`: {out}\n--- dev ---\n{}",
            command.join(" "),
            dev.seen.join("\n")
        );
        match args.as_slice() {
            ["pub", subject, "--payload", file] => {
                assert_eq!(out.code, Some(0), "{shown}");
                let sample: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(work.path().join(file.trim_start_matches('@'))).unwrap(),
                )
                .unwrap();
                if file.ends_with("malformed.json") {
                    // payment and inventory each dead-letter it.
                    dead_letters += 2;
                    wait_for_stream(&js, "DLQ", dead_letters, &mut dev).await;
                } else if *subject == "orders.order.created" {
                    // The order is handled: both answers come, shaped as the samples say.
                    for (sub, name) in [
                        (&mut completed, "payments.payment.completed.json"),
                        (&mut reserved, "inventory.reservation.created.json"),
                    ] {
                        let msg = tokio::time::timeout(WAIT, sub.next())
                            .await
                            .ok()
                            .flatten()
                            .unwrap_or_else(|| panic!("no answer like {name}: {shown}"));
                        let answer: serde_json::Value =
                            serde_json::from_slice(&msg.payload).unwrap();
                        let sample: serde_json::Value =
                            serde_json::from_slice(&std::fs::read(events.join(name)).unwrap())
                                .unwrap();
                        assert_eq!(
                            keys(&answer),
                            keys(&sample),
                            "{name} documents the real event"
                        );
                        assert_eq!(answer["causation_id"], sample["causation_id"]);
                    }
                    assert_eq!(sample["event_id"], "7d0b4c1e-3a52-4f5e-9c1a-0e6b2f8d4a10");
                }
            }
            ["dlq", "list", ..] => {
                assert_eq!(out.code, Some(0), "{shown}");
                listed += 1;
                let lines: Vec<&str> = out.stdout.lines().filter(|l| l.contains("kind=")).collect();
                assert_eq!(
                    lines.len() as u64,
                    dead_letters,
                    "one line per dead letter: {shown}"
                );
                for plugin in ["payment", "inventory"] {
                    assert!(
                        lines.iter().any(|l| l.contains("orders.order.created")
                            && l.contains("kind=permanent")
                            && l.contains(&format!("plugin={plugin}"))
                            && l.contains("missing field")),
                        "{plugin}'s dead letter of the malformed order: {shown}"
                    );
                }
                if args.contains(&"--payloads") {
                    assert!(
                        out.stdout
                            .lines()
                            .any(|l| l.contains("payload:") && l.contains("o-1002")),
                        "the malformed payload is shown: {shown}"
                    );
                }
            }
            ["dlq", "replay", ..] => {
                assert_eq!(out.code, Some(0), "{shown}");
                replayed += 1;
                assert!(out.stdout.contains("replayed 1 dead letter(s)"), "{shown}");
                // Republished to orders.order.created: audit sees it again,
                // and payment and inventory dead-letter it again.
                dead_letters += 1;
                wait_for_stream(&js, "DLQ", dead_letters, &mut dev).await;
                let deadline = Instant::now() + WAIT;
                while audited_orders(&dev) <= audited {
                    assert!(
                        Instant::now() < deadline,
                        "audit did not see the replay: {shown}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    dev.drain_lines();
                }
            }
            other => panic!("the test does not know what {other:?} should do; teach it"),
        }
    }
    assert!(
        listed >= 2 && replayed == 1,
        "the quick start lists, replays, lists"
    );

    let status = dev.ctrl_c().await;
    assert!(status.success(), "{status}\n{}", dev.seen.join("\n"));
    assert!(!dev.store.exists(), "the store is removed");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", dev.port())).is_err(),
        "no nats-server left behind"
    );
}

/// The README's handler example decodes the sample order: every field of
/// its `OrderCreated` is in `examples/events/orders.order.created.json`.
#[test]
fn the_readme_handler_decodes_the_sample_order() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README.md");
    let handler = readme
        .split("\n## A handler\n")
        .nth(1)
        .expect("a `## A handler` section");
    let body = handler
        .split("struct OrderCreated {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("the example has `struct OrderCreated { ... }`");
    let fields: Vec<&str> = body
        .split(',')
        .filter_map(|f| f.split(':').next())
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    let sample: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("examples/events/orders.order.created.json")).unwrap(),
    )
    .unwrap();
    assert!(fields.len() >= 6, "{fields:?}");
    for field in fields {
        assert!(
            sample.get(field).is_some(),
            "the README's OrderCreated.{field} is not in the sample order"
        );
    }
    let item = &sample["items"][0];
    for field in ["product_id", "quantity", "price_cents"] {
        assert!(item.get(field).is_some(), "items[].{field}");
    }
}
