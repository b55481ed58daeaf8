//! Outbound HTTP in one call: `evhost:plugin/http.send`, the import the Rust
//! SDK sends through. The guest hands over the whole request as one record;
//! this module checks it (a token method, an absolute http(s) URL, header
//! names and values that cannot smuggle a line break, none of the headers
//! `wasi:http` forbids, a `content-length` that is the body's), hands it to
//! the plugin's [`HttpPolicy`] (the allow-list, the limits, the pool of
//! connections: the same path a `wasi:http` request takes) and reads the
//! response to its end within the limits. A failure comes back as the WIT
//! `failure`, sorted as the SDK sorts `wasi:http`'s error codes.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use wasmtime_wasi_http::{DEFAULT_FORBIDDEN_HEADERS, Error, RequestOptions, WasiBody};

use crate::outbound_http::HttpPolicy;
use crate::request_body::RequestBody;
use crate::runtime::evhost::plugin::http::{Failure, Request as Call, Response as Answer};

/// The most bytes of header names and values one request may carry: what
/// wasmtime-wasi-http allows a `wasi:http` `fields` by default.
const MAX_HEADER_SECTION: usize = 128 * 1024;

/// Sends `call` as the plugin whose policy is `policy`, and reads the whole
/// response.
pub async fn send(policy: &HttpPolicy, call: Call) -> Result<Answer, Failure> {
    let (request, options) = request_of(call)?;
    let timeouts = policy.timeouts(options);
    let (_, _, between_bytes) = timeouts;
    let request = request.map(|body| RequestBody::new(body, between_bytes));
    let (response, _) = policy
        .dispatch(request, timeouts)
        .await
        .map_err(failure_of)?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(failure_of)?.to_bytes();
    Ok(Answer {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
        body: body.into(),
    })
}

/// The request `call` describes, with the waits it asks for; `invalid` when
/// it cannot be sent as given.
fn request_of(call: Call) -> Result<(http::Request<WasiBody>, Option<RequestOptions>), Failure> {
    let invalid = |why: String| Failure::Invalid(why);
    let method = http::Method::from_bytes(call.method.as_bytes())
        .map_err(|_| invalid(format!("http-request-method-invalid: {:?}", call.method)))?;
    let uri: http::Uri = call
        .url
        .parse()
        .map_err(|_| invalid(format!("http-request-uri-invalid: {:?}", call.url)))?;
    let absolute = matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some();
    if !absolute {
        return Err(invalid(format!(
            "http-request-uri-invalid: {:?} is not an absolute http:// or https:// URL",
            call.url
        )));
    }
    let section: usize = call.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if section > MAX_HEADER_SECTION {
        return Err(invalid(format!(
            "http-request-header-section-size: {section} bytes of headers, over {MAX_HEADER_SECTION}"
        )));
    }
    let too_many = |_| invalid("http-request-header-section-size: too many headers".into());
    let mut headers = http::HeaderMap::new();
    for (name, value) in call.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("header name {name:?} is not a token")))?;
        if DEFAULT_FORBIDDEN_HEADERS.contains(&name) {
            return Err(invalid(format!("header {name} is set by the host")));
        }
        let value = http::HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
            invalid(format!(
                "header {name}: its value holds a control character"
            ))
        })?;
        headers.try_append(name, value).map_err(too_many)?;
    }
    let length = call.body.len();
    // One content-length, the body's: two (even one of them right) would
    // let a server or proxy that reads the other take part of the body for
    // a second request on the kept connection.
    let mut given = headers.get_all(http::header::CONTENT_LENGTH).iter();
    match (given.next(), given.next()) {
        (Some(_), Some(_)) => {
            return Err(invalid("more than one content-length".into()));
        }
        (Some(given), None) if given.as_bytes() != length.to_string().as_bytes() => {
            return Err(invalid(format!(
                "content-length {given:?} is not the body's length, {length}"
            )));
        }
        (Some(_), None) => {}
        (None, _) if length > 0 || expects_body(&method) => {
            headers
                .try_insert(http::header::CONTENT_LENGTH, length.into())
                .map_err(too_many)?;
        }
        (None, _) => {}
    }
    let body: WasiBody = Full::new(Bytes::from(call.body))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut request = http::Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    let options = call.timeout_ns.map(|ns| {
        let wait = Some(Duration::from_nanos(ns));
        RequestOptions {
            connect_timeout: wait,
            first_byte_timeout: wait,
            between_bytes_timeout: wait,
        }
    });
    Ok((request, options))
}

/// Whether a request with `method` says `content-length: 0` when its body
/// is empty (some servers answer a bodiless POST without it with 411).
fn expects_body(method: &http::Method) -> bool {
    [http::Method::POST, http::Method::PUT, http::Method::PATCH].contains(method)
}

