//! `evhost dev`: the local loop. Starts a throwaway `nats-server` (JetStream
//! on, its store in a temporary directory) on NATS's usual port 4222 when it
//! is free, so that `evhost pub` and `evhost dlq` reach it with no flags, else
//! on a free port; runs the host against it, and stops the server on exit.
//!
//! The server runs in a process group of its own, so a terminal's Ctrl-C
//! (sent to the whole foreground group) reaches only the host, which drains
//! against a server that is still up and then stops it. On Linux the server
//! is also told to die with the host, so a killed host leaves no server.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// A `nats-server` child process; killed on drop.
pub struct DevServer {
    child: std::process::Child,
    /// The URL clients connect to.
    pub url: String,
    /// Its port.
    pub port: u16,
    /// Where JetStream keeps its data.
    pub store: tempfile::TempDir,
}

/// Finds `nats-server` on PATH (or in /usr/sbin, where Debian puts it).
pub fn find_nats_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}

/// The port NATS clients try when given no URL.
pub const DEFAULT_PORT: u16 = 4222;

/// The port to start on: `preferred` when it is free (0: any), else one
/// `free` finds.
pub fn choose_port(
    preferred: u16,
    is_free: impl Fn(u16) -> bool,
    free: impl FnOnce() -> u16,
) -> u16 {
    if preferred != 0 && is_free(preferred) {
        preferred
    } else {
        free()
    }
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn any_free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(0, |a| a.port())
}

impl DevServer {
    /// Starts a server (`exe`, else the one on PATH) on `port` (0, or taken:
    /// a free one) and waits until it accepts connections.
    pub fn start(exe: Option<PathBuf>, port: u16) -> anyhow::Result<Self> {
        const INSTALL: &str = "install it (Debian/Ubuntu: `apt-get install nats-server`; \
             elsewhere: https://docs.nats.io/running-a-nats-service/introduction/installation)";
        let exe = match exe {
            Some(exe) if exe.is_file() => exe,
            Some(exe) => anyhow::bail!("nats-server not found at {}: {INSTALL}", exe.display()),
            None => find_nats_server()
                .with_context(|| format!("nats-server not found on PATH: {INSTALL}"))?,
        };
        let first = choose_port(port, port_is_free, any_free_port);
        match Self::spawn(&exe, first) {
            // Another process took the port between the check and the bind.
            Err(_) if first == port => Self::spawn(&exe, any_free_port()),
            result => result,
        }
    }

    fn spawn(exe: &Path, port: u16) -> anyhow::Result<Self> {
        anyhow::ensure!(port != 0, "no free port for nats-server");
        let store = tempfile::Builder::new().prefix("evhost-dev-").tempdir()?;
        let mut command = std::process::Command::new(exe);
        command
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        own_process_group(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let mut server = DevServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            port,
            store,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait()? {
                anyhow::bail!("nats-server exited at start ({status})");
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "nats-server did not start listening within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

impl DevServer {
    /// Stops the server and removes its store; returns what it removed.
    pub fn stop(mut self) -> String {
        self.kill();
        let store = self.store.path().display().to_string();
        // Dropping `self` removes the store (TempDir).
        format!("stopped nats-server and removed its store {store}")
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` in a new process group, away from the terminal's
/// signals, and (on Linux) has it killed when the host dies.
fn own_process_group(command: &mut std::process::Command) {
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

impl Drop for DevServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_port_when_free_else_any() {
        assert_eq!(choose_port(4222, |_| true, || 5000), 4222);
        assert_eq!(choose_port(4222, |_| false, || 5000), 5000);
        assert_eq!(choose_port(0, |_| true, || 5000), 5000);
    }
}
