//! Log setup: `tracing` to stderr, filtered by `EVHOST_LOG` (or `RUST_LOG`),
//! as text for people or JSON lines for machines.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The NATS client logs every connection event a second time and its
/// heartbeats at debug: evhost logs connection events itself (`bus.rs`), so
/// the client is held at `warn` unless the filter names it.
pub fn quiet_client(spec: &str) -> String {
    if spec.contains("async_nats") {
        spec.to_string()
    } else {
        format!("{spec},async_nats=warn")
    }
}

/// Installs the global subscriber. `default` is the filter when neither
/// variable is set. Spans (one per message, at debug level) are reported when
/// they close, with their duration and outcome.
pub fn init(format: LogFormat, default: &str) {
    let filter = std::env::var("EVHOST_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|spec| EnvFilter::try_new(quiet_client(&spec)).ok())
        .unwrap_or_else(|| EnvFilter::new(quiet_client(default)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_span_events(FmtSpan::CLOSE);
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(false).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_quiet_unless_named() {
        assert_eq!(quiet_client("debug"), "debug,async_nats=warn");
        assert_eq!(
            quiet_client("info,async_nats=debug"),
            "info,async_nats=debug"
        );
    }
}
