//! A real HTTP server on a loopback port, playing the provider that plugins
//! call: it answers by path and records every request and connection.
//!
//! - `/status/CODE`: answers CODE with a small JSON body;
//! - `/charges`: 200 with `{"charge_id": …}`, after answering 503 to the first
//!   [`Provider::fail_first`] requests; a customer listed by
//!   [`Provider::decline`] gets 402;
//! - `/hang`: never answers;
//! - `/redirect?to=URL`: 302 to URL;
//! - `/big/N`: a body of N bytes, streamed in 64 KiB chunks;
//! - `/stall`: the head and a first chunk of body, then nothing;
//! - `/slow`: 200 after 300 ms ([`Provider::max_concurrent`] counts how many
//!   such requests were open at once).
//!
//! [`Provider::start_tls`] serves the same over https with a certificate for
//! `localhost` signed by a CA the test makes ([`TestCa`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// One request the provider received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The one `Idempotency-Key` that every one of `requests` carries (the
/// attempts of one message); fails unless there is exactly one and it starts
/// with `prefix` (the plugin's name and a colon).
pub fn one_idempotency_key(requests: &[Recorded], prefix: &str) -> String {
    let keys: Vec<Option<&str>> = requests
        .iter()
        .map(|r| r.header("idempotency-key"))
        .collect();
    assert!(
        keys.first()
            .is_some_and(|k| k.is_some_and(|k| k.starts_with(prefix))),
        "keys {keys:?}, not starting with {prefix:?}"
    );
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "one key on every attempt: {keys:?}"
    );
    keys[0].unwrap_or_default().to_string()
}

impl Recorded {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Recorded>>,
    connections: AtomicUsize,
    fail_first: AtomicUsize,
    declined: Mutex<Vec<String>>,
    open_slow: AtomicUsize,
    max_slow: AtomicUsize,
}

/// The running server; stopped on drop.
pub struct Provider {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
    https: bool,
}

/// A CA made for one test, and a certificate for `localhost` it signed.
pub struct TestCa {
    /// The CA certificate, PEM: what a client must trust.
    pub ca_pem: String,
    leaf: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl TestCa {
    /// A fresh CA and a `localhost` certificate.
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .expect("leaf params")
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("leaf certificate");
        TestCa {
            ca_pem: ca.pem(),
            leaf: leaf.der().clone(),
            key: rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl Provider {
    /// Starts the server on a free loopback port.
    pub async fn start() -> Provider {
        Self::serve(None).await
    }

    /// Starts the server over https, with `ca`'s `localhost` certificate.
    pub async fn start_tls(ca: &TestCa) -> Provider {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![ca.leaf.clone()], ca.key.clone_key())
            .expect("server certificate");
        Self::serve(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> Provider {
        let https = tls.is_some();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the provider");
        let addr = listener.local_addr().expect("provider address");
        let state = Arc::new(State::default());
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let state = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&state, req).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        Provider {
            addr,
            state,
            task,
            https,
        }
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` over TLS (the
    /// name its certificate carries).
    pub fn url(&self) -> String {
        if self.https {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The requests received so far on `path`, in order.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// The most `/slow` requests open at the same time so far.
    pub fn max_concurrent(&self) -> usize {
        self.state.max_slow.load(Ordering::SeqCst)
    }

    /// `/charges` answers 503 to the next `n` requests.
    pub fn fail_first(&self, n: usize) {
        self.state.fail_first.store(n, Ordering::SeqCst);
    }

    /// `/charges` answers 402 for this customer.
    pub fn decline(&self, customer: &str) {
        self.state
            .declined
            .lock()
            .unwrap()
            .push(customer.to_string());
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Answer = Response<BoxBody<Bytes, Infallible>>;

fn full(status: u16, body: impl Into<Bytes>) -> Answer {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(body.into()).boxed())
        .expect("a valid response")
}

async fn answer(state: &State, req: Request<Incoming>) -> Answer {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let recorded = Recorded {
        method,
        path: path.clone(),
        headers,
        body,
    };
    state.requests.lock().unwrap().push(recorded.clone());

    if let Some(code) = path.strip_prefix("/status/") {
        let code = code.parse().unwrap_or(500);
        return full(code, format!("{{\"status\":{code}}}"));
    }
    if path == "/charges" {
        let failing = state
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return full(503, "{\"error\":\"try later\"}");
        }
        let customer = serde_json::from_slice::<serde_json::Value>(&recorded.body)
            .ok()
            .and_then(|v| v.get("customer_id")?.as_str().map(str::to_string))
            .unwrap_or_default();
        if state.declined.lock().unwrap().contains(&customer) {
            return full(402, "{\"error\":\"card declined\"}");
        }
        let n = state.requests.lock().unwrap().len();
        return full(200, format!("{{\"charge_id\":\"ch_{n}\"}}"));
    }
    if path == "/hang" {
        std::future::pending::<()>().await;
    }
    if path == "/slow" {
        let open = state.open_slow.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_slow.fetch_max(open, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        state.open_slow.fetch_sub(1, Ordering::SeqCst);
        return full(200, "{\"slow\":true}");
    }
    if path == "/stall" {
        let first = futures::stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from_static(
            b"{\"partial\":",
        )))]);
        let never = futures::stream::pending();
        return Response::builder()
            .status(200)
            .body(BodyExt::boxed(StreamBody::new(futures::StreamExt::chain(
                first, never,
            ))))
            .expect("a valid response");
    }
    if path == "/redirect" {
        let to = query.strip_prefix("to=").unwrap_or("/");
        return Response::builder()
            .status(302)
            .header("location", to)
            .body(Full::new(Bytes::new()).boxed())
            .expect("a valid response");
    }
    if let Some(n) = path.strip_prefix("/big/") {
        let total: usize = n.parse().unwrap_or(0);
        let chunk = 64 * 1024;
        let frames = (0..total.div_ceil(chunk)).map(move |i| {
            let len = chunk.min(total - i * chunk);
            Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; len])))
        });
        return Response::builder()
            .status(200)
            .body(BodyExt::boxed(StreamBody::new(futures::stream::iter(
                frames,
            ))))
            .expect("a valid response");
    }
    full(404, "{\"error\":\"no such path\"}")
}
