# {{name}}: an evhost handler. Build it with `evhost build`, try it with
# `evhost invoke {{name}}.wasm --subject greetings.requested --payload @events/greetings.requested.json`.
from dataclasses import dataclass
from typing import List

from evhost_sdk import WitWorld  # noqa: F401  (the component's export)
from evhost_sdk import Message, Outgoing, Permanent, handler, log


@dataclass
class GreetingRequested:
    """The event this handler takes (events/greetings.requested.json)."""

    name: str


@handler(subject="greetings.requested")
def on_greeting(request: GreetingRequested, msg: Message) -> List[Outgoing]:
    if not request.name:
        # Dead-lettered; `raise Transient(...)` is retried with backoff.
        raise Permanent("a greeting needs a name")
    log.info("greeting %s (attempt %d)", request.name, msg.attempt)
    return [Outgoing.json("greetings.greeted", {"message": f"hello, {request.name}"})]
