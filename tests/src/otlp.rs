//! A real OTLP/HTTP trace receiver on a loopback port, as a collector would
//! be: it takes `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`
//! (decoded with the OpenTelemetry project's own message types), answers
//! with an empty `ExportTraceServiceResponse`, and keeps every span.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;

use crate::Host;

/// One span as it arrived, ids in lowercase hex (as in `traceparent`).
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// OTLP's `SpanKind` (5: consumer).
    pub kind: i32,
    /// OTLP's `StatusCode` (2: error).
    pub status_code: i32,
    /// String, integer and boolean attributes, as text.
    pub attributes: Vec<(String, String)>,
    /// The resource's `service.name`.
    pub service_name: Option<String>,
}

impl ReceivedSpan {
    /// The value of attribute `key`.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The span kind OTLP numbers `SPAN_KIND_CONSUMER`.
pub const SPAN_KIND_CONSUMER: i32 = 5;
/// The status code OTLP numbers `STATUS_CODE_ERROR`.
pub const STATUS_CODE_ERROR: i32 = 2;

/// The running receiver; stopped on drop.
pub struct OtlpReceiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OtlpReceiver {
    /// Starts a receiver on a free loopback port.
    pub async fn start() -> OtlpReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OTLP receiver");
        let addr = listener.local_addr().expect("receiver address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let shared = spans.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let spans = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let spans = spans.clone();
                        async move { Ok::<_, Infallible>(receive(&spans, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        OtlpReceiver { addr, spans, task }
    }

    /// What `OTEL_EXPORTER_OTLP_ENDPOINT` should say.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("spans").clone()
    }

    /// Waits for a span `matches` accepts, failing with every span received
    /// and the host's log.
    pub async fn wait_for(
        &self,
        what: &str,
        matches: impl Fn(&ReceivedSpan) -> bool,
        timeout: Duration,
        host: &Host,
    ) -> ReceivedSpan {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(span) = self.spans().into_iter().find(|s| matches(s)) {
                return span;
            }
            if Instant::now() > deadline {
                panic!(
                    "no span for {what} within {timeout:?}; received: {:#?}\n{}",
                    self.spans(),
                    host.log_report()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(
    spans: &Mutex<Vec<ReceivedSpan>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let reply = |status: u16, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .expect("a response")
    };
    if req.method() != hyper::Method::POST || req.uri().path() != "/v1/traces" {
        return reply(404, Vec::new());
    }
    let Ok(body) = req.into_body().collect().await else {
        return reply(400, Vec::new());
    };
    let Ok(request) = ExportTraceServiceRequest::decode(body.to_bytes()) else {
        return reply(400, Vec::new());
    };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let service_name = resource_spans.resource.as_ref().and_then(|r| {
            r.attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| text(kv.value.as_ref()?.value.as_ref()?))
        });
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                received.push(ReceivedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    status_code: span.status.map_or(0, |s| s.code),
                    attributes: span
                        .attributes
                        .iter()
                        .filter_map(|kv| {
                            Some((kv.key.clone(), text(kv.value.as_ref()?.value.as_ref()?)?))
                        })
                        .collect(),
                    service_name: service_name.clone(),
                });
            }
        }
    }
    spans.lock().expect("spans").extend(received);
    reply(200, ExportTraceServiceResponse::default().encode_to_vec())
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
