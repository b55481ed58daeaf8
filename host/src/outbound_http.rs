//! Outbound HTTP for plugins, through the standard `wasi:http` interfaces
//! (wasmtime-wasi-http implements them; this module is the hook that sends).
//!
//! Every request is checked against the plugin's `[capabilities] http` list
//! before anything else happens: a destination off the list (or any request
//! from a plugin with no grant) is refused with the `HTTP-request-denied`
//! error code, a rate-limited warning names the plugin and the URL, and the
//! name is never resolved. Redirects are not followed here: a guest that
//! follows one sends a new request, which is checked again. Allowed requests
//! get the manifest's limits (connect, first-byte and between-bytes timeouts,
//! the guest's own when shorter; a response body cap; requests in flight per
//! plugin) and TLS with the built-in web roots plus the plugin's `http_ca`.
//!
//! Connections are kept for reuse (`http_pool`, one pool per loaded plugin
//! version, at most `http_max_in_flight` idle per destination). A request
//! given up on drains the rest of the guest's body (`request_body`).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::uri::Scheme;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use rustls_pki_types::pem::PemObject as _;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::capabilities::{HttpGrant, HttpLimits};
use crate::http_allow::{self, HttpAllow};
use crate::http_pool::{Destination, Pool, Sender};
use crate::log_limit::LogLimit;
use crate::request_body::RequestBody;

/// One plugin's outbound HTTP: what it may call, with which limits, and its
/// pool of connections. Shared by every instance of one loaded version.
pub struct HttpPolicy {
    plugin: Arc<str>,
    allow: HttpAllow,
    limits: HttpLimits,
    /// `None` without a grant: every request is refused, and no TLS set-up
    /// is made for it.
    tls: Option<Arc<rustls::ClientConfig>>,
    pool: Arc<Pool>,
    in_flight: Arc<Semaphore>,
    refused: Mutex<LogLimit>,
}

impl HttpPolicy {
    /// The policy of a plugin with `grant` (`None`: refuse everything).
    /// `plugin_dir` resolves a relative `http_ca`.
    pub fn new(
        plugin: Arc<str>,
        grant: Option<&HttpGrant>,
        plugin_dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let (allow, limits) = match grant {
            Some(g) => (g.allow.clone(), g.limits.clone()),
            None => (HttpAllow::default(), HttpLimits::default()),
        };
        // A plugin with no grant sends nothing: no TLS set-up for it.
        let tls = match grant {
            Some(g) => Some(Arc::new(tls_config(
                g.ca.as_ref().map(|ca| plugin_dir.join(ca)).as_deref(),
            )?)),
            None => None,
        };
        Ok(HttpPolicy {
            plugin,
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            pool: Arc::new(Pool::new(limits.max_in_flight)),
            allow,
            limits,
            tls,
            refused: Mutex::new(LogLimit::default()),
        })
    }

    /// Whether `uri` is on the list; logs a refusal (rate-limited).
    fn admit(&self, uri: &http::Uri) -> bool {
        let https = uri.scheme() == Some(&Scheme::HTTPS);
        let allowed = (https || uri.scheme() == Some(&Scheme::HTTP))
            && uri.host().is_some_and(|host| {
                self.allow.allows(&http_allow::Destination {
                    https,
                    host,
                    port: uri.port_u16(),
                    path: uri.path(),
                })
            });
        if !allowed {
            let logged = self.refused.lock().unwrap().admit(Instant::now());
            if let Some(suppressed) = logged {
                let why = if self.allow.is_empty() {
                    "the plugin has no [capabilities] http grant"
                } else {
                    "not in the plugin's [capabilities] http list"
                };
                tracing::warn!(plugin = %self.plugin, url = %uri, suppressed, "HTTP request refused: {why}");
            }
        }
        allowed
    }

    /// The limits of one request: the manifest's, or the guest's where shorter.
    pub(crate) fn timeouts(
        &self,
        options: Option<RequestOptions>,
    ) -> (Duration, Duration, Duration) {
        let shorter = |mine: Duration, theirs: Option<Duration>| match theirs {
            Some(t) if t < mine => t,
            _ => mine,
        };
        let o = options.unwrap_or_default();
        (
            shorter(self.limits.connect_timeout, o.connect_timeout),
            shorter(self.limits.first_byte_timeout, o.first_byte_timeout),
            shorter(self.limits.between_bytes_timeout, o.between_bytes_timeout),
        )
    }

