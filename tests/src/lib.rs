//! The harness for evhost's end-to-end tests.
//!
//! Every part is real: a `nats-server` process per test ([`NatsServer`]), the
//! `evhost` binary per test ([`Host`]), and plugins compiled to
//! `wasm32-wasip2` by this crate's build script ([`wasm`]), copied into a
//! temporary plugins folder ([`PluginDir`]). Dropping a [`NatsServer`] or a
//! [`Host`] kills its process.
//!
//! Waits take an upper bound ([`WAIT`]) and fail with what was awaited and the
//! host's captured log; nothing here asserts how fast anything is.

pub mod certs;
pub mod component_cache;
pub mod javascript;
pub mod provider;
pub mod python;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::{Client, HeaderMap, Message, Subscriber};
use futures::StreamExt;
use serde_json::Value;

/// The upper bound for anything a test waits for. Expected events arrive far
/// sooner; this only decides when a test gives up.
pub const WAIT: Duration = Duration::from_secs(20);

/// The path of a plugin built by the build script: `NAME.wasm`, NAME being the
/// plugin's folder under `plugins/` or `tests/plugins/`; `echo-v2` is the
/// second build of `echo` (whose replies say `echo-version: 2`).
pub fn wasm(name: &str) -> PathBuf {
    let path = Path::new(env!("EVHOST_PLUGIN_WASM_DIR")).join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "plugin {name} was not built: {} is missing (the build script of evhost-tests \
         builds every folder with a Cargo.toml under plugins/ and tests/plugins/)",
        path.display()
    );
    path
}

/// The `evhost` binary: `$EVHOST_BIN`, else `evhost` in the target folder this
/// test executable was built into.
pub fn evhost_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("EVHOST_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "evhost binary not found at {} (from EVHOST_BIN)",
            bin.display()
        );
        return bin;
    }
    // The test executable lives in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable is in target/<profile>/deps");
    let bin = profile_dir.join(format!("evhost{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "evhost binary not found at {}: run `cargo build -p evhost`",
        bin.display()
    );
    bin
}

/// The `nats-server` binary, from PATH or `/usr/sbin/nats-server`.
pub fn nats_server_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| candidate.is_file())
    });
    on_path
        .or_else(|| {
            let fixed = PathBuf::from("/usr/sbin/nats-server");
            fixed.is_file().then_some(fixed)
        })
        .unwrap_or_else(|| {
            panic!("nats-server not found: install it with `apt-get install nats-server`")
        })
}

/// A free TCP port on 127.0.0.1, never NATS's standard 4222.
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local address").port();
        if port != 4222 {
            return port;
        }
    }
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with
/// `what` and `context()`.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A `nats-server` process with JetStream, on its own port and store folder.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// Configuration added to the server's config file, if it runs with one.
    config: Option<String>,
}

