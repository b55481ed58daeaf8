//! Blocking outgoing HTTP for handlers, over the host's one-call
//! `evhost:plugin/http` (or, asked for, its `wasi:http`).
//!
//! This module owns [`Request`] (build and send), [`Response`] (status,
//! headers and the whole body), [`HttpError`] (why no response came back) and
//! how those failures become [`HandlerError`]s.
//!
//! ```no_run
//! use evhost_sdk::HandlerError;
//! use evhost_sdk::http::Request;
//!
//! # fn charge() -> Result<(), HandlerError> {
//! let response = Request::post("https://payments.example.com/v1/charges")
//!     .header("authorization", "Bearer secret")
//!     .json(&serde_json::json!({ "order_id": "o-1", "amount_cents": 500 }))?
//!     .timeout(std::time::Duration::from_secs(10))
//!     .send()?
//!     .error_for_status()?;
//! let receipt: serde_json::Value = response.json()?;
//! # let _ = receipt;
//! # Ok(())
//! # }
//! ```
//!
//! A request whose method is neither GET, HEAD nor OPTIONS carries
//! `Idempotency-Key: <key>`, with the key of the message being handled (see
//! [`crate::idempotency_key`]), so that a server honouring it applies a
//! redelivered message's effect once. Set the header yourself to send another
//! value, or call [`Request::without_idempotency_key`] to send none.
//!
//! A status is not an error: a 404 or a 503 comes back as a [`Response`]; use
//! [`Response::error_for_status`] to turn one into a [`HandlerError`].

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::HandlerError;
use crate::idempotency;

/// The header carrying the message's idempotency key.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The most bytes one `blocking-write-and-flush` accepts.
const WRITE_CHUNK: usize = 4096;

/// How many bytes to ask for per read of the response body.
const READ_CHUNK: u64 = 64 * 1024;

/// How much of an error response's body [`Response::error_for_status`] quotes.
const QUOTED_BODY: usize = 200;

/// An HTTP request method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `CONNECT`
    Connect,
    /// `OPTIONS`
    Options,
    /// `TRACE`
    Trace,
    /// `PATCH`
    Patch,
    /// Any other method, spelled as sent.
    Other(String),
}

