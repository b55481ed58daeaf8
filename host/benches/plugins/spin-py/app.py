"""`spin-py`: computes forever on every message on `bench.spin`, until the
host's time limit (`timeout_ms`) interrupts it.

The benchmark's way of holding messages in flight in Python, each in an
instance of its own (a guest that computes yields its thread at every epoch
tick, and the next message takes another instance): the host's memory with
`concurrency` of them in flight, less its memory idle, is what the
instances cost. The rest of the component is `noop-py`'s (CPython and the
SDK, initialised).

The benchmark builds it (`host/benches/overhead.rs`); by hand, from the
repository's root:
`componentize-py -d wit -w handler componentize -p python-sdk/src
-p host/benches/plugins/spin-py app -o spin-py.wasm`.
"""

from evhost_sdk import WitWorld  # noqa: F401  (the component's export)
from evhost_sdk import Message, handler


@handler(subject="bench.spin")
def spin(msg: Message) -> None:
    while True:
        pass