impl NatsServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// Starts a server with a config file: `listen` on a free loopback port
    /// and `jetstream` with its own store, then `config` (users, TLS, ...).
    /// Waits until it accepts TCP connections.
    pub fn start_with_config(config: &str) -> Self {
        Self::start_inner(Some(config.to_string()))
    }

    fn start_inner(config: Option<String>) -> Self {
        let mut dir = tempfile::tempdir().expect("create a folder for nats-server");
        let mut last_log = String::new();
        // A port found free can be taken before the server binds it: retry.
        for _ in 0..5 {
            let mut server = NatsServer {
                child: None,
                port: free_port(),
                dir,
                config: config.clone(),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(log) => {
                    last_log = log;
                    dir = server.take_dir();
                }
            }
        }
        panic!("nats-server did not start after 5 tries; its last log:\n{last_log}");
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        self.kill();
        let placeholder = tempfile::tempdir().expect("create a folder");
        std::mem::replace(&mut self.dir, placeholder)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// Spawns the server on `self.port` and waits for it, or returns its log.
    fn spawn(&mut self) -> Result<(), String> {
        let store = self.dir.path().join("store");
        let log = std::fs::File::create(self.log_path()).expect("create nats-server.log");
        let mut command = Command::new(nats_server_bin());
        match &self.config {
            Some(config) => {
                let file = self.dir.path().join("nats-server.conf");
                let text = format!(
                    "listen: \"127.0.0.1:{}\"\njetstream {{ store_dir: {:?} }}\n{config}\n",
                    self.port, store
                );
                std::fs::write(&file, text).expect("write nats-server.conf");
                command.arg("-c").arg(file);
            }
            None => {
                command
                    .arg("-a")
                    .arg("127.0.0.1")
                    .arg("-p")
                    .arg(self.port.to_string())
                    .arg("-js")
                    .arg("-sd")
                    .arg(&store);
            }
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone a file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not run nats-server: {e}"));
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("exited with {status}:\n{}", self.log()));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log = self.log();
                self.kill();
                return Err(format!("not accepting connections after {WAIT:?}:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the server has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops the server (kills it).
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Stops the server and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + WAIT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                // The old process's port may linger for a moment.
                Err(log) if Instant::now() < deadline => {
                    let _ = log;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(log) => panic!("nats-server did not restart on port {}:\n{log}", self.port),
            }
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One line the host wrote to stderr (or stdout), parsed when it is JSON.
#[derive(Clone, Debug)]
pub struct LogLine {
    /// The line as written.
    pub raw: String,
    /// The line as JSON, when it is.
    pub json: Option<Value>,
}

impl LogLine {
    fn parse(raw: String) -> Self {
        let json = serde_json::from_str::<Value>(&raw)
            .ok()
            .filter(|v| v.is_object());
        LogLine { raw, json }
    }

    /// `fields.message`, when the line is a JSON log record.
    pub fn message(&self) -> Option<&str> {
        self.field("message").and_then(Value::as_str)
    }

    /// A field of the record: `fields.NAME`, else a top-level `NAME`, else the
    /// same in the record's spans (tracing-subscriber puts span fields there).
    pub fn field(&self, name: &str) -> Option<&Value> {
        let json = self.json.as_ref()?;
        json.get("fields")
            .and_then(|f| f.get(name))
            .or_else(|| json.get(name))
            .or_else(|| json.get("span").and_then(|s| s.get(name)))
            .or_else(|| {
                json.get("spans")
                    .and_then(Value::as_array)
                    .and_then(|spans| spans.iter().rev().find_map(|s| s.get(name)))
            })
    }

    /// A field as text: strings as they are, other values in JSON.
    pub fn field_str(&self, name: &str) -> Option<String> {
        self.field(name).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// The record's level (`INFO`, `ERROR`, ...).
    pub fn level(&self) -> Option<&str> {
        self.json.as_ref()?.get("level")?.as_str()
    }

    /// Whether the line is the record `message` (and, when given, about `plugin`).
    pub fn is(&self, message: &str, plugin: Option<&str>) -> bool {
        self.message() == Some(message)
            && plugin.is_none_or(|p| self.field_str("plugin").as_deref() == Some(p))
    }
}

/// Extra settings for [`Host::start_with`].
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// `EVHOST_LOG`, the log filter (default `info`).
    pub log_level: String,
    /// Arguments added after the standard ones.
    pub args: Vec<String>,
    /// Environment variables set for the host.
    pub env: Vec<(String, String)>,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            log_level: "info".to_string(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }
}

/// A running `evhost run` process with its log captured.
pub struct Host {
    child: Mutex<Child>,
    pid: u32,
    lines: Arc<Mutex<Vec<LogLine>>>,
    readers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Host {
    /// Starts `evhost run --plugins DIR --nats URL --log-format json ARGS...`
    /// with `EVHOST_LOG=info`. Does not wait: see [`Host::start_ready`].
    pub fn start(dir: &Path, url: &str, args: &[&str]) -> Host {
        Self::start_with(
            dir,
            url,
            HostOptions {
                args: args.iter().map(|a| a.to_string()).collect(),
                ..HostOptions::default()
            },
        )
    }

    /// Like [`Host::start`], with options.
    pub fn start_with(dir: &Path, url: &str, options: HostOptions) -> Host {
        let mut cmd = Command::new(evhost_bin());
        cmd.arg("run")
            .arg("--plugins")
            .arg(dir)
            .arg("--nats")
            .arg(url)
            .arg("--log-format")
            .arg("json")
            .args(&options.args)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .env("EVHOST_LOG", &options.log_level);
        Self::spawn(cmd)
    }

    /// Starts `evhost ARGS...` with `env` and `EVHOST_LOG=info`, and nothing
    /// else on its command line: a host configured otherwise than by the
    /// standard flags (`run --config FILE`). Does not wait.
    pub fn start_args(args: &[&str], env: &[(&str, &str)]) -> Host {
        let mut cmd = Command::new(evhost_bin());
        cmd.args(args)
            .envs(env.iter().copied())
            .env("EVHOST_LOG", "info");
        Self::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Host {
        cmd.env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", evhost_bin().display()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let stdout = child.stdout.take().expect("piped stdout");
        let readers = vec![
            spawn_reader(stderr, lines.clone()),
            spawn_reader(stdout, lines.clone()),
        ];
        Host {
            pid: child.id(),
            child: Mutex::new(child),
            lines,
            readers: Mutex::new(readers),
        }
    }

    /// Starts the host and waits for its `host ready` line.
    pub async fn start_ready(dir: &Path, url: &str) -> Host {
        let host = Self::start(dir, url, &[]);
        host.wait_for_log("host ready", None, WAIT).await;
        host
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Every line captured so far, parsed.
    pub fn lines(&self) -> Vec<LogLine> {
        self.lines.lock().unwrap().clone()
    }

    /// Everything the host has written so far, one line each.
    pub fn logs(&self) -> String {
        let lines = self.lines.lock().unwrap();
        let mut out = String::new();
        for line in lines.iter() {
            out.push_str(&line.raw);
            out.push('\n');
        }
        out
    }

    /// The captured log, framed for a failure message.
    pub fn log_report(&self) -> String {
        format!(
            "--- evhost log (pid {}) ---\n{}--- end of evhost log ---",
            self.pid,
            self.logs()
        )
    }

    /// The lines that satisfy `pred`.
    pub fn find_logs(&self, pred: impl Fn(&LogLine) -> bool) -> Vec<LogLine> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| pred(l))
            .cloned()
            .collect()
    }

    /// How many lines are the record `message` (about `plugin`, when given).
    pub fn count_logs(&self, message: &str, plugin: Option<&str>) -> usize {
        self.find_logs(|l| l.is(message, plugin)).len()
    }

    /// Waits for the first line that is the record `message` (about `plugin`
    /// when given), whenever it was written.
    pub async fn wait_for_log(
        &self,
        message: &str,
        plugin: Option<&str>,
        timeout: Duration,
    ) -> LogLine {
        self.wait_for_log_count(message, plugin, 1, timeout).await
    }

    /// Waits until `n` lines are the record `message` (about `plugin` when
    /// given) and returns the `n`th.
    pub async fn wait_for_log_count(
        &self,
        message: &str,
        plugin: Option<&str>,
        n: usize,
        timeout: Duration,
    ) -> LogLine {
        let what = match plugin {
            Some(p) => format!("log line #{n} {message:?} with plugin={p:?}"),
            None => format!("log line #{n} {message:?}"),
        };
        self.wait_for_nth(&what, n, timeout, |l| l.is(message, plugin))
            .await
    }

    /// Waits for the first line that satisfies `pred`; `what` names it in the
    /// failure message.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&LogLine) -> bool,
    ) -> LogLine {
        self.wait_for_nth(what, 1, timeout, pred).await
    }

    /// Waits until `n` lines satisfy `pred` and returns the `n`th. Fails at once
    /// when the host exits first.
    pub async fn wait_for_nth(
        &self,
        what: &str,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&LogLine) -> bool,
    ) -> LogLine {
        assert!(n >= 1);
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| pred(l))
                .nth(n - 1)
                .cloned();
            if let Some(line) = found {
                return line;
            }
            if let Some(status) = self.try_exit_status() {
                // Let the readers catch the last lines, then look once more.
                self.join_readers();
                let found = self
                    .lines
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|l| pred(l))
                    .nth(n - 1)
                    .cloned();
                if let Some(line) = found {
                    return line;
                }
                panic!(
                    "evhost exited ({status}) while the test waited for {what}\n{}",
                    self.log_report()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n{}",
                    self.log_report()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The exit status, if the process has exited.
    pub fn try_exit_status(&self) -> Option<ExitStatus> {
        self.child.lock().unwrap().try_wait().ok().flatten()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends SIGINT.
    pub fn sigint(&self) {
        self.signal(libc::SIGINT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid).expect("a pid fits pid_t");
        // SAFETY: kill(2) with a pid we spawned and have not reaped (the Child
        // is still held, so the pid cannot have been reused).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}) failed: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Waits for the process to exit, and for its output to be read.
    pub async fn wait_exit(&self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                self.join_readers();
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "evhost did not exit within {timeout:?}\n{}",
                    self.log_report()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn join_readers(&self) {
        let readers = std::mem::take(&mut *self.readers.lock().unwrap());
        for reader in readers {
            let _ = reader.join();
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

fn spawn_reader(
    stream: impl Read + Send + 'static,
    lines: Arc<Mutex<Vec<LogLine>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .to_string();
                    lines.lock().unwrap().push(LogLine::parse(text));
                }
            }
        }
    })
}

/// A temporary plugins folder for one host, with a staging folder beside it
/// (on the same file system) for atomic replacements.
pub struct PluginDir {
    root: tempfile::TempDir,
}

impl Default for PluginDir {
    fn default() -> Self {
        Self::new()
    }
}

impl PluginDir {
    /// An empty plugins folder.
    pub fn new() -> Self {
        let root = tempfile::tempdir().expect("create a temporary folder");
        std::fs::create_dir(root.path().join("plugins")).expect("create plugins/");
        std::fs::create_dir(root.path().join("staging")).expect("create staging/");
        PluginDir { root }
    }

    /// The plugins folder, to pass to `evhost run --plugins`.
    pub fn path(&self) -> PathBuf {
        self.root.path().join("plugins")
    }

    /// The path of `NAME.wasm` in the folder.
    pub fn wasm_path(&self, name: &str) -> PathBuf {
        self.path().join(format!("{name}.wasm"))
    }

    /// The path of `NAME.toml` in the folder.
    pub fn manifest_path(&self, name: &str) -> PathBuf {
        self.path().join(format!("{name}.toml"))
    }

    /// Copies the built plugin `name` in as `NAME.wasm`.
    pub fn add(&self, name: &str) -> &Self {
        self.add_as(name, &wasm(name))
    }

    /// Copies the built plugin `name` in, with `NAME.toml` holding `manifest`.
    pub fn add_with_manifest(&self, name: &str, manifest: &str) -> &Self {
        self.write_manifest(name, manifest);
        self.add(name)
    }

    /// Copies the file `wasm` in as `NAME.wasm`.
    pub fn add_as(&self, name: &str, wasm: &Path) -> &Self {
        std::fs::copy(wasm, self.wasm_path(name))
            .unwrap_or_else(|e| panic!("copy {} into the plugins folder: {e}", wasm.display()));
        self
    }

    /// Writes `NAME.toml` atomically (write beside, then rename).
    pub fn write_manifest(&self, name: &str, manifest: &str) {
        self.write_atomic(&format!("{name}.toml"), manifest.as_bytes());
    }

    /// Writes `file_name` in the folder atomically: the bytes go to the staging
    /// folder first and are renamed into place, so the host sees one change.
    pub fn write_atomic(&self, file_name: &str, bytes: &[u8]) {
        let staged = self.root.path().join("staging").join(file_name);
        std::fs::write(&staged, bytes).expect("write to staging/");
        std::fs::rename(&staged, self.path().join(file_name))
            .unwrap_or_else(|e| panic!("rename {file_name} into the plugins folder: {e}"));
    }

    /// Overwrites `NAME.wasm` in place with a plain copy of `src` (truncate,
    /// then write), as `cp` would: the host may see the file half written.
    pub fn copy_over(&self, name: &str, src: &Path) {
        std::fs::copy(src, self.wasm_path(name))
            .unwrap_or_else(|e| panic!("copy {} over {name}.wasm: {e}", src.display()));
    }

    /// Deletes `NAME.wasm`.
    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.wasm_path(name))
            .unwrap_or_else(|e| panic!("remove {name}.wasm: {e}"));
    }
}

/// `GET path` at `addr` (`HOST:PORT`): the status code and body, or `None`
/// while nothing answers there.
pub async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// `GET /plugins` at `addr`, as JSON; fails with the host's log when it
/// does not answer 200 with JSON.
pub async fn plugins_json(addr: &str, host: &Host) -> Value {
    match http_get(addr, "/plugins").await {
        Some((200, body)) => serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!("/plugins is not JSON ({e}): {body}\n{}", host.log_report())
        }),
        other => panic!(
            "GET /plugins at {addr} answered {other:?}\n{}",
            host.log_report()
        ),
    }
}

/// The entry of plugin `name` in a `/plugins` answer, if listed.
pub fn plugin_entry<'a>(plugins: &'a Value, name: &str) -> Option<&'a Value> {
    plugins["plugins"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
}

