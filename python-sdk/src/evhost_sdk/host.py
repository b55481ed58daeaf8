"""What the host offers a handler besides the message: the plugin's
configuration and the idempotency key of the message being handled.

These call the host through the component's imports, so they work only inside
a component built with componentize-py (the bindings module `wit_world` is
generated at build time).
"""

from typing import Optional


def config(key: str) -> Optional[str]:
    """The value of `key` in the `[config]` table of the plugin's manifest
    (`NAME.toml` beside `NAME.wasm`), or `None` when it is absent. Numbers and
    booleans come back in their TOML spelling (`"3"`, `"true"`)."""
    from wit_world.imports import host

    return host.config(key)


def idempotency_key() -> str:
    """The idempotency key of the message being handled: the same on every
    delivery of it, so an external effect (a charge, an e-mail) can be made
    safe to repeat by sending it as `Idempotency-Key`. Asked of the host when
    called; the empty string outside a call to a handler."""
    from wit_world.imports import host

    return host.idempotency_key()
