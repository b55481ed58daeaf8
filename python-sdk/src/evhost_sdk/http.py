"""Outbound HTTP for handlers, over the standard `wasi:http` interfaces, to
the destinations the plugin's manifest grants (`[capabilities] http`).

```python
from evhost_sdk import http

charge = http.post(f"{url}/charges", json={"order_id": order.order_id})
charge.error_for_status()          # 5xx and 429 Transient, other 4xx Permanent
charge_id = charge.json()["charge_id"]
```

Every request but GET, HEAD and OPTIONS carries the message's idempotency
key as `Idempotency-Key` unless the caller sets one or passes
`idempotency_key=False`. A destination the host refuses, a request that
cannot be sent as built or an answer over the host's size limit is
`Permanent`; a connection that fails or a timeout is `Transient`.

The component must be built against the `handler-http` world
(`componentize-py -w handler-http`, or `http = true` under `[tool.evhost]`
in `pyproject.toml` for `evhost build`), which imports `wasi:http`; the rest
of this module imports anywhere.
"""

import json as _json
import re
from typing import Any, List, Optional, Sequence, Tuple

from .errors import HandlerError, Permanent, Transient
from .message import encode_json

Header = Tuple[str, str]

#: The most one `blocking-write-and-flush` takes (wasi:io's limit).
WRITE_CHUNK = 4096
#: What one read asks for.
READ_CHUNK = 64 * 1024

#: Methods that send no idempotency key by default: safe to repeat anyway.
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

#: `wasi:http` error codes a retry cannot fix: the host refused the
#: destination, the request cannot be sent as built, or the answer is over a
#: limit. Any other code (connection, TLS, timeouts, protocol) may work later.
PERMANENT_CODES = frozenset(
    [
        "http-request-denied",
        "destination-ip-prohibited",
        "http-request-length-required",
        "http-request-body-size",
        "http-request-method-invalid",
        "http-request-uri-invalid",
        "http-request-uri-too-long",
        "http-request-header-section-size",
        "http-request-header-size",
        "http-request-trailer-section-size",
        "http-request-trailer-size",
        "http-response-header-section-size",
        "http-response-header-size",
        "http-response-body-size",
        "http-response-trailer-section-size",
        "http-response-trailer-size",
    ]
)