/// Connects a test client to `url`.
pub async fn connect(url: &str) -> Client {
    async_nats::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Subscribes to `subject` and flushes, so the subscription is in place on
/// the server before the test publishes anything.
pub async fn subscribe(client: &Client, subject: &str) -> Subscriber {
    let sub = client
        .subscribe(subject.to_string())
        .await
        .unwrap_or_else(|e| panic!("subscribe to {subject}: {e}"));
    client.flush().await.expect("flush the subscription");
    sub
}

/// Publishes and flushes.
pub async fn publish(client: &Client, subject: &str, headers: &[(&str, &str)], payload: &[u8]) {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(*k, *v);
    }
    client
        .publish_with_headers(
            subject.to_string(),
            map,
            bytes::Bytes::copy_from_slice(payload),
        )
        .await
        .unwrap_or_else(|e| panic!("publish to {subject}: {e}"));
    client.flush().await.expect("flush the publish");
}

/// The next message on `sub`, waiting at most `timeout`; fails with `what`
/// and the host's log.
pub async fn next_message(
    sub: &mut Subscriber,
    timeout: Duration,
    what: &str,
    host: &Host,
) -> Message {
    match tokio::time::timeout(timeout, sub.next()).await {
        Ok(Some(msg)) => msg,
        Ok(None) => panic!(
            "the subscription ended while waiting for {what}\n{}",
            host.log_report()
        ),
        Err(_) => panic!(
            "timed out after {timeout:?} waiting for {what}\n{}",
            host.log_report()
        ),
    }
}

