//! What a plugin's store may touch: a WASI context with no filesystem,
//! network, environment or arguments (clocks and random only), guest stdout
//! and stderr routed to the host's log.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use crate::guest_log::{GuestLog, MAX_LINE};

/// How many of the guest's last stderr lines are kept, to explain a trap.
const TAIL_LINES: usize = 4;

/// The last lines a guest wrote to stderr: a Rust panic message lands there
/// just before the trap.
#[derive(Clone, Default)]
pub struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    /// The panic message among the last stderr lines, as one line
    /// (`panicked at src/lib.rs:3:5: boom`), if there is one.
    pub fn panic_message(&self) -> Option<String> {
        let lines = self.0.lock().unwrap();
        let at = lines.iter().position(|l| l.contains("panicked at"))?;
        let head = &lines[at];
        let head = &head[head.find("panicked at").unwrap_or(0)..];
        Some(match lines.get(at + 1) {
            Some(next) if !next.starts_with("note:") => format!("{head} {next}"),
            _ => head.to_string(),
        })
    }

    fn push(&self, line: &str) {
        let mut lines = self.0.lock().unwrap();
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line.to_string());
    }
}

/// Builds the WASI context of one store of the plugin that logs to `log`;
/// stderr lines are also kept in `tail`.
pub fn wasi_ctx(log: &GuestLog, tail: &StderrTail) -> WasiCtx {
    WasiCtxBuilder::new()
        .stdout(GuestOutput {
            log: log.clone(),
            stream: "stdout",
            tail: None,
        })
        .stderr(GuestOutput {
            log: log.clone(),
            stream: "stderr",
            tail: Some(tail.clone()),
        })
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .build()
}

/// A guest's stdout or stderr: each line becomes a log event tagged with the
/// plugin (see [`GuestLog`]).
#[derive(Clone)]
struct GuestOutput {
    log: GuestLog,
    stream: &'static str,
    tail: Option<StderrTail>,
}

impl GuestOutput {
    fn emit(&self, bytes: &[u8]) {
        for line in bytes.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let text = String::from_utf8_lossy(&line[..line.len().min(MAX_LINE)]);
            if let Some(tail) = &self.tail {
                tail.push(&text);
            }
            self.log
                .write(tracing::Level::INFO, Some(self.stream), &text);
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.emit(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.emit(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_finds_the_panic_message() {
        let tail = StderrTail::default();
        let out = GuestOutput {
            log: GuestLog::new(Arc::from("p"), 1000),
            stream: "stderr",
            tail: Some(tail.clone()),
        };
        out.emit(b"starting\n");
        assert_eq!(tail.panic_message(), None);
        out.emit(b"\nthread '<unnamed>' panicked at src/lib.rs:3:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n");
        assert_eq!(
            tail.panic_message().as_deref(),
            Some("panicked at src/lib.rs:3:5: boom")
        );
    }
}
