"""The component's export: the `handler` world's `subscriptions` and `handle`,
over the handlers registered with `@handler`.

Imported only inside a component (it needs the bindings componentize-py
generates); a plugin's module exposes it as `WitWorld`, the name
componentize-py looks for: `from evhost_sdk import WitWorld`.
"""

from typing import List

import wit_world
from componentize_py_types import Err

try:
    from wit_world.imports import types as wit
except ImportError:
    # Built against `handler-http`, where `wasi:http/types` is a `types` too:
    # componentize-py names each after its package.
    from wit_world.imports import evhost_plugin_types as wit  # type: ignore[no-redef]

# componentize-py keeps only the binding modules imported while the component
# is built: these are imported here, with the export every plugin imports, so
# `evhost_sdk.kv` and `evhost_sdk.http` find them when a handler first calls.
from wit_world.imports import atomics, batch, store  # noqa: F401

try:
    from wit_world.imports import outgoing_handler, streams, wasi_http_types  # noqa: F401
except ImportError:
    pass  # built against `handler`, which does not import wasi:http

from . import crash, registry
from .errors import Permanent, Transient
from .message import Message


class WitWorld(wit_world.WitWorld):
    """evhost's entry points."""

    def subscriptions(self) -> List[str]:
        return registry.subscriptions()

    def handle(self, msg: wit.Message) -> List[wit.Outgoing]:
        try:
            message = Message(
                msg.subject, list(msg.headers), bytes(msg.payload), msg.reply_to, msg.attempt
            )
            outs = registry.dispatch(message)
            return [wit.Outgoing(o.subject, list(o.headers), bytes(o.payload)) for o in outs]
        except Transient as err:
            raise Err(wit.HandlerError_Transient(err.message)) from None
        except Permanent as err:
            raise Err(wit.HandlerError_Permanent(err.message)) from None
        except BaseException as exc:  # noqa: BLE001 - a crash is a trap, as a Rust panic
            crash.crash(exc)
            raise
