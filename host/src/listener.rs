//! The operator's HTTP listener (`evhost run --metrics ADDR`), served with
//! hyper: `GET /metrics` (OpenMetrics text, see `metrics.rs`), `GET /healthz` (the process is
//! serving: always 200) and `GET /readyz` (200 when [`Readiness`] says so,
//! else 503 with the reason) and `GET /plugins` (every plugin's version,
//! subjects, mode, counters and last rejection, as JSON; see
//! `plugin_status.rs`). Anything else is a 404.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::health::Readiness;
use crate::metrics::Metrics;
use crate::plugin_status::PluginBoard;

/// What the listener answers from.
#[derive(Clone)]
pub struct Endpoints {
    /// The counters `/metrics` shows.
    pub metrics: Arc<Metrics>,
    /// What `/readyz` reports.
    pub readiness: Arc<Readiness>,
    /// What `/plugins` shows.
    pub plugins: Arc<PluginBoard>,
}

/// Binds the listener at `addr`.
pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))
}

/// Answers requests on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    endpoints: Endpoints,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let endpoints = endpoints.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req: Request<Incoming>| {
                            let response = respond(req.method(), req.uri().path(), &endpoints);
                            async move { Ok::<_, Infallible>(response) }
                        });
                        let served = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(Duration::from_secs(5))
                            .keep_alive(false)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                        if let Err(err) = served {
                            tracing::debug!(error = %err, "metrics request failed");
                        }
                    });
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot accept a metrics connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Which endpoint a request is for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    Healthz,
    Readyz,
    Plugins,
    NotFound,
}

fn route(method: &Method, path: &str) -> Route {
    if method != Method::GET && method != Method::HEAD {
        return Route::NotFound;
    }
    match path {
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/plugins" => Route::Plugins,
        _ => Route::NotFound,
    }
}

fn respond(method: &Method, path: &str, endpoints: &Endpoints) -> Response<Full<Bytes>> {
    let route = route(method, path);
    let content_type = match route {
        Route::Plugins => "application/json",
        Route::Metrics => crate::metrics::CONTENT_TYPE,
        _ => "text/plain; charset=utf-8",
    };
    let (status, body) = match route {
        Route::Metrics => {
            endpoints
                .metrics
                .connections(&endpoints.readiness.connections());
            (StatusCode::OK, endpoints.metrics.render())
        }
        Route::Healthz => (StatusCode::OK, "ok\n".to_string()),
        Route::Readyz => match endpoints.readiness.check() {
            Ok(()) => (StatusCode::OK, "ready\n".to_string()),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        Route::Plugins => (StatusCode::OK, endpoints.plugins.to_json()),
        Route::NotFound => (
            StatusCode::NOT_FOUND,
            "not found: try GET /metrics, /healthz, /readyz or /plugins\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_four_endpoints_are_served() {
        assert_eq!(route(&Method::GET, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::GET, "/healthz"), Route::Healthz);
        assert_eq!(route(&Method::HEAD, "/readyz"), Route::Readyz);
        assert_eq!(route(&Method::GET, "/plugins"), Route::Plugins);
        assert_eq!(route(&Method::POST, "/metrics"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/"), Route::NotFound);
    }

    #[test]
    fn readyz_says_why_not() {
        let endpoints = Endpoints {
            metrics: Arc::new(Metrics::default()),
            readiness: Arc::new(Readiness::default()),
            plugins: Arc::new(PluginBoard::default()),
        };
        let response = respond(&Method::GET, "/readyz", &endpoints);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            respond(&Method::GET, "/healthz", &endpoints).status(),
            StatusCode::OK
        );
        let plugins = respond(&Method::GET, "/plugins", &endpoints);
        assert_eq!(plugins.status(), StatusCode::OK);
        assert_eq!(plugins.headers()[header::CONTENT_TYPE], "application/json");
    }
}
