//! [`NatsServer`]: one `nats-server` child process with JetStream on, on a
//! loopback port, with a temporary folder of its own holding its store
//! (`store/`), its log (`nats-server.log`) and, when it runs from one, its
//! config file (`nats-server.conf`). The folder is removed, and the process
//! killed, when the value is dropped.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::binary::{self, NotFound};
use crate::{poll, port};

/// How often a starting server is asked whether it accepts connections.
const STARTUP_POLL: Duration = Duration::from_millis(10);

/// What nats-server logs once it accepts clients. A start waits for it in
/// the log of this start, not only for the port to answer: a port can
/// answer for another process that took it meanwhile.
const READY_LINE: &str = "Server is ready";

/// How many ports a start tries: one found free can be taken before the
/// server binds it, and the server then exits at once.
const TRIES: usize = 5;

/// Which port a server listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// A free one ([`port::free_port`]).
    Free,
    /// This one when it is free, else a free one (0: a free one).
    Prefer(u16),
}

/// How to start a server.
#[derive(Clone, Debug)]
pub struct Options {
    /// The executable (default: [`binary::find`]'s choice).
    pub exe: Option<PathBuf>,
    /// The port (default: a free one).
    pub port: Port,
    /// Text added to a config file the server runs from, after `listen` and
    /// `jetstream` (users, TLS, ...); without it, the server is started with
    /// command-line flags only.
    pub config: Option<String>,
    /// The prefix of the server's temporary folder's name.
    pub folder_prefix: String,
    /// Start it in a process group of its own, so a terminal's Ctrl-C (sent
    /// to the whole foreground group) does not reach it, and (on Linux) have
    /// it killed when the thread that started it dies.
    pub own_process_group: bool,
    /// How long a start waits for the server to accept connections.
    pub startup_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            exe: None,
            port: Port::Free,
            config: None,
            folder_prefix: "nats-server-".to_string(),
            own_process_group: false,
            startup_timeout: Duration::from_secs(20),
        }
    }
}

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `nats-server` to run.
    #[error(transparent)]
    NotFound(#[from] NotFound),
    /// Its temporary folder, config file or log could not be made.
    // The I/O errors are in the message, not a `source`: one line however
    // the error is printed.
    #[error("cannot prepare nats-server's folder: {0}")]
    Folder(std::io::Error),
    /// No free port.
    #[error("no free port for nats-server: {0}")]
    NoPort(std::io::Error),
    /// The executable could not be run.
    #[error("cannot start {}: {error}", exe.display())]
    Spawn {
        /// The executable.
        exe: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The process ended before it accepted a connection.
    #[error("nats-server exited at start on port {port} ({status})")]
    Exited {
        /// The port it was to listen on.
        port: u16,
        /// How it ended.
        status: ExitStatus,
        /// What it logged.
        log: String,
    },
    /// The process did not accept connections in time (it is killed).
    #[error("nats-server did not accept connections on port {port} within {timeout:?}")]
    NotListening {
        /// The port it was to listen on.
        port: u16,
        /// How long it was given.
        timeout: Duration,
        /// What it logged.
        log: String,
    },
}

impl Error {
    /// What the server logged before it failed, when it ran at all.
    pub fn log(&self) -> Option<&str> {
        match self {
            Error::Exited { log, .. } | Error::NotListening { log, .. } => Some(log),
            _ => None,
        }
    }
}

/// A running `nats-server`; killed, and its folder removed, on drop.
pub struct NatsServer {
    child: Option<Child>,
    exe: PathBuf,
    port: u16,
    folder: tempfile::TempDir,
    options: Options,
}

impl NatsServer {
    /// Starts a server and waits until it accepts TCP connections. A server
    /// that exits at once (its port taken meanwhile) is tried again on
    /// another free port, a few times.
    pub fn start(options: Options) -> Result<Self, Error> {
        let exe = binary::find(options.exe.as_deref())?;
        let folder = tempfile::Builder::new()
            .prefix(&options.folder_prefix)
            .tempdir()
            .map_err(Error::Folder)?;
        let preferred = match options.port {
            Port::Free => 0,
            Port::Prefer(port) => port,
        };
        let port =
            port::choose(preferred, port::is_free, port::free_port).map_err(Error::NoPort)?;
        let mut server = NatsServer {
            child: None,
            exe,
            port,
            folder,
            options,
        };
        let mut tries = 1;
        loop {
            match server.spawn() {
                Err(Error::Exited { .. }) if tries < TRIES => {
                    tries += 1;
                    server.port = port::free_port().map_err(Error::NoPort)?;
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(server),
            }
        }
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store folder.
    pub fn store(&self) -> PathBuf {
        self.folder.path().join("store")
    }

    /// What the server has logged (every start of it, in order).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Kills the server; its folder stays until the value is dropped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server and starts it again on the same port and store,
    /// trying until the startup timeout passes (the old process's port may
    /// linger for a moment).
    pub fn restart(&mut self) -> Result<(), Error> {
        self.stop();
        let mut last = None;
        let started = poll::blocking(
            self.options.startup_timeout,
            Duration::from_millis(100),
            || match self.spawn() {
                Err(e @ Error::Exited { .. }) => {
                    last = Some(e);
                    None
                }
                result => Some(result),
            },
        );
        match (started, last) {
            (Some(result), _) => result,
            (None, Some(last)) => Err(last),
            (None, None) => unreachable!("poll checks at least once"),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.folder.path().join("nats-server.log")
    }

    /// Runs the server on `self.port` and waits until it accepts
    /// connections; kills it when it does not in time.
    fn spawn(&mut self) -> Result<(), Error> {
        let store = self.store();
        // Where this start's log begins (a restart appends to the file).
        let log_path = self.log_path();
        let log_start = std::fs::metadata(&log_path).map_or(0, |m| m.len());
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(Error::Folder)?;
        let mut command = Command::new(&self.exe);
        match &self.options.config {
            Some(config) => {
                let file = self.folder.path().join("nats-server.conf");
                let text = format!(
                    "listen: \"127.0.0.1:{}\"\njetstream {{ store_dir: {:?} }}\n{config}\n",
                    self.port, store
                );
                std::fs::write(&file, text).map_err(Error::Folder)?;
                command.arg("-c").arg(file);
            }
            None => {
                command
                    .args([
                        "-a",
                        "127.0.0.1",
                        "-p",
                        &self.port.to_string(),
                        "-js",
                        "-sd",
                    ])
                    .arg(&store);
            }
        }
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(Error::Folder)?)
            .stderr(log);
        if self.options.own_process_group {
            own_process_group(&mut command);
        }
        let child = command.spawn().map_err(|error| Error::Spawn {
            exe: self.exe.clone(),
            error,
        })?;
        let child = self.child.insert(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let timeout = self.options.startup_timeout;
        let outcome = poll::blocking(timeout, STARTUP_POLL, || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(status));
            }
            let ready = logged_since(&log_path, log_start, READY_LINE)
                && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
            ready.then_some(Ok(()))
        });
        match outcome {
            Some(Ok(())) => Ok(()),
            Some(Err(status)) => {
                self.child = None;
                Err(Error::Exited {
                    port: self.port,
                    status,
                    log: self.log(),
                })
            }
            None => {
                self.stop();
                Err(Error::NotListening {
                    port: self.port,
                    timeout,
                    log: self.log(),
                })
            }
        }
    }
}

/// Whether the file at `path` holds `line` after its first `from` bytes.
fn logged_since(path: &std::path::Path, from: u64, line: &str) -> bool {
    std::fs::read(path).is_ok_and(|log| {
        let new = log.get(from as usize..).unwrap_or_default();
        String::from_utf8_lossy(new).contains(line)
    })
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `command` in a new process group, away from the terminal's
/// signals, and (on Linux) has it killed when its parent dies.
fn own_process_group(command: &mut Command) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe and touches only the child.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_this_start_logged_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nats-server.log");
        assert!(!logged_since(&path, 0, READY_LINE), "no file yet");
        std::fs::write(&path, "[INF] Server is ready\n").unwrap();
        assert!(logged_since(&path, 0, READY_LINE));
        let restart = std::fs::metadata(&path).unwrap().len();
        assert!(
            !logged_since(&path, restart, READY_LINE),
            "the last start's"
        );
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("[INF] Starting nats-server\n[INF] Server is ready\n");
        std::fs::write(&path, text).unwrap();
        assert!(logged_since(&path, restart, READY_LINE));
        assert!(!logged_since(&path, u64::MAX, READY_LINE));
    }
}
