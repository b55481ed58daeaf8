"""`echo-py`: the Python test plugin for crashes and hot reload.

On `test.pyecho` it answers on `test.pyecho.out` with the payload and an
`echo-version` header, the version being `echo_version.VERSION`: the tests
build it twice, with `-p v1` and with `-p v2`, so a reload is visible in the
replies. The payload `crash` raises an exception no handler catches (a trap,
like a Rust panic).
"""

from echo_version import VERSION

from evhost_sdk import WitWorld  # noqa: F401  (the component's export)
from evhost_sdk import Message, Outgoing, handler


class DeliberateCrash(Exception):
    """What `crash` raises."""


@handler(subject="test.pyecho")
def echo(msg: Message) -> Outgoing:
    if msg.payload == b"crash":
        raise DeliberateCrash(f"deliberate crash in echo-py v{VERSION}")
    return Outgoing("test.pyecho.out", msg.payload, [("echo-version", VERSION)])
