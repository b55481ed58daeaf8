//! `evhost dev`: the local loop. Starts a throwaway `nats-server` (JetStream
//! on, its store in a temporary directory) on a free port, runs the host
//! against it, and stops the server on exit.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// A `nats-server` child process; killed on drop.
pub struct DevServer {
    child: std::process::Child,
    /// The URL clients connect to.
    pub url: String,
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

impl DevServer {
    /// Starts a server (`exe`, else the one on PATH) on a free port and
    /// waits until it accepts connections.
    pub fn start(exe: Option<PathBuf>) -> anyhow::Result<Self> {
        const INSTALL: &str = "install it (Debian/Ubuntu: `apt-get install nats-server`; \
             elsewhere: https://docs.nats.io/running-a-nats-service/introduction/installation)";
        let exe = match exe {
            Some(exe) if exe.is_file() => exe,
            Some(exe) => anyhow::bail!("nats-server not found at {}: {INSTALL}", exe.display()),
            None => find_nats_server()
                .with_context(|| format!("nats-server not found on PATH: {INSTALL}"))?,
        };
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let store = tempfile::Builder::new().prefix("evhost-dev-").tempdir()?;
        let child = std::process::Command::new(&exe)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let mut server = DevServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
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

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