/// A message already delivered to `sub` and not yet taken, if any.
pub fn pending_message(sub: &mut Subscriber) -> Option<Message> {
    use futures::FutureExt;
    sub.next().now_or_never().flatten()
}

/// Every value of header `name` (compared without case), in order.
pub fn header_values(msg: &Message, name: &str) -> Vec<String> {
    let Some(headers) = &msg.headers else {
        return Vec::new();
    };
    headers
        .iter()
        .filter(|(k, _)| AsRef::<str>::as_ref(*k).eq_ignore_ascii_case(name))
        .flat_map(|(_, vs)| vs.iter().map(|v| v.as_str().to_string()))
        .collect()
}

/// The first value of header `name` (compared without case).
pub fn header(msg: &Message, name: &str) -> Option<String> {
    header_values(msg, name).into_iter().next()
}

/// Every header of `msg` as text, for failure messages.
pub fn describe(msg: &Message) -> String {
    let mut headers: Vec<String> = msg
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}: {}", v.as_str())))
        .collect();
    headers.sort();
    format!(
        "subject {} headers [{}] payload {:?}",
        msg.subject,
        headers.join("; "),
        String::from_utf8_lossy(&msg.payload)
    )
}

/// A dead letter as evhost publishes it.
#[derive(Debug)]
pub struct DeadLetter {
    /// The message as received.
    pub message: Message,
    /// `Evhost-Original-Subject`.
    pub original_subject: String,
    /// `Evhost-Plugin`.
    pub plugin: String,
    /// `Evhost-Plugin-Version`.
    pub plugin_version: String,
    /// `Evhost-Error-Kind`.
    pub kind: String,
    /// `Evhost-Error`.
    pub error: String,
    /// `Evhost-Attempts`.
    pub attempts: u32,
}

