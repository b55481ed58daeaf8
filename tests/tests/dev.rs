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
    /// Starts `evhost dev` on `dir`; in a process group of its own when
    /// `own_group` (as a shell runs a foreground job).
    async fn start(dir: &PluginDir, own_group: bool) -> Dev {
        use std::os::unix::process::CommandExt as _;
        let mut command = Command::new(evhost_bin());
        command
            .args(["dev", "--plugins"])
            .arg(dir.path())
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
    let group = dev.child.id() as i32;
    assert!(dev.store.is_dir(), "the store exists while dev runs");
    dev.echo(b"before ctrl-c").await;

    // Ctrl-C as a terminal sends it: to every process of the group.
    // SAFETY: signalling the process group we created.
    assert_eq!(unsafe { libc::kill(-group, libc::SIGINT) }, 0);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = dev.child.try_wait().expect("wait for evhost dev") {
            break status;
        }
        // Generous for a loaded machine; the host it replaces never exited.
        if started.elapsed() > Duration::from_secs(20) {
            let _ = dev.child.kill();
            dev.drain_lines();
            panic!(
                "evhost dev still running 20 s after Ctrl-C:\n{}",
                dev.seen.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    dev.drain_lines();
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
