"""Registering handlers and dispatching messages (`evhost_sdk.registry`)."""

import unittest
from dataclasses import dataclass
from typing import List

from evhost_sdk import Message, Outgoing, Permanent, Transient
from evhost_sdk.registry import Registered, dispatch, inspect_handler, subscriptions


@dataclass
class Ping:
    n: int


def message(payload: bytes, subject: str = "a.b", attempt: int = 1) -> Message:
    return Message(subject, [("X-Id", "7")], payload, None, attempt)


class RegistryTest(unittest.TestCase):
    def test_a_typed_handler_gets_the_decoded_payload_and_the_message(self) -> None:
        seen: List[object] = []

        def on_ping(ping: Ping, msg: Message) -> Outgoing:
            seen.append((ping, msg.attempt, msg.header("x-id")))
            return Outgoing.json("pong", {"n": ping.n + 1})

        outs = dispatch(message(b'{"n":1}', attempt=3), [inspect_handler("a.b", on_ping)])
        self.assertEqual(seen, [(Ping(1), 3, "7")])
        self.assertEqual(outs, [Outgoing("pong", b'{"n":2}', [("content-type", "application/json")])])

    def test_an_undecodable_payload_is_permanent_and_the_function_is_not_called(self) -> None:
        calls: List[Ping] = []

        def on_ping(ping: Ping) -> None:
            calls.append(ping)

        with self.assertRaises(Permanent) as caught:
            dispatch(message(b'{"n":"one"}'), [inspect_handler("a.b", on_ping)])
        self.assertIn("payload does not decode as Ping", str(caught.exception))
        self.assertEqual(calls, [])

    def test_raw_handlers_and_return_values(self) -> None:
        def raw(msg: Message) -> None:
            return None

        def payload(body: bytes) -> List[Outgoing]:
            return [Outgoing("x", body), Outgoing("y", body)]

        def bad(body: bytes) -> str:
            return "nope"

        self.assertEqual(dispatch(message(b"\xff"), [inspect_handler("a.b", raw)]), [])
        self.assertEqual(
            [o.subject for o in dispatch(message(b"\xff"), [inspect_handler("a.b", payload)])],
            ["x", "y"],
        )
        with self.assertRaises(TypeError):
            dispatch(message(b""), [inspect_handler("a.b", bad)])

    def test_errors_from_the_function_propagate(self) -> None:
        def flaky(msg: Message) -> None:
            raise Transient("later")

        with self.assertRaises(Transient):
            dispatch(message(b""), [inspect_handler("a.b", flaky)])

    def test_several_handlers_are_chosen_by_subject(self) -> None:
        def first(msg: Message) -> Outgoing:
            return Outgoing("first")

        def second(msg: Message) -> Outgoing:
            return Outgoing("second")

        handlers: List[Registered] = [
            inspect_handler("orders.*", first),
            inspect_handler("payments.>", second),
        ]
        self.assertEqual(subscriptions(handlers), ["orders.*", "payments.>"])
        self.assertEqual(dispatch(message(b"", "payments.a.b"), handlers)[0].subject, "second")
        self.assertEqual(dispatch(message(b"", "orders.x"), handlers)[0].subject, "first")
        with self.assertRaises(Permanent):
            dispatch(message(b"", "other"), handlers)

    def test_a_handler_takes_one_or_two_parameters(self) -> None:
        with self.assertRaises(TypeError):
            inspect_handler("a", lambda: None)


if __name__ == "__main__":
    unittest.main()