impl Method {
    /// The method as sent on the wire, e.g. `"POST"`.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Connect => "CONNECT",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Patch => "PATCH",
            Method::Other(m) => m,
        }
    }

    /// Whether a request with this method carries the idempotency key.
    fn sends_idempotency_key(&self) -> bool {
        !matches!(self, Method::Get | Method::Head | Method::Options)
    }

    /// Whether a request with this method says `content-length: 0` when it has
    /// no body (some servers answer a bodiless POST without it with 411).
    fn expects_body(&self) -> bool {
        matches!(self, Method::Post | Method::Put | Method::Patch)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The host refused the destination (its allow-list does not name it).
    Denied(String),
    /// Connecting, waiting for the response, or waiting between body bytes
    /// took too long.
    Timeout(String),
    /// No connection: DNS failure, connection refused or reset, TLS failure.
    Connect(String),
    /// The response (its body or its headers) is over the host's limit.
    TooLarge(String),
    /// The request cannot be sent as built: bad URL, header, method or size.
    Invalid(String),
    /// Anything else, including a response body that does not decode.
    Other(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Denied(m) => write!(f, "HTTP destination refused by the host: {m}"),
            HttpError::Timeout(m) => write!(f, "HTTP request timed out: {m}"),
            HttpError::Connect(m) => write!(f, "HTTP connection failed: {m}"),
            HttpError::TooLarge(m) => write!(f, "HTTP response too large: {m}"),
            HttpError::Invalid(m) => write!(f, "invalid HTTP request: {m}"),
            HttpError::Other(m) => write!(f, "HTTP error: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Sorts an error that reached the guest without its `wasi:http` error code
/// by its text. wasmtime 48 passes the errors of a response body stream (a
/// body over the host's size limit, a body that stalls) to the guest as a
/// plain I/O error whose code cannot be read back, so its words are all
/// there is to go on.
fn classify_text(text: &str) -> HttpError {
    let lower = text.to_ascii_lowercase();
    if lower.contains("body size exceeds limit") || lower.contains("body-size") {
        HttpError::TooLarge(text.to_owned())
    } else if lower.contains("timeout") || lower.contains("timed out") {
        HttpError::Timeout(text.to_owned())
    } else {
        HttpError::Other(text.to_owned())
    }
}

/// A refused destination, a malformed request or an answer over the
/// plugin's own size limit fails the same way on every delivery, so it is
/// permanent; anything else may pass later: transient.
impl From<HttpError> for HandlerError {
    fn from(err: HttpError) -> Self {
        match err {
            HttpError::Denied(_) | HttpError::Invalid(_) | HttpError::TooLarge(_) => {
                HandlerError::permanent(err)
            }
            HttpError::Timeout(_) | HttpError::Connect(_) | HttpError::Other(_) => {
                HandlerError::transient(err)
            }
        }
    }
}

/// An HTTP request, built up and then [sent](Request::send).
#[derive(Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
    idempotency_key: bool,
    over_wasi_http: bool,
}

impl Request {
    /// A `method` request to `url` (`http://host[:port]/path?query` or
    /// `https://…`; the URL is checked by [`send`](Request::send)).
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
            idempotency_key: true,
            over_wasi_http: false,
        }
    }

    /// A GET request to `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Request::new(Method::Get, url)
    }

    /// A POST request to `url`.
    pub fn post(url: impl Into<String>) -> Self {
        Request::new(Method::Post, url)
    }

    /// A PUT request to `url`.
    pub fn put(url: impl Into<String>) -> Self {
        Request::new(Method::Put, url)
    }

    /// A DELETE request to `url`.
    pub fn delete(url: impl Into<String>) -> Self {
        Request::new(Method::Delete, url)
    }

    /// Adds a header (a name may repeat). The host forbids some, such as
    /// `host` and `connection`: [`send`](Request::send) then fails with
    /// [`HttpError::Invalid`].
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body (empty by default).
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = bytes.into();
        self
    }

    /// Sets the body to `value` as JSON, replacing any `content-type` with
    /// `application/json`. Failing to serialize is [`HttpError::Invalid`].
    pub fn json(mut self, value: &impl Serialize) -> Result<Self, HttpError> {
        self.body = serde_json::to_vec(value).map_err(|err| {
            HttpError::Invalid(format!("cannot encode the request body as JSON: {err}"))
        })?;
        self.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
        Ok(self.header("content-type", "application/json"))
    }

    /// Bounds the time to connect, to the first response byte, and between
    /// response body bytes, each to `timeout`, where the host accepts it (a
    /// host may ignore or cap it; the host's defaults apply otherwise).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends no `Idempotency-Key` header, not even on a POST.
    pub fn without_idempotency_key(mut self) -> Self {
        self.idempotency_key = false;
        self
    }

    /// Sends through the standard `wasi:http` interfaces instead of the
    /// host's one-call `evhost:plugin/http` (the default, which costs the
    /// host about a quarter less CPU per request). The destinations, limits,
    /// connections and errors are the same either way.
    pub fn over_wasi_http(mut self) -> Self {
        self.over_wasi_http = true;
        self
    }

    /// Sends the request and waits for the whole response. Any status,
    /// 4xx and 5xx included, is a [`Response`]; an [`HttpError`] means no
    /// response came back.
    pub fn send(self) -> Result<Response, HttpError> {
        let (scheme, authority, path_with_query) = split_url(&self.url)?;
        let headers = self.headers_to_send(idempotency::current);
        for (name, value) in &headers {
            check_header(name, value)?;
        }
        if self.over_wasi_http {
            return wasi_http::send(
                &self.method,
                scheme,
                &authority,
                &path_with_query,
                &headers,
                &self.body,
                self.timeout,
            );
        }
        let scheme = match scheme {
            UrlScheme::Http => "http",
            UrlScheme::Https => "https",
        };
        one_call::send(one_call::Request {
            method: self.method.as_str().to_owned(),
            url: format!("{scheme}://{authority}{path_with_query}"),
            headers,
            body: self.body,
            timeout_ns: self
                .timeout
                .map(|t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)),
        })
    }

    /// The headers as sent: the caller's, then the idempotency key (asked
    /// of `key`, the current message's, only when it is sent) and the
    /// content length where due.
    fn headers_to_send(&self, key: impl FnOnce() -> Option<String>) -> Vec<(String, String)> {
        let mut headers = self.headers.clone();
        let has = |headers: &[(String, String)], wanted: &str| {
            headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(wanted))
        };
        if self.idempotency_key
            && self.method.sends_idempotency_key()
            && !has(&headers, IDEMPOTENCY_KEY)
            && let Some(key) = key()
        {
            headers.push(("Idempotency-Key".to_owned(), key));
        }
        if (!self.body.is_empty() || self.method.expects_body()) && !has(&headers, "content-length")
        {
            headers.push(("content-length".to_owned(), self.body.len().to_string()));
        }
        headers
    }
}

/// Shows the method, URL, header names and body size, never header values
/// (they may hold credentials).
impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &names)
            .field("body_len", &self.body.len())
            .field("timeout", &self.timeout)
            .field("idempotency_key", &self.idempotency_key)
            .field("over_wasi_http", &self.over_wasi_http)
            .finish()
    }
}

/// A whole HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The headers, in order; a name may repeat. A value that is not UTF-8
    /// has its bad bytes replaced by U+FFFD.
    pub headers: Vec<(String, String)>,
    /// The body, exactly as received (after the host's limits).
    pub body: Vec<u8>,
}

impl Response {
    /// The status code, e.g. 200.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body, exactly as received.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text; a body that is not UTF-8 is [`HttpError::Other`].
    pub fn text(&self) -> Result<String, HttpError> {
        String::from_utf8(self.body.clone()).map_err(|err| {
            HttpError::Other(format!(
                "the HTTP {} response body is not UTF-8: {err}",
                self.status
            ))
        })
    }