    /// Sends `request` if it is on the list (else `HTTP-request-denied`,
    /// logged), once one of the plugin's in-flight slots is free: what
    /// `wasi:http` and the one-call `evhost:plugin/http` both come to.
    /// `timeouts` are the request's, from [`HttpPolicy::timeouts`].
    pub(crate) async fn dispatch(
        &self,
        request: http::Request<RequestBody>,
        timeouts: (Duration, Duration, Duration),
    ) -> Sent {
        if !self.admit(request.uri()) {
            return Err(Error::HttpRequestDenied);
        }
        let permit = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::InternalError(Some("closed".into())))?;
        send(self, request, timeouts, permit).await
    }
}

/// The client TLS set-up: the built-in web roots, plus the certificates of
/// the PEM file `ca` when given (errors name `capabilities.http_ca`).
fn tls_config(ca: Option<&std::path::Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    if let Some(path) = ca {
        let pem = std::fs::read(path)
            .with_context(|| format!("capabilities.http_ca: cannot read {}", path.display()))?;
        let mut added = 0;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert
                .with_context(|| format!("capabilities.http_ca: {} is not PEM", path.display()))?;
            roots.add(cert).with_context(|| {
                format!(
                    "capabilities.http_ca: a certificate in {} is not a CA",
                    path.display()
                )
            })?;
            added += 1;
        }
        anyhow::ensure!(
            added > 0,
            "capabilities.http_ca: {} holds no certificate",
            path.display()
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS configuration")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The `wasi:http` hooks of one store.
pub struct Hooks {
    pub policy: Arc<HttpPolicy>,
}

pub(crate) type Sent = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
>;

impl WasiHttpHooks for Hooks {
    /// wasmtime-wasi-http's own list, checked in place: its default makes a
    /// boxed filter for every header it checks.
    fn is_forbidden_header(&mut self, name: &http::HeaderName) -> bool {
        wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name)
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        drop(fut);
        let policy = self.policy.clone();
        // From here on, a request given up on drains its body (see
        // `request_body`): the guest learns the failure from the response.
        let timeouts = policy.timeouts(options);
        let (_, _, between_bytes) = timeouts;
        let request = request.map(|body| RequestBody::new(body, between_bytes));
        Box::new(async move { policy.dispatch(request, timeouts).await })
    }
}

/// Sends on a pooled connection (or a new one, made within the connect
/// timeout), waits at most the first-byte timeout for the response's
/// headers, and returns the response with its body bounded (the timeouts
/// are the request's, from [`HttpPolicy::timeouts`]).
async fn send(
    policy: &HttpPolicy,
    mut request: http::Request<RequestBody>,
    (connect_timeout, first_byte, between_bytes): (Duration, Duration, Duration),
    permit: OwnedSemaphorePermit,
) -> Sent {
    let uri = request.uri().clone();
    let https = uri.scheme() == Some(&Scheme::HTTPS);
    let to = Destination {
        https,
        host: uri.host().ok_or(Error::HttpRequestUriInvalid)?.to_string(),
        port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
        shard: crate::shard::current(),
    };
    // The request line carries the path only (no proxy here); the Host
    // header is the URL's authority unless the guest set its own.
    let mut line = http::uri::Parts::default();
    line.path_and_query = Some(
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    *request.uri_mut() = http::Uri::from_parts(line).map_err(|_| Error::HttpRequestUriInvalid)?;
    if !request.headers().contains_key(http::header::HOST)
        && let Some(authority) = uri.authority()
        && let Ok(host) = http::HeaderValue::from_str(authority.as_str())
    {
        request.headers_mut().insert(http::header::HOST, host);
    }
    let (sender, response) = loop {
        let (mut sender, pooled) = match policy.pool.take(&to) {
            Some(sender) => (sender, true),
            None => {
                let sender = tokio::time::timeout(connect_timeout, connect(policy, &to))
                    .await
                    .map_err(|_| Error::ConnectionTimeout)??;
                (sender, false)
            }
        };
        let sent = tokio::time::timeout(first_byte, async {
            match sender.ready().await {
                Err(err) => Err((err, Some(request))),
                Ok(()) => sender.try_send_request(request).await.map_err(|mut err| {
                    let unsent = err.take_message();
                    (err.into_error(), unsent)
                }),
            }
        });
        match sent.await.map_err(|_| Error::ConnectionReadTimeout)? {
            Ok(response) => break (sender, response),
            // A pooled connection the server closed before it took the
            // request: nothing was sent, so try again on another.
            Err((_, Some(unsent))) if pooled => request = unsent,
            Err((err, _)) => return Err(Error::from(err)),
        }
    };
    let max = policy.limits.max_response_bytes;
    if let Some(length) = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && length > max
    {
        return Err(Error::HttpResponseBodySize(Some(length)));
    }
    let response = response.map(|incoming| {
        Bounded {
            inner: incoming,
            left: max,
            limit: max,
            between: between_bytes,
            idle: None,
            rearm: false,
            reuse: Some((policy.pool.clone(), to, sender)),
            _permit: permit,
        }
        .boxed_unsync()
    });
    // The connection runs on a task of its own and goes back to the pool
    // with the end of the body: nothing is left to wait for here.
    Ok((response, Box::new(async { Ok(()) })))
}

/// Opens a connection to `to`: TCP, then TLS for `https` with the plugin's
/// roots, and starts driving it on a task of its own (it ends when the
/// server closes it or when its sender and body are dropped). Only admitted
/// destinations get here, so a name off the list is never resolved.
async fn connect(policy: &HttpPolicy, to: &Destination) -> Result<Sender, Error> {
    let bare = to.host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((bare, to.port))
        .await
        .map_err(Error::Connect)?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if to.https {
        let name = rustls_pki_types::ServerName::try_from(bare.to_string())
            .map_err(|_| Error::HttpRequestUriInvalid)?;
        let config = policy.tls.clone().ok_or(Error::HttpRequestDenied)?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(Error::Tls)?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake::<_, RequestBody>(TokioIo::new(io))
        .await
        .map_err(Error::from)?;
    tokio::spawn(conn);
    Ok(sender)
}

/// A connection, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A response body with a size cap and a between-bytes timeout; holds the
/// request's in-flight permit until it is dropped, and hands its connection
/// back to the pool once it has been read to the end.
struct Bounded {
    inner: hyper::body::Incoming,
    left: u64,
    limit: u64,
    between: Duration,
    /// The between-bytes timer, set only once the body has to be waited
    /// for (a small body that came with the headers needs no timer, and no
    /// clock read): it runs from when the reader found nothing to read.
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Bytes came since the timer was set: it starts again at the next wait.
    rearm: bool,
    /// Where the connection goes back, with its sender.
    reuse: Option<(Arc<Pool>, Destination, Sender)>,
    _permit: OwnedSemaphorePermit,
}

impl Bounded {
    /// Returns the connection to the pool, if the whole body was read.
    fn recycle(&mut self) {
        if self.inner.is_end_stream()
            && let Some((pool, to, sender)) = self.reuse.take()
        {
            pool.put(to, sender);
        }
    }
}

impl Drop for Bounded {
    fn drop(&mut self) {
        self.recycle();
    }
}

impl Body for Bounded {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > self.left {
                    let limit = self.limit;
                    return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(limit)))));
                }
                self.left -= len;
                self.rearm = self.idle.is_some();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(Error::from(err)))),
            Poll::Ready(None) => {
                self.recycle();
                Poll::Ready(None)
            }
            Poll::Pending => {
                let between = self.between;
                let rearm = std::mem::take(&mut self.rearm);
                let idle = self
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(between)));
                if rearm {
                    idle.as_mut().reset(tokio::time::Instant::now() + between);
                }
                match idle.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_http_ca_is_one_error_naming_the_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, b"not a certificate at all").unwrap();
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let missing = dir.path().join("missing.pem");
        for path in [&garbage, &broken, &missing] {
            let err = format!("{:#}", tls_config(Some(path)).unwrap_err());
            assert!(
                err.contains("capabilities.http_ca") && err.contains(&*path.to_string_lossy()),
                "{err}"
            );
        }
        assert!(tls_config(None).is_ok());
    }
}
