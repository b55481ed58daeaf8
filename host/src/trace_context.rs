//! OpenTelemetry traces and W3C trace context. When the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set, each message's `message` span is exported over OTLP/HTTP
//! (protobuf) as a consumer span: a child of the `traceparent` the message
//! carries, with OpenTelemetry's messaging attributes, and the parent of the
//! outputs and the dead letter it publishes. With no endpoint nothing is
//! exported and outputs carry the input's own trace headers, as a host
//! without tracing should.
//!
//! What this module owns: reading the `OTEL_*` settings, the exporter's
//! lifetime ([`Exporter`]), and moving trace context between NATS headers
//! and spans ([`adopt`], [`current`]). The `tracing` layer that turns spans
//! into OpenTelemetry spans is installed by `logging.rs`.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Whether spans are exported (and outputs get this host's span as parent).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The trace headers of a message published while handling another: the
/// handling span's `traceparent` (and `tracestate`).
pub type TraceHeaders = Vec<(&'static str, String)>;

/// Which OTLP endpoint the environment names for traces, if any, and why
/// it cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum Setting {
    /// No endpoint, or `OTEL_SDK_DISABLED=true` / `OTEL_TRACES_EXPORTER=none`.
    Off,
    /// Export to this endpoint.
    Otlp,
}

/// Reads the settings from `var` (the process environment in use). A
/// protocol other than `http/protobuf` is an error: it is the one evhost
/// speaks.
pub fn setting(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Setting> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"))
    {
        return Ok(Setting::Off);
    }
    if set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        && set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
    {
        return Ok(Setting::Off);
    }
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(protocol) = set(name) {
            anyhow::ensure!(
                protocol.trim() == "http/protobuf",
                "{name}={protocol} is not supported: evhost exports OTLP over HTTP with protobuf (http/protobuf)"
            );
            break;
        }
    }
    Ok(Setting::Otlp)
}

/// The span exporter while the process runs; [`Exporter::shutdown`] sends
/// what is still buffered.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Starts exporting as the `OTEL_*` variables say, if they name an
    /// endpoint. Errors are the user's settings, in one line.
    pub fn from_env() -> anyhow::Result<Option<Exporter>> {
        if setting(|name| std::env::var(name).ok())? == Setting::Off {
            return Ok(None);
        }
        // The exporter's HTTP client takes TLS from the process's provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
            .context("cannot set up the OTLP trace exporter (OTEL_EXPORTER_OTLP_*)")?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("evhost");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        EXPORTING.store(true, Ordering::Release);
        Ok(Some(Exporter { provider }))
    }

    /// The tracer the `tracing` layer feeds.
    pub fn tracer(&self) -> SdkTracer {
        self.provider.tracer("evhost")
    }

    /// Exports what is buffered and stops.
    pub fn shutdown(self) {
        EXPORTING.store(false, Ordering::Release);
        if let Err(err) = self.provider.shutdown() {
            eprintln!("evhost: could not export the last spans: {err}");
        }
    }
}

/// Whether spans are being exported.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

struct HeaderExtractor<'a>(Option<&'a HeaderMap>);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0?.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .map(|h| h.iter().map(|(name, _)| name.as_ref()).collect())
            .unwrap_or_default()
    }
}

struct HeaderInjector(TraceHeaders);

impl Injector for HeaderInjector {
    fn set(&mut self, key: &str, value: String) {
        let key = match key {
            "traceparent" => "traceparent",
            "tracestate" => "tracestate",
            _ => return,
        };
        self.0.push((key, value));
    }
}

/// Makes `span` (a message's) a child of the trace context its `headers`
/// carry, and gives it the attributes of an OpenTelemetry consumer span.
/// Does nothing when not exporting.
pub fn adopt(span: &tracing::Span, headers: Option<&HeaderMap>, subject: &str) {
    if !exporting() || span.is_disabled() {
        return;
    }
    // The kind and name first: the span is started (and they are fixed)
    // once its parent is set and it is entered.
    span.record("otel.name", format!("process {subject}"));
    span.record("otel.kind", "consumer");
    span.record("messaging.system", "nats");
    span.record("messaging.operation.type", "process");
    span.record("messaging.operation.name", "process");
    span.record("messaging.destination.name", subject);
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}

/// The trace headers for what is published while the current span runs
/// (naming it as parent), or `None` when not exporting.
pub fn current() -> Option<TraceHeaders> {
    if !exporting() {
        return None;
    }
    let context = tracing::Span::current().context();
    let mut injector = HeaderInjector(Vec::new());
    TraceContextPropagator::new().inject_context(&context, &mut injector);
    (!injector.0.is_empty()).then_some(injector.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn an_endpoint_turns_export_on() {
        assert_eq!(setting(env(&[])).unwrap(), Setting::Off);
        assert_eq!(
            setting(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")])).unwrap(),
            Setting::Off
        );
        assert_eq!(
            setting(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")])).unwrap(),
            Setting::Otlp
        );
        assert_eq!(
            setting(env(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces"
            )]))
            .unwrap(),
            Setting::Otlp
        );
    }

    #[test]
    fn disabled_or_no_exporter_wins() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        assert_eq!(
            setting(env(&[on, ("OTEL_SDK_DISABLED", "true")])).unwrap(),
            Setting::Off
        );
        assert_eq!(
            setting(env(&[on, ("OTEL_TRACES_EXPORTER", "none")])).unwrap(),
            Setting::Off
        );
    }

    #[test]
    fn only_http_protobuf_is_spoken() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        let err = setting(env(&[on, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc"), "{err}");
        // The traces-specific variable is read first.
        assert_eq!(
            setting(env(&[
                on,
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
            ]))
            .unwrap(),
            Setting::Otlp
        );
    }

    #[test]
    fn only_trace_headers_are_injected() {
        let mut injector = HeaderInjector(Vec::new());
        injector.set("traceparent", "00-a-b-01".into());
        injector.set("baggage", "k=v".into());
        assert_eq!(injector.0, vec![("traceparent", "00-a-b-01".to_string())]);
    }
}
