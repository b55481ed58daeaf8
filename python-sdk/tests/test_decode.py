"""Decoding payloads into handler types (`evhost_sdk.decode`)."""

import unittest
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from evhost_sdk.decode import DecodeError, decode_payload


@dataclass
class Item:
    product_id: str
    quantity: int

    def __post_init__(self) -> None:
        if self.quantity < 0:
            raise ValueError("quantity is negative")


@dataclass
class Order:
    order_id: str
    items: List[Item]
    total: float
    paid: bool
    note: Optional[str] = None
    tags: Dict[str, Any] = field(default_factory=dict)


class DecodeTest(unittest.TestCase):
    def test_nested_dataclasses_decode_and_unknown_fields_are_ignored(self) -> None:
        order = decode_payload(
            b'{"order_id":"o-1","items":[{"product_id":"p","quantity":2,"x":1}],'
            b'"total":5,"paid":true,"extra":[1]}',
            Order,
        )
        self.assertEqual(order, Order("o-1", [Item("p", 2)], 5.0, True))
        self.assertIsInstance(order.total, float)

    def test_failures_name_the_field(self) -> None:
        cases = {
            b'{"order_id":"o","items":[],"total":1}': "missing field 'paid'",
            b'{"order_id":1,"items":[],"total":1,"paid":true}': "at order_id",
            b'{"order_id":"o","items":[{"product_id":"p","quantity":1.5}],"total":1,"paid":true}':
                "at items[0].quantity",
            b'{"order_id":"o","items":[{"product_id":"p","quantity":true}],"total":1,"paid":true}':
                "expected an integer",
            b'{"order_id":"o","items":[{"product_id":"p","quantity":-1}],"total":1,"paid":true}':
                "quantity is negative",
            b'{"order_id":"o","items":{},"total":1,"paid":true}': "expected a list at items",
            b'{"order_id":"o","items":[],"total":"1","paid":true}': "expected a number at total",
            b'[1]': "expected an object for Order",
            b'\xff{': "not JSON",
        }
        for payload, expected in cases.items():
            with self.subTest(payload=payload):
                with self.assertRaises(DecodeError) as caught:
                    decode_payload(payload, Order)
                self.assertIn(expected, str(caught.exception))

    def test_optional_takes_null_and_plain_types_check_their_kind(self) -> None:
        base = b'{"order_id":"o","items":[],"total":1,"paid":false,"note":null}'
        self.assertIsNone(decode_payload(base, Order).note)
        self.assertEqual(decode_payload(b'{"a":1}', dict), {"a": 1})
        self.assertEqual(decode_payload(b"[1,2]", List[int]), [1, 2])
        self.assertEqual(decode_payload(b'"x"', Any), "x")
        with self.assertRaises(DecodeError):
            decode_payload(b"[1]", dict)
        with self.assertRaises(DecodeError):
            decode_payload(b'["1"]', List[int])


if __name__ == "__main__":
    unittest.main()
