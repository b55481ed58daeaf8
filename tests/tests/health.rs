//! `/healthz` and `/readyz` on the `--metrics` listener: not ready while the
//! plugins are loading or NATS is down, ready once every plugin is served
//! and again after NATS comes back; healthy throughout.

use std::ffi::CString;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::time::{Duration, Instant};

use evhost_tests::{Host, NatsServer, PluginDir, WAIT, connect, echo_roundtrip, free_port, wasm};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` at `addr`: the status code and body, or `None` while nothing
/// listens there.
async fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Polls `GET path` until it answers `code` with `body`; fails with the last
/// answer and the host's log.
async fn wait_for_answer(addr: &str, path: &str, code: u16, body: &str, host: &Host) {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    while Instant::now() < deadline {
        last = get(addr, path).await;
        if last.as_ref().is_some_and(|(c, b)| *c == code && b == body) {
            return;
        }
        if let Some(status) = host.try_exit_status() {
            panic!("evhost exited ({status})\n{}", host.log_report());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "GET {path} never answered {code} {body:?}; last answer: {last:?}\n{}",
        host.log_report()
    );
}

/// Makes a named pipe at `path`: reading it blocks until a writer comes.
fn mkfifo(path: &std::path::Path) {
    let c = CString::new(path.as_os_str().as_bytes()).expect("a path without NUL");
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

/// Opens the pipe for writing once the host has it open for reading
/// (failing after [`WAIT`] rather than blocking for ever).
async fn open_writer(path: &std::path::Path) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::os::unix::io::AsRawFd as _;
    let deadline = Instant::now() + WAIT;
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(file) => {
                // Blocking writes from here on.
                // SAFETY: fcntl on a descriptor this function owns.
                let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, 0) };
                assert_eq!(rc, 0, "fcntl: {}", std::io::Error::last_os_error());
                return file;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("the host never opened the plugin pipe for reading: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_follows_loading_and_the_nats_connection_while_healthz_stays_up() {
    let mut nats = NatsServer::start();
    let dir = PluginDir::new();
    // echo.wasm is a named pipe: the host's first load waits on it until the
    // test writes the plugin, so "loading" is a state the test can see.
    let pipe = dir.wasm_path("echo");
    mkfifo(&pipe);
    let addr = format!("127.0.0.1:{}", free_port());
    let host = Host::start(&dir.path(), &nats.url(), &["--metrics", &addr]);

    wait_for_answer(&addr, "/healthz", 200, "ok\n", &host).await;
    wait_for_answer(&addr, "/readyz", 503, "not ready: loading plugins\n", &host).await;
    assert_eq!(
        host.count_logs("host ready", None),
        0,
        "{}",
        host.log_report()
    );

    // Hand the plugin over: open the pipe (the host is reading it), put a
    // regular copy in its place so later reads see a file, then write.
    let bytes = std::fs::read(wasm("echo")).expect("read echo.wasm");
    let mut writer = open_writer(&pipe).await;
    dir.write_atomic("echo.wasm", &bytes);
    writer
        .write_all(&bytes)
        .expect("write the plugin into the pipe");
    drop(writer);

    host.wait_for_log("host ready", None, WAIT).await;
    wait_for_answer(&addr, "/readyz", 200, "ready\n", &host).await;
    let client = connect(&nats.url()).await;
    assert_eq!(echo_roundtrip(&client, &host, "ready").await, "1");

    nats.stop();
    wait_for_answer(
        &addr,
        "/readyz",
        503,
        "not ready: not connected to NATS\n",
        &host,
    )
    .await;
    wait_for_answer(&addr, "/healthz", 200, "ok\n", &host).await;

    nats.restart();
    wait_for_answer(&addr, "/readyz", 200, "ready\n", &host).await;
    let client = connect(&nats.url()).await;
    assert_eq!(echo_roundtrip(&client, &host, "back").await, "1");

    let (code, _) = get(&addr, "/nothing").await.expect("an answer");
    assert_eq!(code, 404);
}