impl DeadLetter {
    /// Reads the `Evhost-*` headers, failing when any is missing or malformed.
    pub fn parse(message: Message) -> Self {
        let get = |name: &str| {
            header(&message, name).unwrap_or_else(|| {
                panic!("dead letter without header {name}: {}", describe(&message))
            })
        };
        let attempts = get("Evhost-Attempts");
        let attempts = attempts.parse().unwrap_or_else(|_| {
            panic!(
                "Evhost-Attempts is not a decimal number: {attempts:?} in {}",
                describe(&message)
            )
        });
        let plugin_version = get("Evhost-Plugin-Version");
        assert!(
            plugin_version.len() == 16 && plugin_version.chars().all(|c| c.is_ascii_hexdigit()),
            "Evhost-Plugin-Version is not 16 hex digits: {plugin_version:?}"
        );
        DeadLetter {
            original_subject: get("Evhost-Original-Subject"),
            plugin: get("Evhost-Plugin"),
            plugin_version,
            kind: get("Evhost-Error-Kind"),
            error: get("Evhost-Error"),
            attempts,
            message,
        }
    }

    /// Checks the subject and the headers every dead letter must carry:
    /// published to `dlq.<subject>`, from `plugin`, with the version the host
    /// logged when it loaded that plugin, with `kind` and `attempts`.
    pub fn assert_about(
        &self,
        subject: &str,
        plugin: &str,
        kind: &str,
        attempts: u32,
        host: &Host,
    ) {
        let context = || format!("{}\n{}", describe(&self.message), host.log_report());
        assert_eq!(
            self.message.subject.as_str(),
            format!("dlq.{subject}"),
            "dead-letter subject; {}",
            context()
        );
        assert_eq!(
            self.original_subject,
            subject,
            "Evhost-Original-Subject; {}",
            context()
        );
        assert_eq!(self.plugin, plugin, "Evhost-Plugin; {}", context());
        assert_eq!(self.kind, kind, "Evhost-Error-Kind; {}", context());
        assert_eq!(self.attempts, attempts, "Evhost-Attempts; {}", context());
        assert!(
            !self.error.trim().is_empty(),
            "Evhost-Error is empty; {}",
            context()
        );
        let loaded = host.find_logs(|l| {
            (l.is("plugin loaded", Some(plugin)) || l.is("plugin reloaded", Some(plugin)))
                && l.field_str("version").is_some()
        });
        let logged = loaded
            .last()
            .and_then(|l| l.field_str("version"))
            .unwrap_or_else(|| {
                panic!(
                    "no `plugin loaded` line with a version for {plugin}; {}",
                    context()
                )
            });
        assert_eq!(
            self.plugin_version,
            logged,
            "Evhost-Plugin-Version differs from the version in the host's log; {}",
            context()
        );
    }
}