class Response:
    """What the server answered: `status`, `headers` (in order) and the whole
    `body`."""

    def __init__(self, status: int, headers: List[Header], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> Optional[str]:
        """The first value of header `name` (any case), or `None`."""
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    def text(self) -> str:
        """The body as UTF-8; `Permanent` when it is not."""
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError as err:
            raise Permanent(f"HTTP response body is not UTF-8: {err}") from None

    def json(self) -> Any:
        """The body decoded as JSON; `Permanent` when it does not decode."""
        try:
            return _json.loads(self.body)
        except ValueError as err:
            raise Permanent(f"HTTP response body is not JSON: {err}") from None

    def is_success(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status < 300

    def error_for_status(self) -> "Response":
        """This response when it is 2xx or 3xx; else raises: `Transient` for
        5xx, 408 and 429 (the provider may answer later), `Permanent` for
        any other 4xx."""
        error = status_error(self.status, self.body)
        if error is not None:
            raise error
        return self


def status_error(status: int, body: bytes) -> Optional[HandlerError]:
    """The handler error for an answer with `status`, if it is one."""
    if status < 400:
        return None
    text = body[:200].decode("utf-8", "replace")
    message = f"HTTP {status}: {text}" if text else f"HTTP {status}"
    if status >= 500 or status in (408, 429):
        return Transient(message)
    return Permanent(message)


def error_code_name(code: Any) -> str:
    """The WIT name of a `wasi:http` error code from the bindings
    (`ErrorCode_HttpRequestDenied()` is `http-request-denied`)."""
    kind = type(code).__name__
    kind = kind.split("_", 1)[1] if kind.startswith("ErrorCode_") else kind
    return re.sub(r"(?<!^)(?=[A-Z])", "-", kind).lower()


def code_error(code: Any) -> HandlerError:
    """The handler error for a `wasi:http` error code."""
    name = error_code_name(code)
    detail = getattr(code, "value", None)
    described = f"{name} ({detail})" if detail is not None else name
    if name in PERMANENT_CODES:
        if name in ("http-request-denied", "destination-ip-prohibited"):
            return Permanent(f"HTTP destination refused by the host: {described}")
        return Permanent(f"HTTP request failed: {described}")
    return Transient(f"HTTP request failed: {described}")


def text_error(text: str) -> HandlerError:
    """The handler error for a failure that reached the guest without its
    `wasi:http` error code: wasmtime 48 passes the errors of a response body
    stream (a body over the host's size limit, a body that stalls) as a plain
    I/O error, so its words are all there is to go on."""
    lowered = text.lower()
    if "body size exceeds limit" in lowered or "body-size" in lowered:
        return Permanent(f"HTTP response too large: {text}")
    return Transient(f"HTTP request failed: {text}")


def split_url(url: str) -> Tuple[str, str, str]:
    """`(scheme, authority, path_with_query)` of an absolute http(s) URL;
    `Permanent` for anything else."""
    match = re.fullmatch(r"(https?)://([^/?#\s]+)([^#\s]*)(#.*)?", url)
    if match is None:
        raise Permanent(f"invalid HTTP request: {url!r} is not an http:// or https:// URL")
    scheme, authority, path = match.group(1), match.group(2), match.group(3)
    if "@" in authority:
        raise Permanent(f"invalid HTTP request: {url!r} carries credentials in its authority")
    if not path.startswith("/"):
        path = "/" + path
    return scheme, authority, path


def headers_to_send(
    method: str,
    headers: Sequence[Header],
    body: Optional[bytes],
    content_type: Optional[str],
    key: Optional[str],
) -> List[Header]:
    """The request's headers: the caller's, then `content-type` (when the
    body has one and the caller set none), `content-length` for a body, and
    `Idempotency-Key` (`key`) for an unsafe method unless the caller set it."""
    sent = list(headers)
    names = {k.lower() for k, _ in sent}
    if content_type is not None and "content-type" not in names:
        sent.append(("content-type", content_type))
    if body and "content-length" not in names:
        sent.append(("content-length", str(len(body))))
    if key and method.upper() not in SAFE_METHODS and "idempotency-key" not in names:
        sent.append(("idempotency-key", key))
    return sent


def request(
    method: str,
    url: str,
    *,
    headers: Sequence[Header] = (),
    body: Optional[bytes] = None,
    json: Any = None,
    timeout: Optional[float] = None,
    idempotency_key: bool = True,
) -> Response:
    """Sends one request and reads the whole answer. `json` (instead of
    `body`) is sent encoded, with `content-type: application/json`;
    `timeout` (seconds) bounds connecting and each wait for the answer (the
    host's `http_*` limits still apply, and `timeout_ms` bounds the call)."""
    content_type = None
    if json is not None:
        if body is not None:
            raise Permanent("invalid HTTP request: give body or json, not both")
        try:
            body = encode_json(json)
        except (TypeError, ValueError) as err:
            raise Permanent(f"invalid HTTP request: the body does not encode as JSON: {err}") from None
        content_type = "application/json"
    scheme, authority, path = split_url(url)
    key = None
    if idempotency_key:
        from .host import idempotency_key as asked

        key = asked() or None
    sent = headers_to_send(method, headers, body, content_type, key)
    return _send(method.upper(), scheme, authority, path, sent, body or b"", timeout)


def get(url: str, **kwargs: Any) -> Response:
    """`request("GET", url, ...)`."""
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> Response:
    """`request("POST", url, ...)`."""
    return request("POST", url, **kwargs)


def put(url: str, **kwargs: Any) -> Response:
    """`request("PUT", url, ...)`."""
    return request("PUT", url, **kwargs)


def delete(url: str, **kwargs: Any) -> Response:
    """`request("DELETE", url, ...)`."""
    return request("DELETE", url, **kwargs)


def _send(
    method: str,
    scheme: str,
    authority: str,
    path: str,
    headers: List[Header],
    body: bytes,
    timeout: Optional[float],
) -> Response:
    from componentize_py_types import Err, Ok
    from wit_world.imports import outgoing_handler
    from wit_world.imports import wasi_http_types as t

    methods = {
        "GET": t.Method_Get,
        "HEAD": t.Method_Head,
        "POST": t.Method_Post,
        "PUT": t.Method_Put,
        "DELETE": t.Method_Delete,
        "CONNECT": t.Method_Connect,
        "OPTIONS": t.Method_Options,
        "TRACE": t.Method_Trace,
        "PATCH": t.Method_Patch,
    }
    try:
        fields = t.Fields.from_list([(k, v.encode("utf-8")) for k, v in headers])
    except Err as err:
        raise Permanent(f"invalid HTTP request: a header was refused ({err.value})") from None
    request = t.OutgoingRequest(fields)
    try:
        kind = methods.get(method)
        request.set_method(kind() if kind is not None else t.Method_Other(method))
        request.set_scheme(t.Scheme_Https() if scheme == "https" else t.Scheme_Http())
        request.set_authority(authority)
        request.set_path_with_query(path)
    except Err:
        raise Permanent(f"invalid HTTP request: {method} {scheme}://{authority}{path}") from None
    options = None
    if timeout is not None:
        nanos = max(0, int(timeout * 1e9))
        options = t.RequestOptions()
        for setter in (
            options.set_connect_timeout,
            options.set_first_byte_timeout,
            options.set_between_bytes_timeout,
        ):
            try:
                setter(nanos)
            except Err:
                pass  # the host keeps its own limit
    outgoing = request.body()
    try:
        future = outgoing_handler.handle(request, options)
    except Err as err:
        raise code_error(err.value) from None
    # The body is written after `handle`, so the host streams it out as it
    # is written; the stream goes before the body is finished.
    if body:
        stream = outgoing.write()
        try:
            for start in range(0, len(body), WRITE_CHUNK):
                stream.blocking_write_and_flush(body[start : start + WRITE_CHUNK])
        except Err:
            stream.__exit__(None, None, None)
            outgoing.__exit__(None, None, None)
            raise _failed(future, Transient("HTTP request failed: writing the body")) from None
        stream.__exit__(None, None, None)
    try:
        t.OutgoingBody.finish(outgoing, None)
    except Err as err:
        raise _failed(future, code_error(err.value)) from None

    pollable = future.subscribe()
    pollable.block()
    pollable.__exit__(None, None, None)
    answer = future.get()
    future.__exit__(None, None, None)
    if answer is None or isinstance(answer, Err):
        raise Transient("HTTP request failed: no response after waiting for it")
    result = answer.value if isinstance(answer, Ok) else answer
    if isinstance(result, Err):
        raise code_error(result.value)
    response = result.value if isinstance(result, Ok) else result
    return _read(response)


def _failed(future: Any, fallback: HandlerError) -> HandlerError:
    """The request's own failure, when it is already known; else `fallback`."""
    from componentize_py_types import Err, Ok

    answer = future.get()
    if isinstance(answer, Ok) and isinstance(answer.value, Err):
        return code_error(answer.value.value)
    return fallback


def _read(response: Any) -> Response:
    from componentize_py_types import Err
    from wit_world.imports import streams

    status = response.status()
    fields = response.headers()
    headers = [(k, v.decode("utf-8", "replace")) for k, v in fields.entries()]
    fields.__exit__(None, None, None)
    incoming = response.consume()
    stream = incoming.stream()
    chunks = []
    try:
        while True:
            try:
                chunks.append(stream.blocking_read(READ_CHUNK))
            except Err as err:
                if isinstance(err.value, streams.StreamError_Closed):
                    break
                raise _stream_error(err.value) from None
    finally:
        stream.__exit__(None, None, None)
        incoming.__exit__(None, None, None)
        response.__exit__(None, None, None)
    return Response(status, headers, b"".join(chunks))


def _stream_error(error: Any) -> HandlerError:
    """The handler error for a failed read of the response body: by the
    `wasi:http` error code behind it where the host gives one, else by the
    error's words."""
    from wit_world.imports import wasi_http_types as t

    failed = getattr(error, "value", None)
    if failed is None:
        return Transient("HTTP request failed: reading the response body")
    code = t.http_error_code(failed)
    if code is not None:
        return code_error(code)
    return text_error(f"reading the response body: {failed.to_debug_string()}")
