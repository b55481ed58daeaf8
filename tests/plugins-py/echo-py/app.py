"""`echo-py`: the Python test plugin for crashes and hot reload.

On `test.pyecho` it answers on `test.pyecho.out` with the payload and an
`echo-version` header, the version being `echo_version.VERSION`: the tests
build it twice, with `-p v1` and with `-p v2`, so a reload is visible in the
replies. The payload `crash` raises an exception no handler catches (a trap,
like a Rust panic).

On `test.pytally`: key-value state through `evhost_sdk.kv.Bucket`, in the
bucket `[config] bucket` names (default `tally`). The payload `KEY` adds 1 at
KEY with `update` (a compare-and-swap), `inc KEY` with `increment`;
`many K1 K2 ...` reads them with one `get_many` and writes each plus 1 with
one `set_many`; `drop K1 K2 ...` deletes them with one `delete_many`. It
answers on `test.pytally.out`: the new counts, space-separated, or
`deleted N`.

On `test.pyfetch`: the payload is a URL; the plugin POSTs `charge` to it with
`evhost_sdk.http` (which sends the message's idempotency key), raises what
`error_for_status` raises for a 4xx or 5xx, and answers on
`test.pyfetch.out` with `STATUS BODY`.
"""

from echo_version import VERSION

from evhost_sdk import WitWorld  # noqa: F401  (the component's export)
from evhost_sdk import Message, Outgoing, config, handler, http
from evhost_sdk.kv import Bucket


class DeliberateCrash(Exception):
    """What `crash` raises."""


@handler(subject="test.pyecho")
def echo(msg: Message) -> Outgoing:
    if msg.payload == b"crash":
        raise DeliberateCrash(f"deliberate crash in echo-py v{VERSION}")
    return Outgoing("test.pyecho.out", msg.payload, [("echo-version", VERSION)])


@handler(subject="test.pytally")
def tally(msg: Message) -> Outgoing:
    bucket = Bucket.open(config("bucket") or "tally")
    verb, *keys = msg.payload.decode().split(" ")
    if verb == "inc":
        answer = str(bucket.increment(keys[0]))
    elif verb == "many":
        counts = [(n or 0) + 1 for n in bucket.get_many(keys)]
        bucket.set_many(list(zip(keys, counts)))
        answer = " ".join(str(n) for n in counts)
    elif verb == "drop":
        bucket.delete_many(keys)
        answer = f"deleted {len(keys)}"
    else:
        answer = str(bucket.update(verb, lambda n: (n or 0) + 1))
    return Outgoing("test.pytally.out", answer.encode())


@handler(subject="test.pyfetch")
def fetch(msg: Message) -> Outgoing:
    answer = http.post(msg.payload.decode(), body=b"charge").error_for_status()
    return Outgoing("test.pyfetch.out", f"{answer.status} {answer.text()}".encode())