/// Waits for the next dead letter on `sub` and parses it.
pub async fn next_dead_letter(sub: &mut Subscriber, what: &str, host: &Host) -> DeadLetter {
    DeadLetter::parse(next_message(sub, WAIT, what, host).await)
}

/// Sends `payload` to `test.echo` and waits for the echo on `test.echo.out`,
/// returning its `echo-version`. Proves the host (still) serves echo.
pub async fn echo_roundtrip(client: &Client, host: &Host, payload: &str) -> String {
    let mut out = subscribe(client, "test.echo.out").await;
    publish(client, "test.echo", &[], payload.as_bytes()).await;
    loop {
        let msg = next_message(
            &mut out,
            WAIT,
            &format!("echo's reply to {payload:?}"),
            host,
        )
        .await;
        if msg.payload.as_ref() == payload.as_bytes() {
            return header(&msg, "echo-version").unwrap_or_else(|| {
                panic!(
                    "echo reply without echo-version: {}\n{}",
                    describe(&msg),
                    host.log_report()
                )
            });
        }
    }
}

/// Whether `text` points at `line` (and a column) of a file: `L:C` after a
/// colon, or `line L, column C`.
pub fn mentions_line_column(text: &str, line: usize) -> bool {
    let colon = format!(":{line}:");
    let words = format!("line {line}");
    text.match_indices(&colon).any(|(i, _)| {
        text[i + colon.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    }) || (text.contains(&words) && text.contains("column"))
}

/// The output of an `evhost` command that ran to its end.
#[derive(Debug)]
pub struct CliOutput {
    /// The exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliOutput {
    /// Standard output as JSON, failing with the output when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!("evhost printed no JSON on stdout ({e}):\n{self}");
        })
    }

    /// The non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// Fails when the output shows a panic or a backtrace of evhost itself.
    /// A plugin's own panic message is expected in some outputs: lines the
    /// host tags with a plugin, and the `error` of invoke's JSON, are not
    /// evhost's.
    pub fn assert_no_panic(&self) {
        let own_stdout = if serde_json::from_str::<Value>(self.stdout.trim()).is_ok() {
            ""
        } else {
            self.stdout.as_str()
        };
        let own_lines = self
            .stderr
            .lines()
            .chain(own_stdout.lines())
            .filter(|l| !l.contains("plugin"));
        for line in own_lines {
            for bad in [
                "panicked",
                "stack backtrace",
                "RUST_BACKTRACE",
                "internal error",
            ] {
                assert!(
                    !line.contains(bad),
                    "evhost's output shows a panic ({bad:?} in {line:?}):\n{self}"
                );
            }
        }
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n---",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `evhost ARGS...` to its end (at most [`WAIT`] plus the command's own
/// time limits), with `stdin` as its standard input.
pub fn evhost(args: &[&str], stdin: Option<&[u8]>) -> CliOutput {
    evhost_with_timeout(args, stdin, WAIT + Duration::from_secs(10))
}

/// Like [`evhost`], with an explicit upper bound.
pub fn evhost_with_timeout(args: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> CliOutput {
    evhost_command(Command::new(evhost_bin()), args, stdin, timeout)
}

/// Runs `evhost ARGS...` in folder `dir` with the environment variables
/// `env` set, as a user in a shell there would (at most [`WAIT`] plus ten
/// seconds).
pub fn evhost_in(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> CliOutput {
    let mut command = Command::new(evhost_bin());
    command.current_dir(dir).envs(env.iter().copied());
    evhost_command(command, args, None, WAIT + Duration::from_secs(10))
}

fn evhost_command(
    mut command: Command,
    args: &[&str],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> CliOutput {
    use std::io::Write;
    let mut child = command
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LOG")
        .env("EVHOST_LOG", "info")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", evhost_bin().display()));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for evhost") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr =
                String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
            panic!(
                "`evhost {}` did not finish within {timeout:?}; stderr:\n{stderr}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    CliOutput {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned(),
    }
}

/// An `orders.order.created` event, in the shape the example plugins
/// (`plugins/payment`, `plugins/inventory`) decode.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OrderCreated {
    /// The event's own id (outputs name it as their `causation_id`).
    pub event_id: String,
    /// The order's id.
    pub order_id: String,
    /// Who ordered.
    pub customer_id: String,
    /// What was ordered.
    pub items: Vec<OrderItem>,
    /// The total in cents: the sum of quantity × price.
    pub total_cents: u64,
    /// When the order was placed (RFC 3339).
    pub created_at: String,
}

/// One line of an order.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OrderItem {
    /// The product.
    pub product_id: String,
    /// How many.
    pub quantity: u32,
    /// Price of one, in cents.
    pub price_cents: u64,
}

impl OrderCreated {
    /// A valid order: two items, with the right total.
    pub fn new(order_id: &str, customer_id: &str) -> Self {
        let items = vec![
            OrderItem {
                product_id: "p-red-mug".to_string(),
                quantity: 2,
                price_cents: 1250,
            },
            OrderItem {
                product_id: "p-blue-plate".to_string(),
                quantity: 1,
                price_cents: 3999,
            },
        ];
        let total_cents = items
            .iter()
            .map(|i| u64::from(i.quantity) * i.price_cents)
            .sum();
        OrderCreated {
            event_id: format!("evt-{order_id}"),
            order_id: order_id.to_string(),
            customer_id: customer_id.to_string(),
            items,
            total_cents,
            created_at: "2026-11-22T10:00:00Z".to_string(),
        }
    }

    /// Sets a total that is not the sum of the items.
    pub fn with_wrong_total(mut self) -> Self {
        self.total_cents += 1;
        self
    }

    /// The event as JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an order serializes")
    }
}

