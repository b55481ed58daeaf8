"""The pure parts of `evhost_sdk.http`: URLs, the headers sent, how statuses
and `wasi:http` error codes become handler errors. (Sending calls the host;
tests/tests/python.rs sends through it to a real server.)"""

import unittest
from dataclasses import dataclass
from typing import Optional

from evhost_sdk import Permanent, Transient
from evhost_sdk.http import (
    Response,
    code_error,
    error_code_name,
    headers_to_send,
    split_url,
    status_error,
    text_error,
)


# The shapes componentize-py generates for `wasi:http/types`'s `error-code`
# variant, which only exist inside a component.
@dataclass
class ErrorCode_HttpRequestDenied:
    pass


@dataclass
class ErrorCode_ConnectionRefused:
    pass


@dataclass
class ErrorCode_HttpResponseBodySize:
    value: Optional[int]


@dataclass
class ErrorCode_InternalError:
    value: Optional[str]


class HttpTest(unittest.TestCase):
    def test_urls_split_into_scheme_authority_and_path(self) -> None:
        self.assertEqual(split_url("http://127.0.0.1:8080"), ("http", "127.0.0.1:8080", "/"))
        self.assertEqual(
            split_url("https://api.example/v1/charges?x=1#frag"),
            ("https", "api.example", "/v1/charges?x=1"),
        )
        for bad in ["ftp://x/", "api.example/charges", "http:///x", "http://a b/", "http://u:p@h/"]:
            with self.assertRaises(Permanent, msg=bad):
                split_url(bad)

    def test_the_idempotency_key_goes_on_unsafe_methods_unless_set(self) -> None:
        sent = headers_to_send("POST", [("accept", "*/*")], b"{}", "application/json", "p:1")
        self.assertEqual(
            sent,
            [
                ("accept", "*/*"),
                ("content-type", "application/json"),
                ("content-length", "2"),
                ("idempotency-key", "p:1"),
            ],
        )
        self.assertEqual(headers_to_send("GET", [], None, None, "p:1"), [])
        own = headers_to_send("PUT", [("Idempotency-Key", "mine")], None, None, "p:1")
        self.assertEqual(own, [("Idempotency-Key", "mine")])
        self.assertEqual(headers_to_send("DELETE", [], None, None, None), [])

    def test_statuses_sort_into_transient_and_permanent(self) -> None:
        self.assertIsNone(status_error(200, b""))
        self.assertIsNone(status_error(302, b""))
        for status in (500, 503, 408, 429):
            self.assertIsInstance(status_error(status, b"busy"), Transient, status)
        for status in (400, 402, 404):
            self.assertIsInstance(status_error(status, b"no"), Permanent, status)
        self.assertEqual(str(status_error(402, b"declined")), "HTTP 402: declined")
        with self.assertRaises(Transient):
            Response(503, [], b"").error_for_status()
        ok = Response(201, [("Content-Type", "application/json")], b'{"id":1}')
        self.assertIs(ok.error_for_status(), ok)
        self.assertEqual(ok.header("content-type"), "application/json")
        self.assertEqual(ok.json(), {"id": 1})
        with self.assertRaises(Permanent):
            Response(200, [], b"\xff").text()

    def test_error_codes_keep_their_wit_names(self) -> None:
        self.assertEqual(error_code_name(ErrorCode_HttpRequestDenied()), "http-request-denied")
        denied = code_error(ErrorCode_HttpRequestDenied())
        self.assertIsInstance(denied, Permanent)
        self.assertIn("refused by the host: http-request-denied", str(denied))
        self.assertIsInstance(code_error(ErrorCode_ConnectionRefused()), Transient)
        big = code_error(ErrorCode_HttpResponseBodySize(1024))
        self.assertIsInstance(big, Permanent)
        self.assertIn("http-response-body-size (1024)", str(big))
        self.assertIsInstance(code_error(ErrorCode_InternalError("x")), Transient)

    def test_errors_without_a_code_are_sorted_by_their_words(self) -> None:
        big = text_error("reading the response body: response body size exceeds limit of 1000")
        self.assertIsInstance(big, Permanent)
        self.assertIn("too large", str(big))
        self.assertIsInstance(text_error("reading the response body: timed out"), Transient)


if __name__ == "__main__":
    unittest.main()
