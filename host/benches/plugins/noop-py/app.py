"""`noop-py`: the benchmark's `noop` in Python (see `plugins/noop`).

Does nothing with the messages on `bench.noop`. When a message is a request
(it has a reply subject) it answers with an empty reply, so the benchmark can
time what was handled; otherwise it returns nothing. The benchmark's measure
of what the host and the Python runtime cost, with no work of the handler's.

The benchmark builds it (`host/benches/overhead.rs`); by hand, from the
repository's root:
`componentize-py -d wit -w handler componentize -p python-sdk/src
-p host/benches/plugins/noop-py app -o noop-py.wasm`.
"""

from typing import Optional

from evhost_sdk import WitWorld  # noqa: F401  (the component's export)
from evhost_sdk import Message, Outgoing, handler


@handler(subject="bench.noop")
def ignore(msg: Message) -> Optional[Outgoing]:
    if msg.reply_to is None:
        return None
    return Outgoing(msg.reply_to)