/// The durable consumer evhost made on `stream` for `subject`: the one whose
/// filter is that subject (its name carries a digest of the subject).
pub async fn consumer_of(
    js: &async_nats::jetstream::Context,
    stream: &str,
    subject: &str,
) -> async_nats::jetstream::consumer::PullConsumer {
    let stream = js
        .get_stream(stream)
        .await
        .unwrap_or_else(|e| panic!("stream {stream}: {e}"));
    let infos: Vec<_> = stream
        .consumers()
        .filter_map(|i| async move { i.ok() })
        .collect()
        .await;
    let info = infos
        .iter()
        .find(|i| i.config.filter_subject == subject)
        .unwrap_or_else(|| panic!("no consumer filters on {subject}: {infos:?}"));
    stream
        .get_consumer(&info.name)
        .await
        .unwrap_or_else(|e| panic!("consumer {}: {e}", info.name))
}

/// Every consumer of `stream`, as the server lists them.
pub async fn consumers_of(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> Vec<async_nats::jetstream::consumer::Info> {
    let stream = js
        .get_stream(stream)
        .await
        .unwrap_or_else(|e| panic!("stream {stream}: {e}"));
    stream
        .consumers()
        .map(|i| i.unwrap_or_else(|e| panic!("list consumers: {e}")))
        .collect()
        .await
}

/// Opens key-value bucket `name`, creating its stream as evhost does
/// (nats-server 2.9 cannot take async-nats's `create_key_value`).
pub async fn kv_bucket(
    js: &async_nats::jetstream::Context,
    name: &str,
) -> async_nats::jetstream::kv::Store {
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        discard: async_nats::jetstream::stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("create the stream of bucket {name}: {e}"));
    js.get_key_value(name)
        .await
        .unwrap_or_else(|e| panic!("open bucket {name}: {e}"))
}

/// `text` with `from` replaced by `to`; panics if `text` does not contain
/// `from`, so a test editing a fixture cannot silently edit nothing when the
/// fixture changes.
pub fn edited(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the fixture no longer contains {from:?}, so this edit would do nothing:\n{text}"
    );
    text.replace(from, to)
}