    /// Decodes the body as JSON; failure is [`HttpError::Other`] naming the type.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|err| {
            let name = std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("the expected type");
            HttpError::Other(format!(
                "the HTTP {} response body does not decode as {name}: {err}",
                self.status
            ))
        })
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The response itself, unless its status is an error: 5xx and 429 are
    /// [`HandlerError::Transient`] (the server may recover), any other 4xx is
    /// [`HandlerError::Permanent`] (the same request fails again). The error
    /// quotes the start of the body.
    pub fn error_for_status(self) -> Result<Response, HandlerError> {
        let transient = self.status == 429 || (500..600).contains(&self.status);
        let permanent = !transient && (400..500).contains(&self.status);
        if !transient && !permanent {
            return Ok(self);
        }
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        let mut reason = format!("the server answered HTTP {}", self.status);
        if !text.is_empty() {
            let quoted: String = text.chars().take(QUOTED_BODY).collect();
            let more = if quoted.len() < text.len() { "…" } else { "" };
            reason.push_str(&format!(": {quoted}{more}"));
        }
        Err(if transient {
            HandlerError::transient(reason)
        } else {
            HandlerError::permanent(reason)
        })
    }
}

/// The scheme of a URL [`split_url`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlScheme {
    Http,
    Https,
}

/// Splits an `http://` or `https://` URL into its scheme, its authority
/// (`host[:port]`) and its path with query (`/` when empty); the fragment is
/// dropped. The URL must be ASCII, percent-encoded where needed.
fn split_url(url: &str) -> Result<(UrlScheme, String, String), HttpError> {
    let invalid = |why: &str| HttpError::Invalid(format!("URL {url:?} {why}"));
    if let Some(c) = url
        .chars()
        .find(|c| !c.is_ascii() || c.is_ascii_whitespace() || c.is_ascii_control())
    {
        return Err(invalid(&format!(
            "contains {c:?}: percent-encode it (and write a non-ASCII host in punycode)"
        )));
    }
    let (scheme, rest) = match url.split_once("://") {
        Some((s, rest)) if s.eq_ignore_ascii_case("http") => (UrlScheme::Http, rest),
        Some((s, rest)) if s.eq_ignore_ascii_case("https") => (UrlScheme::Https, rest),
        Some((s, _)) => {
            return Err(invalid(&format!(
                "has scheme {s:?}: only http and https are supported"
            )));
        }
        None => {
            return Err(invalid(
                "is not absolute: write http://host/… or https://host/…",
            ));
        }
    };
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    check_authority(authority).map_err(|why| invalid(&why))?;
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    Ok((scheme, authority.to_owned(), path))
}

/// Checks `host[:port]` (a host may be a bracketed IPv6 address).
fn check_authority(authority: &str) -> Result<(), String> {
    if authority.is_empty() {
        return Err("has no host".to_owned());
    }
    if authority.contains('@') {
        return Err("has credentials: send them in an authorization header instead".to_owned());
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (address, after) = bracketed
            .split_once(']')
            .ok_or_else(|| "has an unclosed [ in its host".to_owned())?;
        if address.is_empty()
            || !address
                .chars()
                .all(|c| c.is_ascii_hexdigit() || ":.%".contains(c))
        {
            return Err(format!("has a bad IPv6 address [{address}]"));
        }
        match after {
            "" => (address, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (address, Some(port)),
                None => return Err(format!("has {after:?} after its IPv6 address")),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".to_owned());
    }
    if !authority.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    {
        return Err(format!("has a bad host {host:?}"));
    }
    if let Some(port) = port
        && (port.is_empty()
            || !port.chars().all(|c| c.is_ascii_digit())
            || port.parse::<u16>().is_err())
    {
        return Err(format!("has a bad port {port:?}"));
    }
    Ok(())
}

/// Checks a header's name (an RFC 9110 token) and value (no CR, LF or NUL),
/// so that a bad one is reported by name before anything is sent.
fn check_header(name: &str, value: &str) -> Result<(), HttpError> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(HttpError::Invalid(format!("bad header name {name:?}")));
    }
    if value.chars().any(|c| matches!(c, '\r' | '\n' | '\0')) {
        return Err(HttpError::Invalid(format!(
            "header {name} has a CR, LF or NUL in its value"
        )));
    }
    Ok(())
}

/// A header value as text: as it came when it is UTF-8 (no copy), else
/// with each invalid sequence replaced by U+FFFD.
fn text(value: Vec<u8>) -> String {
    String::from_utf8(value)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
}

/// The `content-length` that `headers` announce, if one parses.
fn content_length(headers: &[(String, String)]) -> Option<u64> {
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
}

/// The host's one-call `evhost:plugin/http`.
mod one_call {
    pub(super) use crate::bindings::evhost::plugin::http::Request;
    use crate::bindings::evhost::plugin::http::{self as host, Failure};

    use super::{HttpError, Response, text};

    /// Sends `request` and takes the whole response, in one host call.
    pub(super) fn send(request: Request) -> Result<Response, HttpError> {
        match host::send(&request) {
            Ok(response) => Ok(Response {
                status: response.status,
                headers: response
                    .headers
                    .into_iter()
                    .map(|(name, value)| (name, text(value)))
                    .collect(),
                body: response.body,
            }),
            Err(failure) => Err(HttpError::from(failure)),
        }
    }

