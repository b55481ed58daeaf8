"""Outgoing messages and their JSON (`evhost_sdk.message`)."""

import unittest
from dataclasses import dataclass

from evhost_sdk import Message, Outgoing, Permanent


@dataclass
class Paid:
    order_id: str
    amount_cents: int


class MessageTest(unittest.TestCase):
    def test_json_is_compact_utf8_with_a_content_type(self) -> None:
        out = Outgoing.json("s", {"a": "é", "b": [1, 2]})
        self.assertEqual(out.payload, '{"a":"é","b":[1,2]}'.encode())
        self.assertEqual(out.headers, [("content-type", "application/json")])
        out = Outgoing.json("s", Paid("o", 5), [("Content-Type", "text/x")])
        self.assertEqual(out.payload, b'{"order_id":"o","amount_cents":5}')
        self.assertEqual(out.headers, [("Content-Type", "text/x")])

    def test_what_json_cannot_encode_is_permanent(self) -> None:
        with self.assertRaises(Permanent) as caught:
            Outgoing.json("s", {"x": object()})
        self.assertIn("cannot encode the output as JSON", str(caught.exception))
        with self.assertRaises(Permanent):
            Outgoing.json("s", float("nan"))

    def test_message_json_and_headers(self) -> None:
        msg = Message("s", [("A", "1"), ("a", "2")], b'{"k":1}', None, 1)
        self.assertEqual(msg.header("a"), "1")
        self.assertEqual(msg.json(), {"k": 1})
        with self.assertRaises(Permanent):
            Message("s", [], b"{", None, 1).json()


if __name__ == "__main__":
    unittest.main()