/// The WIT `failure` of a request that got no whole response: refused
/// destinations are `denied`; a request the host or server will not take,
/// `invalid`; a response over the limits, `too-large`; every wait that ran
/// out, `timeout`; no connection, `connect`; the rest, `other`. Each says
/// which `wasi:http` error code it is.
fn failure_of(err: Error) -> Failure {
    use Failure as F;
    match err {
        Error::HttpRequestDenied | Error::DestinationIpProhibited => {
            F::Denied("http-request-denied".into())
        }
        Error::DnsTimeout => F::Timeout("dns-timeout".into()),
        Error::ConnectionTimeout => F::Timeout("connection-timeout".into()),
        Error::ConnectionReadTimeout => F::Timeout("connection-read-timeout".into()),
        Error::ConnectionWriteTimeout => F::Timeout("connection-write-timeout".into()),
        Error::HttpResponseTimeout => F::Timeout("http-response-timeout".into()),
        Error::Connect(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            F::Connect(format!("connection-refused: {e}"))
        }
        Error::Connect(e) => F::Connect(format!("destination-unavailable: {e}")),
        Error::Tls(e) => F::Connect(format!("tls-protocol-error: {e}")),
        Error::DnsError { rcode, .. } => F::Connect(format!(
            "dns-error: {}",
            rcode.as_deref().unwrap_or("no answer")
        )),
        Error::ConnectionRefused => F::Connect("connection-refused".into()),
        Error::ConnectionTerminated => F::Connect("connection-terminated".into()),
        Error::ConnectionLimitReached => F::Connect("connection-limit-reached".into()),
        Error::DestinationNotFound => F::Connect("destination-not-found".into()),
        Error::DestinationUnavailable => F::Connect("destination-unavailable".into()),
        Error::DestinationIpUnroutable => F::Connect("destination-ip-unroutable".into()),
        Error::TlsProtocolError => F::Connect("tls-protocol-error".into()),
        Error::TlsCertificateError => F::Connect("tls-certificate-error".into()),
        Error::TlsAlertReceived { alert_message, .. } => F::Connect(format!(
            "tls-alert-received: {}",
            alert_message.as_deref().unwrap_or("no message")
        )),
        Error::HttpResponseBodySize(limit) => F::TooLarge(format!(
            "http-response-body-size: over {} bytes",
            limit.map_or_else(|| "the limit's".to_string(), |n| n.to_string())
        )),
        Error::HttpResponseHeaderSectionSize(_) | Error::HttpResponseHeaderSize { .. } => {
            F::TooLarge("http-response-header-size".into())
        }
        Error::HttpRequestUriInvalid => F::Invalid("http-request-uri-invalid".into()),
        Error::HttpRequestUriTooLong => F::Invalid("http-request-uri-too-long".into()),
        Error::HttpRequestMethodInvalid => F::Invalid("http-request-method-invalid".into()),
        Error::HttpRequestLengthRequired => F::Invalid("http-request-length-required".into()),
        Error::HttpRequestBodySize(_) => F::Invalid("http-request-body-size".into()),
        Error::Hyper(e) if e.is_timeout() => F::Timeout(format!("http-response-timeout: {e}")),
        Error::Hyper(e) => F::Other(format!("http-protocol-error: {e}")),
        other => F::Other(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Call {
        Call {
            method: method.into(),
            url: url.into(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.to_vec(),
            timeout_ns: None,
        }
    }

    fn refused(c: Call) -> String {
        match request_of(c) {
            Err(Failure::Invalid(why)) => why,
            Err(other) => panic!("not invalid: {other:?}"),
            Ok((r, _)) => panic!("sent: {r:?}"),
        }
    }

    #[test]
    fn a_request_is_built_as_given_with_its_length() {
        let mut c = call(
            "POST",
            "https://api.example/v1/charges?x=1",
            &[("idempotency-key", "p:1"), ("accept", "a"), ("accept", "b")],
            b"{}",
        );
        c.timeout_ns = Some(2_000_000);
        let (request, options) = request_of(c).unwrap();
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(
            request.uri().to_string(),
            "https://api.example/v1/charges?x=1"
        );
        assert_eq!(request.headers()["idempotency-key"], "p:1");
        let accepts: Vec<_> = request.headers().get_all("accept").iter().collect();
        assert_eq!(accepts, ["a", "b"]);
        assert_eq!(request.headers()["content-length"], "2");
        let options = options.unwrap();
        assert_eq!(options.first_byte_timeout, Some(Duration::from_millis(2)));
        assert_eq!(options.connect_timeout, Some(Duration::from_millis(2)));
        assert_eq!(
            options.between_bytes_timeout,
            Some(Duration::from_millis(2))
        );
    }

    #[test]
    fn an_empty_post_says_so_and_a_get_says_nothing() {
        let (post, _) = request_of(call("POST", "http://h/", &[], b"")).unwrap();
        assert_eq!(post.headers()["content-length"], "0");
        let (get, options) = request_of(call("GET", "http://h/", &[], b"")).unwrap();
        assert!(get.headers().get("content-length").is_none());
        assert!(options.is_none());
    }

    #[test]
    fn hostile_requests_are_invalid_before_anything_is_sent() {
        for (c, says) in [
            (call("GE T", "http://h/", &[], b""), "method"),
            (call("GET\r\nX: y", "http://h/", &[], b""), "method"),
            (call("GET", "/relative", &[], b""), "absolute"),
            (call("GET", "ftp://h/", &[], b""), "absolute"),
            (call("GET", "http://h/a b", &[], b""), "uri"),
            (
                call("GET", "http://h/", &[("x", "a\r\nInjected: 1")], b""),
                "control",
            ),
            (call("GET", "http://h/", &[("x", "nul\0")], b""), "control"),
            (call("GET", "http://h/", &[("bad name", "v")], b""), "token"),
            (call("GET", "http://h/", &[("x\r\ny", "v")], b""), "token"),
            (
                call("GET", "http://h/", &[("Host", "other")], b""),
                "set by the host",
            ),
            (
                call(
                    "POST",
                    "http://h/",
                    &[("transfer-encoding", "chunked")],
                    b"x",
                ),
                "set by the host",
            ),
            (
                call("GET", "http://h/", &[("connection", "close")], b""),
                "set by the host",
            ),
            (
                call("POST", "http://h/", &[("content-length", "1")], b"ab"),
                "not the body's length",
            ),
            (
                call("POST", "http://h/", &[("content-length", "02")], b"ab"),
                "not the body's length",
            ),
            (
                call(
                    "POST",
                    "http://h/",
                    &[("content-length", "2"), ("Content-Length", "99")],
                    b"ab",
                ),
                "more than one content-length",
            ),
            (
                call(
                    "POST",
                    "http://h/",
                    &[("content-length", "2"), ("content-length", "2")],
                    b"ab",
                ),
                "more than one content-length",
            ),
        ] {
            let why = refused(c);
            assert!(why.contains(says), "{why:?} should say {says:?}");
        }
        // More headers than a header map holds, or more bytes than the
        // section may have: refused, not a panic.
        let radix36 = |mut i: usize| {
            let mut name = String::new();
            loop {
                name.push(char::from_digit((i % 36) as u32, 36).unwrap());
                i /= 36;
                if i == 0 {
                    return name;
                }
            }
        };
        let mut c = call("GET", "http://h/", &[], b"");
        c.headers = (0..40_000).map(|i| (radix36(i), String::new())).collect();
        let section: usize = c.headers.iter().map(|(n, _)| n.len()).sum();
        assert!(section < MAX_HEADER_SECTION, "{section}");
        assert!(refused(c).contains("too many headers"));
        let mut c = call("GET", "http://h/", &[], b"");
        c.headers = vec![("x".into(), "v".repeat(MAX_HEADER_SECTION))];
        assert!(refused(c).contains("header-section-size"));
        // The body's own length, given, is taken as it is.
        let (ok, _) =
            request_of(call("POST", "http://h/", &[("content-length", "2")], b"ab")).unwrap();
        assert_eq!(ok.headers()["content-length"], "2");
    }

    #[test]
    fn failures_sort_as_the_sdk_sorts_wasi_http_error_codes() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for (err, kind) in [
            (Error::HttpRequestDenied, "denied"),
            (Error::ConnectionTimeout, "timeout"),
            (Error::ConnectionReadTimeout, "timeout"),
            (Error::Connect(refused), "connect"),
            (Error::ConnectionTerminated, "connect"),
            (Error::HttpResponseBodySize(Some(10)), "too-large"),
            (Error::HttpRequestUriInvalid, "invalid"),
            (Error::InternalError(Some("closed".into())), "other"),
        ] {
            let got = match failure_of(err) {
                Failure::Denied(_) => "denied",
                Failure::Timeout(_) => "timeout",
                Failure::Connect(_) => "connect",
                Failure::TooLarge(_) => "too-large",
                Failure::Invalid(_) => "invalid",
                Failure::Other(_) => "other",
            };
            assert_eq!(got, kind);
        }
        let Failure::Connect(why) = failure_of(Error::Connect(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        ))) else {
            unreachable!()
        };
        assert!(why.starts_with("connection-refused"), "{why}");
    }
}
