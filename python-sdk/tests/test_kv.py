"""The pure parts of `evhost_sdk.kv`: which store errors a retry can fix, and
the JSON of values. (`Bucket` itself calls the host; tests/tests/python.rs
runs it in a component against a real bucket.)"""

import unittest
from dataclasses import dataclass

from evhost_sdk import Permanent, Transient
from evhost_sdk.kv import decode, encode, store_error


# The shapes componentize-py generates for `wasi:keyvalue/store`'s `error`
# variant (wit_world.imports.store), which only exist inside a component.
@dataclass
class Error_NoSuchStore:
    pass


@dataclass
class Error_AccessDenied:
    pass


@dataclass
class Error_Other:
    value: str


@dataclass
class Stock:
    available: int


class KvTest(unittest.TestCase):
    def test_errors_a_retry_cannot_fix_are_permanent(self) -> None:
        refused = store_error("stock", Error_NoSuchStore())
        self.assertIsInstance(refused, Permanent)
        self.assertIn("'stock' is not granted", str(refused))
        self.assertIsInstance(store_error("b", Error_AccessDenied()), Permanent)
        for text in [
            'invalid key "a b": use letters',
            "value of 9 bytes is over the limit of 1 (limits.kv_max_value_bytes)",
            "a batch of 1001 keys is over the limit of 1000",
        ]:
            err = store_error("b", Error_Other(text))
            self.assertIsInstance(err, Permanent, text)
            self.assertEqual(str(err), f"key-value: {text}")
        down = store_error("b", Error_Other("key-value store: timed out"))
        self.assertIsInstance(down, Transient)

    def test_values_are_compact_json(self) -> None:
        self.assertEqual(encode("k", {"a": [1, 2], "b": "é"}), '{"a":[1,2],"b":"é"}'.encode())
        self.assertEqual(encode("k", Stock(3)), b'{"available":3}')
        self.assertEqual(decode("k", b'{"available":3}'), {"available": 3})
        self.assertEqual(decode("k", b"7"), 7)

    def test_what_does_not_encode_or_decode_is_permanent(self) -> None:
        with self.assertRaises(Permanent) as caught:
            decode("p-1", b"{not json")
        self.assertIn("the value of 'p-1' does not decode", str(caught.exception))
        with self.assertRaises(Permanent):
            encode("k", object())
        with self.assertRaises(Permanent):
            encode("k", float("nan"))


if __name__ == "__main__":
    unittest.main()
