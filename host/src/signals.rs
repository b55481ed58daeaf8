//! The process's stop signals. The first SIGINT or SIGTERM asks for a
//! graceful stop (drain, finish, flush); a second one means "now": the
//! caller exits at once after its last clean-up, without waiting for messages
//! in flight.

use anyhow::Context as _;
use tokio::sync::oneshot;

/// SIGINT and SIGTERM, installed once and read in order.
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers (from here on the signals no longer kill the
    /// process by default).
    pub fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
                terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Resolves on the next SIGINT or SIGTERM.
    pub async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }

    /// Spawns a task that resolves the returned future on the first signal
    /// and, on a second one, runs `force` (the caller's last clean-up, such
    /// as stopping `evhost dev`'s nats-server) and exits with status 130.
    pub fn spawn(mut self, force: impl FnOnce() + Send + 'static) -> impl Future<Output = ()> {
        let (first, first_seen) = oneshot::channel::<()>();
        tokio::spawn(async move {
            self.next().await;
            let _ = first.send(());
            self.next().await;
            eprintln!(
                "evhost: second stop signal: exiting now, without finishing the messages in flight"
            );
            force();
            std::process::exit(130);
        });
        async move {
            let _ = first_seen.await;
        }
    }
}
