"""The `@handler` decorator and the dispatch of a message to a handler.

```python
@handler(subject="orders.order.created")
def on_order(order: OrderCreated, msg: Message) -> Outgoing: ...
```

The first parameter's annotation says what the handler takes (see `decode`):
a dataclass, `dict`, `list` or `Any` get the payload decoded from JSON, and a
payload that does not decode is a `Permanent` error without calling the
function; `bytes` gets the raw payload and `Message` (or no annotation) the
whole delivery. An optional second parameter gets the `Message` (its
`attempt`, `headers`, `reply_to`). The function returns a list of `Outgoing`,
one `Outgoing`, or `None` for nothing to publish.

A plugin may register several handlers: the component subscribes to every
subject, and a message goes to the first handler whose subject matches it.
With one handler, every message goes to it (the manifest's `subjects` may
override the subscription).
"""

import dataclasses
import inspect
import typing
from typing import Any, Callable, List, Optional

from .decode import DecodeError, decode_payload, type_name
from .errors import Permanent
from .message import Message, Outgoing
from .subjects import matches


@dataclasses.dataclass
class Registered:
    """A handler function and what it takes."""

    subject: str
    function: Callable[..., Any]
    takes: Any
    """The first parameter's type: `Message`, `bytes` or a type to decode."""
    wants_message: bool
    """Whether a second parameter takes the `Message`."""


_handlers: List[Registered] = []


def handler(subject: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Registers the decorated function as the handler of `subject` (NATS
    wildcards work). The function itself is returned unchanged."""

    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        _handlers.append(inspect_handler(subject, function))
        return function

    return register


def inspect_handler(subject: str, function: Callable[..., Any]) -> Registered:
    """What `function` takes, from its signature."""
    params = list(inspect.signature(function).parameters.values())
    if not 1 <= len(params) <= 2:
        raise TypeError(
            f"handler {function.__name__} must take one or two parameters "
            f"(the payload, then optionally the Message), not {len(params)}"
        )
    hints = typing.get_type_hints(function)
    takes = hints.get(params[0].name, Message)
    return Registered(subject, function, takes, len(params) == 2)


def registered() -> List[Registered]:
    """The handlers registered so far, in order."""
    return list(_handlers)


def subscriptions(handlers: Optional[List[Registered]] = None) -> List[str]:
    """The subjects the component asks for: one per handler, in order."""
    seen: List[str] = []
    for h in _handlers if handlers is None else handlers:
        if h.subject not in seen:
            seen.append(h.subject)
    return seen


def dispatch(msg: Message, handlers: Optional[List[Registered]] = None) -> List[Outgoing]:
    """Runs the handler of `msg` and returns what it publishes. Raises
    `Transient`/`Permanent` for a handler's failures; anything else the
    function raises propagates."""
    handlers = _handlers if handlers is None else handlers
    chosen = choose(msg.subject, handlers)
    if chosen is None:
        raise Permanent(f"no handler for subject {msg.subject}")
    if chosen.takes is Message:
        arg: Any = msg
    elif chosen.takes is bytes:
        arg = msg.payload
    else:
        try:
            arg = decode_payload(msg.payload, chosen.takes)
        except DecodeError as err:
            raise Permanent(f"payload does not decode as {type_name(chosen.takes)}: {err}") from None
    result = chosen.function(arg, msg) if chosen.wants_message else chosen.function(arg)
    return outputs(result, chosen.function.__name__)


def choose(subject: str, handlers: List[Registered]) -> Optional[Registered]:
    """The handler for `subject`: the only one, else the first that matches."""
    if len(handlers) == 1:
        return handlers[0]
    return next((h for h in handlers if matches(h.subject, subject)), None)


def outputs(result: Any, name: str) -> List[Outgoing]:
    """A handler's return value as a list of `Outgoing`."""
    if result is None:
        return []
    if isinstance(result, Outgoing):
        return [result]
    if isinstance(result, (list, tuple)) and all(isinstance(o, Outgoing) for o in result):
        return list(result)
    raise TypeError(
        f"handler {name} returned {type(result).__name__}: "
        "return a list of Outgoing, one Outgoing or None"
    )