    /// The host's failure as the same [`HttpError`] a `wasi:http` error
    /// code of that kind becomes.
    impl From<Failure> for HttpError {
        fn from(failure: Failure) -> Self {
            match failure {
                Failure::Denied(m) => HttpError::Denied(m),
                Failure::Timeout(m) => HttpError::Timeout(m),
                Failure::Connect(m) => HttpError::Connect(m),
                Failure::TooLarge(m) => HttpError::TooLarge(m),
                Failure::Invalid(m) => HttpError::Invalid(m),
                Failure::Other(m) => HttpError::Other(m),
            }
        }
    }
}

/// Everything that calls the host's `wasi:http`.
mod wasi_http {
    use std::time::Duration;

    use wasi::http::outgoing_handler;
    use wasi::http::types::{
        ErrorCode, Fields, FutureIncomingResponse, HeaderError, IncomingResponse, OutgoingBody,
        OutgoingRequest, RequestOptions, Scheme,
    };
    use wasi::io::error::Error as IoError;
    use wasi::io::streams::StreamError;

    use super::{
        HttpError, Method, READ_CHUNK, Response, UrlScheme, WRITE_CHUNK, content_length, text,
    };

    /// Sends one request and reads the whole response.
    pub(super) fn send(
        method: &Method,
        scheme: UrlScheme,
        authority: &str,
        path_with_query: &str,
        headers: &[(String, String)],
        body: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Response, HttpError> {
        let request = OutgoingRequest::new(fields(headers)?);
        request
            .set_method(&to_wasi_method(method))
            .map_err(|()| HttpError::Invalid(format!("bad method {method}")))?;
        let scheme = match scheme {
            UrlScheme::Http => Scheme::Http,
            UrlScheme::Https => Scheme::Https,
        };
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| HttpError::Invalid(format!("scheme {scheme:?} refused")))?;
        request
            .set_authority(Some(authority))
            .map_err(|()| HttpError::Invalid(format!("bad authority {authority:?}")))?;
        request
            .set_path_with_query(Some(path_with_query))
            .map_err(|()| HttpError::Invalid(format!("bad path {path_with_query:?}")))?;
        let options = timeout.map(request_options);

        let outgoing_body = request
            .body()
            .map_err(|()| HttpError::Other("the request body was already taken".to_owned()))?;
        // The body is written after `handle`: the host streams it out while
        // it is written, so a large body cannot fill a buffer nobody drains.
        let future = outgoing_handler::handle(request, options).map_err(|c| from_error_code(&c))?;
        if let Err(err) = write_body(&outgoing_body, body) {
            // Dropping the unfinished body aborts the request. A failed
            // request often fails the write: prefer the request's reason.
            drop(outgoing_body);
            return Err(ready_error(&future).unwrap_or(err));
        }
        if let Err(code) = OutgoingBody::finish(outgoing_body, None) {
            return Err(ready_error(&future).unwrap_or_else(|| from_error_code(&code)));
        }

        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(from_error_code(&code)),
            Some(Err(())) => {
                return Err(HttpError::Other(
                    "the response was already taken".to_owned(),
                ));
            }
            None => {
                return Err(HttpError::Other(
                    "no response after waiting for it".to_owned(),
                ));
            }
        };
        read_response(response)
    }

    /// The request's headers as one `fields`, in one host call; when the
    /// host refuses the list, the header it refuses is found and named.
    fn fields(headers: &[(String, String)]) -> Result<Fields, HttpError> {
        let entries: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(name, value)| (name.clone(), value.as_bytes().to_vec()))
            .collect();
        Fields::from_list(&entries).map_err(|err| {
            let fields = Fields::new();
            for (name, value) in headers {
                if let Err(err) = fields.append(name, value.as_bytes()) {
                    return header_error(name, err);
                }
            }
            header_error("(one of the request's)", err)
        })
    }

    /// The options bounding each wait by `timeout`; a setter the host
    /// refuses leaves its default.
    fn request_options(timeout: Duration) -> RequestOptions {
        let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        let options = RequestOptions::new();
        let _ = options.set_connect_timeout(Some(nanos));
        let _ = options.set_first_byte_timeout(Some(nanos));
        let _ = options.set_between_bytes_timeout(Some(nanos));
        options
    }

    /// Writes `bytes` to the request body, at most [`WRITE_CHUNK`] per call.
    fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), HttpError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let stream = body.write().map_err(|()| {
            HttpError::Other("the request body stream was already taken".to_owned())
        })?;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            // Where the stream has room, a plain `write` (a cheaper host call
            // than the blocking one, which also waits for the flush); else
            // wait for room. `finish` ends the body either way.
            let written = match stream.check_write() {
                Ok(room) if room >= chunk.len() as u64 => stream.write(chunk),
                _ => stream.blocking_write_and_flush(chunk),
            };
            written.map_err(|err| stream_error(err, "writing the request body"))?;
        }
        Ok(())
    }

    /// The request's failure, if its response is already known to be one.
    fn ready_error(future: &FutureIncomingResponse) -> Option<HttpError> {
        match future.get() {
            Some(Ok(Err(code))) => Some(from_error_code(&code)),
            _ => None,
        }
    }

    /// Reads the status, the headers and the whole body: to the end of the
    /// stream, or to its `content-length` (no further read is needed to see
    /// that a body of announced length is complete).
    fn read_response(response: IncomingResponse) -> Result<Response, HttpError> {
        let status = response.status();
        let headers: Vec<(String, String)> = {
            let fields = response.headers();
            fields
                .entries()
                .into_iter()
                .map(|(name, value)| (name, text(value)))
                .collect()
        };
        let length = content_length(&headers);
        let incoming = response
            .consume()
            .map_err(|()| HttpError::Other("the response body was already taken".to_owned()))?;
        let mut body = Vec::with_capacity(length.map_or(0, |n| n.min(READ_CHUNK) as usize));
        if length != Some(0) {
            let stream = incoming.stream().map_err(|()| {
                HttpError::Other("the response body stream was already taken".to_owned())
            })?;
            while length.is_none_or(|n| (body.len() as u64) < n) {
                // What has arrived, without waiting; wait only when nothing has
                // (most small answers come with their headers).
                let read = match stream.read(READ_CHUNK) {
                    Ok(bytes) if bytes.is_empty() => stream.blocking_read(READ_CHUNK),
                    read => read,
                };
                match read {
                    Ok(bytes) => body.extend_from_slice(&bytes),
                    Err(StreamError::Closed) => break,
                    Err(err) => return Err(stream_error(err, "reading the response body")),
                }
            }
        }
        // The trailers are not read: dropping the body ends it.
        drop(incoming);
        drop(response);
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    fn to_wasi_method(method: &Method) -> wasi::http::types::Method {
        use wasi::http::types::Method as M;
        match method {
            Method::Get => M::Get,
            Method::Head => M::Head,
            Method::Post => M::Post,
            Method::Put => M::Put,
            Method::Delete => M::Delete,
            Method::Connect => M::Connect,
            Method::Options => M::Options,
            Method::Trace => M::Trace,
            Method::Patch => M::Patch,
            Method::Other(m) => M::Other(m.clone()),
        }
    }

    fn header_error(name: &str, err: HeaderError) -> HttpError {
        match err {
            HeaderError::InvalidSyntax => {
                HttpError::Invalid(format!("header {name} is not valid (invalid-syntax)"))
            }
            HeaderError::Forbidden => HttpError::Invalid(format!(
                "header {name} is not allowed by the host (forbidden)"
            )),
            HeaderError::Immutable => {
                HttpError::Other(format!("header {name} could not be set (immutable)"))
            }
        }
    }

    /// A stream failure, as the HTTP error behind it where the host says.
    fn stream_error(err: StreamError, doing: &str) -> HttpError {
        match err {
            StreamError::Closed => HttpError::Other(format!("stream closed while {doing}")),
            StreamError::LastOperationFailed(err) => io_error(&err, doing),
        }
    }

    fn io_error(err: &IoError, doing: &str) -> HttpError {
        match wasi::http::types::http_error_code(err) {
            Some(code) => from_error_code(&code),
            None => super::classify_text(&format!("{doing}: {}", err.to_debug_string())),
        }
    }

    /// Sorts a `wasi:http` error code into an [`HttpError`] whose message
    /// starts with the code's WIT name.
    pub(super) fn from_error_code(code: &ErrorCode) -> HttpError {
        use HttpError::{Connect, Denied, Invalid, Other, Timeout, TooLarge};
        fn opt(v: &Option<impl ToString>) -> String {
            v.as_ref()
                .map_or_else(|| "?".to_owned(), ToString::to_string)
        }
        let size = |v: &Option<u64>| format!("limit {}", opt(v));
        let field = |p: &wasi::http::types::FieldSizePayload| {
            format!("field {}, size {}", opt(&p.field_name), opt(&p.field_size))
        };
        let (kind, name, detail): (fn(String) -> HttpError, &str, String) = match code {
            ErrorCode::DnsTimeout => (Timeout, "dns-timeout", String::new()),
            ErrorCode::DnsError(p) => (
                Connect,
                "dns-error",
                format!("rcode {}, info code {}", opt(&p.rcode), opt(&p.info_code)),
            ),
            ErrorCode::DestinationNotFound => (Connect, "destination-not-found", String::new()),
            ErrorCode::DestinationUnavailable => {
                (Connect, "destination-unavailable", String::new())
            }
            ErrorCode::DestinationIpProhibited => {
                (Denied, "destination-ip-prohibited", String::new())
            }
            ErrorCode::DestinationIpUnroutable => {
                (Connect, "destination-ip-unroutable", String::new())
            }
            ErrorCode::ConnectionRefused => (Connect, "connection-refused", String::new()),
            ErrorCode::ConnectionTerminated => (Connect, "connection-terminated", String::new()),
            ErrorCode::ConnectionTimeout => (Timeout, "connection-timeout", String::new()),
            ErrorCode::ConnectionReadTimeout => (Timeout, "connection-read-timeout", String::new()),
            ErrorCode::ConnectionWriteTimeout => {
                (Timeout, "connection-write-timeout", String::new())
            }
            ErrorCode::ConnectionLimitReached => {
                (Connect, "connection-limit-reached", String::new())
            }
            ErrorCode::TlsProtocolError => (Connect, "tls-protocol-error", String::new()),
            ErrorCode::TlsCertificateError => (Connect, "tls-certificate-error", String::new()),
            ErrorCode::TlsAlertReceived(p) => (
                Connect,
                "tls-alert-received",
                format!("alert {}: {}", opt(&p.alert_id), opt(&p.alert_message)),
            ),
            ErrorCode::HttpRequestDenied => (Denied, "http-request-denied", String::new()),
            ErrorCode::HttpRequestLengthRequired => {
                (Invalid, "http-request-length-required", String::new())
            }
            ErrorCode::HttpRequestBodySize(n) => (Invalid, "http-request-body-size", size(n)),
            ErrorCode::HttpRequestMethodInvalid => {
                (Invalid, "http-request-method-invalid", String::new())
            }
            ErrorCode::HttpRequestUriInvalid => {
                (Invalid, "http-request-uri-invalid", String::new())
            }
            ErrorCode::HttpRequestUriTooLong => {
                (Invalid, "http-request-uri-too-long", String::new())
            }
            ErrorCode::HttpRequestHeaderSectionSize(n) => (
                Invalid,
                "http-request-header-section-size",
                format!("limit {}", opt(n)),
            ),
            ErrorCode::HttpRequestHeaderSize(p) => (
                Invalid,
                "http-request-header-size",
                p.as_ref().map_or_else(String::new, field),
            ),
            ErrorCode::HttpRequestTrailerSectionSize(n) => (
                Invalid,
                "http-request-trailer-section-size",
                format!("limit {}", opt(n)),
            ),
            ErrorCode::HttpRequestTrailerSize(p) => {
                (Invalid, "http-request-trailer-size", field(p))
            }
            ErrorCode::HttpResponseIncomplete => (Other, "http-response-incomplete", String::new()),
            ErrorCode::HttpResponseHeaderSectionSize(n) => (
                TooLarge,
                "http-response-header-section-size",
                format!("limit {}", opt(n)),
            ),
            ErrorCode::HttpResponseHeaderSize(p) => {
                (TooLarge, "http-response-header-size", field(p))
            }
            ErrorCode::HttpResponseBodySize(n) => (TooLarge, "http-response-body-size", size(n)),
            ErrorCode::HttpResponseTrailerSectionSize(n) => (
                TooLarge,
                "http-response-trailer-section-size",
                format!("limit {}", opt(n)),
            ),
            ErrorCode::HttpResponseTrailerSize(p) => {
                (TooLarge, "http-response-trailer-size", field(p))
            }
            ErrorCode::HttpResponseTransferCoding(c) => {
                (Other, "http-response-transfer-coding", opt(c))
            }
            ErrorCode::HttpResponseContentCoding(c) => {
                (Other, "http-response-content-coding", opt(c))
            }
            ErrorCode::HttpResponseTimeout => (Timeout, "http-response-timeout", String::new()),
            ErrorCode::HttpUpgradeFailed => (Other, "http-upgrade-failed", String::new()),
            ErrorCode::HttpProtocolError => (Other, "http-protocol-error", String::new()),
            ErrorCode::LoopDetected => (Other, "loop-detected", String::new()),
            ErrorCode::ConfigurationError => (Other, "configuration-error", String::new()),
            ErrorCode::InternalError(m) => (Other, "internal-error", opt(m)),
        };
        kind(if detail.is_empty() {
            name.to_owned()
        } else {
            format!("{name} ({detail})")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::wasi_http::from_error_code;
    use super::*;
    use wasi::http::types::{DnsErrorPayload, ErrorCode};

    fn split(url: &str) -> (UrlScheme, String, String) {
        split_url(url).unwrap_or_else(|err| panic!("{url}: {err}"))
    }

    fn rejected(url: &str) -> String {
        match split_url(url) {
            Err(HttpError::Invalid(why)) => why,
            other => panic!("{url}: expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn the_announced_content_length_is_read_whatever_the_case() {
        let headers = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            content_length(&headers(&[("Content-Length", " 34 ")])),
            Some(34)
        );
        assert_eq!(
            content_length(&headers(&[("x-a", "1"), ("content-length", "0")])),
            Some(0)
        );
        assert_eq!(
            content_length(&headers(&[("content-length", "lots")])),
            None
        );
        assert_eq!(
            content_length(&headers(&[("transfer-encoding", "chunked")])),
            None
        );
    }

    #[test]
    fn splits_urls() {
        let s =
            |scheme, authority: &str, path: &str| (scheme, authority.to_owned(), path.to_owned());
        use UrlScheme::{Http, Https};
        assert_eq!(split("http://example.com"), s(Http, "example.com", "/"));
        assert_eq!(split("http://example.com/"), s(Http, "example.com", "/"));
        assert_eq!(
            split("https://api.example.com:8443/v1/items?id=3&x=y"),
            s(Https, "api.example.com:8443", "/v1/items?id=3&x=y")
        );
        assert_eq!(split("http://h?x=1"), s(Http, "h", "/?x=1"));
        assert_eq!(split("http://h/p?q#frag"), s(Http, "h", "/p?q"));
        assert_eq!(
            split("HTTPS://Host.Example/A"),
            s(Https, "Host.Example", "/A")
        );
        assert_eq!(split("http://[::1]:8080/x"), s(Http, "[::1]:8080", "/x"));
        assert_eq!(split("http://[fe80::1]"), s(Http, "[fe80::1]", "/"));
        assert_eq!(
            split("http://10.0.0.1:80/a%20b"),
            s(Http, "10.0.0.1:80", "/a%20b")
        );
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(rejected("ftp://h/x").contains("\"ftp\""));
        assert!(rejected("example.com/x").contains("not absolute"));
        assert!(rejected("http://").contains("no host"));
        assert!(rejected("http:///path").contains("no host"));
        assert!(rejected("http://:80/").contains("no host"));
        assert!(rejected("http://user:pw@h/").contains("credentials"));
        assert!(rejected("http://h:99999/").contains("port"));
        assert!(rejected("http://h:/").contains("port"));
        assert!(rejected("http://h:8a/").contains("port"));
        assert!(rejected("http://a b/").contains("' '"));
        assert!(rejected("http://h/ä").contains("percent-encode"));
        assert!(rejected("http://[::1/").contains("unclosed"));
        assert!(rejected("http://[::1]x/").contains("after its IPv6"));
        assert!(rejected("http://a:b:c/").contains("port"));
        assert!(rejected("http://h_!/").contains("bad host"));
    }

    fn sent(request: &Request, key: Option<&str>) -> Vec<(String, String)> {
        request.headers_to_send(|| key.map(str::to_owned))
    }

    fn key_of(headers: &[(String, String)]) -> Vec<&str> {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("idempotency-key"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn idempotency_key_goes_on_unsafe_methods_only() {
        for request in [
            Request::post("http://h/"),
            Request::put("http://h/"),
            Request::delete("http://h/"),
            Request::new(Method::Patch, "http://h/"),
        ] {
            assert_eq!(key_of(&sent(&request, Some("k1"))), ["k1"], "{request:?}");
        }
        for method in [Method::Get, Method::Head, Method::Options] {
            let request = Request::new(method, "http://h/");
            assert!(
                key_of(&sent(&request, Some("k1"))).is_empty(),
                "{request:?}"
            );
        }
    }

    #[test]
    fn idempotency_key_yields_to_the_caller() {
        let own = Request::post("http://h/").header("IDEMPOTENCY-KEY", "mine");
        assert_eq!(key_of(&sent(&own, Some("k1"))), ["mine"]);
        let none = Request::post("http://h/").without_idempotency_key();
        assert!(key_of(&sent(&none, Some("k1"))).is_empty());
        assert!(key_of(&sent(&Request::post("http://h/"), None)).is_empty());
    }

    #[test]
    fn header_values_are_text_with_invalid_bytes_replaced() {
        assert_eq!(text(b"application/json".to_vec()), "application/json");
        assert_eq!(text("caf\u{e9}".as_bytes().to_vec()), "caf\u{e9}");
        assert_eq!(text(b"a\xffb".to_vec()), "a\u{fffd}b");
    }

    #[test]
    fn content_length_is_sent_for_bodies() {
        let length = |r: &Request| {
            sent(r, None)
                .into_iter()
                .find(|(n, _)| n == "content-length")
                .map(|(_, v)| v)
        };
        assert_eq!(length(&Request::get("http://h/")), None);
        assert_eq!(length(&Request::post("http://h/")).as_deref(), Some("0"));
        assert_eq!(
            length(&Request::put("http://h/").body("abc")).as_deref(),
            Some("3")
        );
        let own = Request::post("http://h/")
            .body("abc")
            .header("Content-Length", "3");
        assert_eq!(sent(&own, None).len(), 1);
    }

    #[test]
    fn json_body_sets_one_content_type() {
        let request = Request::post("http://h/")
            .header("Content-Type", "text/plain")
            .json(&serde_json::json!({ "a": 1 }))
            .unwrap();
        assert_eq!(request.body, br#"{"a":1}"#);
        let types: Vec<_> = request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .collect();
        assert_eq!(
            types,
            [&("content-type".to_owned(), "application/json".to_owned())]
        );
    }

    #[test]
    fn checks_headers() {
        assert!(check_header("x-trace-id", "a b;c").is_ok());
        assert!(matches!(check_header("", "v"), Err(HttpError::Invalid(_))));
        assert!(matches!(
            check_header("bad name", "v"),
            Err(HttpError::Invalid(_))
        ));
        assert!(matches!(
            check_header("x", "a\r\nb: c"),
            Err(HttpError::Invalid(_))
        ));
    }

    fn response(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn reads_responses() {
        let r = response(200, r#"{"id":7}"#);
        assert!(r.is_success());
        assert_eq!(r.status(), 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-missing"), None);
        assert_eq!(r.text().unwrap(), r#"{"id":7}"#);
        assert_eq!(r.json::<serde_json::Value>().unwrap()["id"], 7);
        let err = r.json::<Vec<u8>>().unwrap_err();
        assert!(
            matches!(&err, HttpError::Other(m) if m.contains("Vec<u8>")),
            "{err}"
        );
        let bad = Response {
            body: vec![0xff],
            ..response(200, "")
        };
        assert!(matches!(bad.text(), Err(HttpError::Other(_))));
        assert!(!response(301, "").is_success());
    }

    #[test]
    fn error_for_status_sorts_statuses() {
        assert!(response(204, "").error_for_status().is_ok());
        assert!(response(304, "").error_for_status().is_ok());
        for status in [429, 500, 503] {
            let err = response(status, " busy ").error_for_status().unwrap_err();
            assert_eq!(
                err,
                HandlerError::Transient(format!("the server answered HTTP {status}: busy"))
            );
        }
        for status in [400, 404, 409, 422] {
            let err = response(status, "").error_for_status().unwrap_err();
            assert_eq!(
                err,
                HandlerError::Permanent(format!("the server answered HTTP {status}"))
            );
        }
        let long = "x".repeat(500);
        match response(500, &long).error_for_status() {
            Err(HandlerError::Transient(m)) => assert!(m.ends_with('…') && m.len() < 300, "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn maps_error_codes() {
        let cases = [
            (
                ErrorCode::HttpRequestDenied,
                "Denied",
                "http-request-denied",
            ),
            (
                ErrorCode::DestinationIpProhibited,
                "Denied",
                "destination-ip-prohibited",
            ),
            (ErrorCode::DnsTimeout, "Timeout", "dns-timeout"),
            (
                ErrorCode::ConnectionTimeout,
                "Timeout",
                "connection-timeout",
            ),
            (
                ErrorCode::HttpResponseTimeout,
                "Timeout",
                "http-response-timeout",
            ),
            (
                ErrorCode::ConnectionRefused,
                "Connect",
                "connection-refused",
            ),
            (
                ErrorCode::TlsCertificateError,
                "Connect",
                "tls-certificate-error",
            ),
            (
                ErrorCode::HttpResponseBodySize(Some(1024)),
                "TooLarge",
                "http-response-body-size (limit 1024)",
            ),
            (
                ErrorCode::HttpRequestUriInvalid,
                "Invalid",
                "http-request-uri-invalid",
            ),
            (
                ErrorCode::InternalError(Some("boom".to_owned())),
                "Other",
                "internal-error (boom)",
            ),
            (
                ErrorCode::DnsError(DnsErrorPayload {
                    rcode: Some("NXDOMAIN".to_owned()),
                    info_code: None,
                }),
                "Connect",
                "dns-error (rcode NXDOMAIN, info code ?)",
            ),
        ];
        for (code, kind, message) in cases {
            let err = from_error_code(&code);
            let (got_kind, got) = match &err {
                HttpError::Denied(m) => ("Denied", m),
                HttpError::Timeout(m) => ("Timeout", m),
                HttpError::Connect(m) => ("Connect", m),
                HttpError::TooLarge(m) => ("TooLarge", m),
                HttpError::Invalid(m) => ("Invalid", m),
                HttpError::Other(m) => ("Other", m),
            };
            assert_eq!((got_kind, got.as_str()), (kind, message), "{code:?}");
        }
    }

    #[test]
    fn errors_without_a_code_are_sorted_by_their_words() {
        assert!(matches!(
            classify_text(
                "reading the response body: HTTP response body size exceeds limit: 100 bytes"
            ),
            HttpError::TooLarge(_)
        ));
        assert!(matches!(
            classify_text("reading the response body: connection read timeout"),
            HttpError::Timeout(_)
        ));
        assert!(matches!(
            classify_text("reset by peer"),
            HttpError::Other(_)
        ));
    }

    #[test]
    fn handler_errors_by_kind() {
        let permanent = |e: HttpError| matches!(HandlerError::from(e), HandlerError::Permanent(_));
        assert!(permanent(HttpError::Denied("d".into())));
        assert!(permanent(HttpError::Invalid("i".into())));
        assert!(!permanent(HttpError::Timeout("t".into())));
        assert!(!permanent(HttpError::Connect("c".into())));
        assert!(permanent(HttpError::TooLarge("l".into())));
        assert!(!permanent(HttpError::Other("o".into())));
        assert_eq!(
            HandlerError::from(HttpError::Denied("http-request-denied".into())),
            HandlerError::Permanent(
                "HTTP destination refused by the host: http-request-denied".into()
            )
        );
    }

    #[test]
    fn a_one_call_failure_is_the_http_error_of_its_kind() {
        use crate::bindings::evhost::plugin::http::Failure;
        for (failure, expected) in [
            (Failure::Denied("d".into()), HttpError::Denied("d".into())),
            (Failure::Timeout("t".into()), HttpError::Timeout("t".into())),
            (Failure::Connect("c".into()), HttpError::Connect("c".into())),
            (
                Failure::TooLarge("l".into()),
                HttpError::TooLarge("l".into()),
            ),
            (Failure::Invalid("i".into()), HttpError::Invalid("i".into())),
            (Failure::Other("o".into()), HttpError::Other("o".into())),
        ] {
            assert_eq!(HttpError::from(failure), expected);
        }
    }
}
