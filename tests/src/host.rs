//! [`Host`]: a running `evhost run` process with its output captured line by
//! line ([`LogLine`]), waited on by log record; killed on drop.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::poll::polled;
use crate::{LogLine, WAIT};

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
        let nth = || {
            self.lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| pred(l))
                .nth(n - 1)
                .cloned()
        };
        let found = polled(timeout, || {
            if let Some(line) = nth() {
                return Some(Ok(line));
            }
            self.try_exit_status().map(|status| {
                // Let the readers catch the last lines, then look once more.
                self.join_readers();
                nth().ok_or(status)
            })
        })
        .await;
        match found {
            Some(Ok(line)) => line,
            Some(Err(status)) => panic!(
                "evhost exited ({status}) while the test waited for {what}\n{}",
                self.log_report()
            ),
            None => panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                self.log_report()
            ),
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

    /// Sends SIGKILL (`kill -9`): the host dies mid-message, with no drain.
    pub fn sigkill(&self) {
        self.signal(libc::SIGKILL);
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
        let status = polled(timeout, || self.try_exit_status()).await;
        let Some(status) = status else {
            panic!(
                "evhost did not exit within {timeout:?}\n{}",
                self.log_report()
            );
        };
        self.join_readers();
        status
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
