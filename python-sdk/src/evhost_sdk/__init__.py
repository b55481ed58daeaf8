"""Write evhost event handlers in Python.

```python
from dataclasses import dataclass
from evhost_sdk import WitWorld, handler, Outgoing, Permanent, log  # noqa: F401

@dataclass
class OrderCreated:
    order_id: str
    total_cents: int

@handler(subject="orders.order.created")
def on_order(order: OrderCreated, msg):
    log.info("charging order %s (attempt %d)", order.order_id, msg.attempt)
    return Outgoing.json("payments.payment.completed", {"order_id": order.order_id})
```

Build it into a component with componentize-py against evhost's WIT:
`componentize-py -d wit -w handler componentize app -o app.wasm`. The module
must expose `WitWorld` (import it from here): that is the component's export.

A payload that does not decode into the handler's type is a `Permanent` error
and the function is not called. Raise `Transient` to be retried, `Permanent`
to be dead-lettered; any other exception traps, like a Rust panic.
"""

from typing import Any

from . import http, log
from .errors import HandlerError, Permanent, Transient
from .registry import handler
from .host import config, idempotency_key
from .message import Message, Outgoing

__all__ = [
    "HandlerError",
    "Message",
    "Outgoing",
    "Permanent",
    "Transient",
    "WitWorld",
    "config",
    "handler",
    "http",
    "idempotency_key",
    "log",
]


def __getattr__(name: str) -> Any:
    # The export needs the generated bindings, present only in a component:
    # loaded when a plugin imports it, so the rest imports anywhere.
    if name == "WitWorld":
        from .component import WitWorld

        return WitWorld
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
