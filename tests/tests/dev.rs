//! `evhost dev`: the local loop starts its own nats-server, serves the
//! plugin folder against it, and stops the server on exit.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use evhost_tests::*;
use futures::StreamExt;

#[tokio::test(flavor = "multi_thread")]
async fn dev_starts_a_server_serves_the_folder_and_stops_it() {
    let dir = PluginDir::new();
    dir.add("echo");
    let mut child = Command::new(evhost_bin())
        .args(["dev", "--plugins"])
        .arg(dir.path())
        .env_remove("RUST_BACKTRACE")
        .env("EVHOST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run evhost dev");
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let mut url = None;
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(1), lines.recv()).await
        else {
            continue;
        };
        if let Some(rest) = line.split("listening at ").nth(1) {
            url = Some(rest.trim().to_string());
        }
        let ready = line.contains("host ready");
        seen.push(line);
        if ready {
            break;
        }
    }
    let url =
        url.unwrap_or_else(|| panic!("dev did not print the server's URL:\n{}", seen.join("\n")));
    assert!(
        url.starts_with("nats://127.0.0.1:") && !url.ends_with(":4222"),
        "its own server on a free port: {url}"
    );

    let client = connect(&url).await;
    let mut out = subscribe(&client, "test.echo.out").await;
    publish(&client, "test.echo", &[], b"hello dev").await;
    let reply = tokio::time::timeout(WAIT, out.next())
        .await
        .expect("a reply")
        .expect("subscription open");
    assert_eq!(reply.payload.as_ref(), b"hello dev");
    drop(out);
    drop(client);

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait for evhost dev");
    assert!(status.success(), "{status}");
    let port = url.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
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
