//! Log setup: `tracing` to stderr, filtered by `EVHOST_LOG` (or `RUST_LOG`),
//! as text for people or JSON lines for machines; and, when traces are
//! exported (`trace_context.rs`), the layer that turns each message's span
//! into an OpenTelemetry span, whatever the log filter says.

use std::io::IsTerminal as _;

use tracing::Level;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, filter};

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
/// they close, with their duration and outcome. With a `tracer`, every
/// message span (and the events of `info` and above inside it) goes to it.
pub fn init(format: LogFormat, default: &str, tracer: Option<opentelemetry_sdk::trace::SdkTracer>) {
    let filter = std::env::var("EVHOST_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|spec| EnvFilter::try_new(quiet_client(&spec)).ok())
        .unwrap_or_else(|| EnvFilter::new(quiet_client(default)));
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_span_events(FmtSpan::CLOSE);
    let lines = match format {
        LogFormat::Text => lines.with_target(false).boxed(),
        LogFormat::Json => lines.json().flatten_event(false).boxed(),
    };
    let spans = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(filter::filter_fn(|meta| {
                if meta.is_span() {
                    meta.name() == "message"
                } else {
                    *meta.level() <= Level::INFO
                }
            }))
    });
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(spans)
        .try_init();
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
