"""Key-value state: JSON values in a bucket the plugin's manifest grants
(`[capabilities] keyvalue = ["stock"]`), shared by every host and kept across
restarts (evhost backs buckets with NATS JetStream).

```python
from evhost_sdk.kv import Bucket

stock = Bucket.open("stock")
visits = stock.increment("visits")                 # atomic
stock.update("p-1", lambda n: (n or 0) + 1)        # compare-and-swap loop
a, b = stock.get_many(["a", "b"])                  # one call, at most 1000 keys
```

A write happens when it is made: it is not undone when the handler later
fails and the message is retried. Failures are raised as the errors a handler
may let through: a bucket not granted, an invalid key, a value over the limit
or one that does not decode are `Permanent`; a store that is unreachable, or
a key fought over, `Transient`.

These call the host through the component's imports, so `Bucket` works only
inside a component built with componentize-py; the rest imports anywhere.
"""

import json
from typing import Any, Callable, List, Optional, Sequence, Tuple

from .errors import HandlerError, Permanent, Transient
from .message import encode_json

#: How many times `Bucket.update` reads again after losing a race.
UPDATE_TRIES = 1000


def store_error(bucket: str, error: Any) -> HandlerError:
    """The handler error for a `wasi:keyvalue` store `error` (the bindings'
    `Error_NoSuchStore`, `Error_AccessDenied` or `Error_Other(value)`):
    what a retry cannot fix is `Permanent`, the rest `Transient`."""
    kind = type(error).__name__
    if kind == "Error_NoSuchStore":
        return Permanent(
            f"key-value bucket {bucket!r} is not granted to this plugin ([capabilities] keyvalue)"
        )
    if kind == "Error_AccessDenied":
        return Permanent("key-value access denied")
    text = str(getattr(error, "value", error))
    if text.startswith("invalid key") or "over the limit" in text:
        return Permanent(f"key-value: {text}")
    return Transient(f"key-value store: {text}")


def decode(key: str, raw: bytes) -> Any:
    """The JSON value stored at `key`; `Permanent` when it is not JSON."""
    try:
        return json.loads(raw)
    except ValueError as err:
        raise Permanent(f"key-value: the value of {key!r} does not decode: {err}") from None


def encode(key: str, value: Any) -> bytes:
    """`value` as compact JSON (dataclasses as objects); `Permanent` when it
    cannot be encoded."""
    try:
        return encode_json(value)
    except (TypeError, ValueError) as err:
        raise Permanent(f"key-value: the value for {key!r} does not encode as JSON: {err}") from None


class Bucket:
    """An open bucket. `Bucket.open(name)` opens one the manifest grants."""

    def __init__(self, name: str, inner: Any):
        self.name = name
        self._inner = inner

    @staticmethod
    def open(name: str) -> "Bucket":
        """Opens `name`, which the plugin's manifest must grant."""
        from componentize_py_types import Err
        from wit_world.imports import store

        try:
            return Bucket(name, store.open(name))
        except Err as err:
            raise store_error(name, err.value) from None

    def _call(self, f: Callable[[], Any]) -> Any:
        from componentize_py_types import Err

        try:
            return f()
        except Err as err:
            raise store_error(self.name, err.value) from None

    def get_raw(self, key: str) -> Optional[bytes]:
        """The bytes stored at `key`, or `None`."""
        return self._call(lambda: self._inner.get(key))

    def get(self, key: str) -> Any:
        """The JSON value stored at `key`, or `None` when it has none."""
        raw = self.get_raw(key)
        return None if raw is None else decode(key, raw)

    def set_raw(self, key: str, value: bytes) -> None:
        """Stores bytes at `key`."""
        self._call(lambda: self._inner.set(key, bytes(value)))

    def set(self, key: str, value: Any) -> None:
        """Stores `value` as JSON at `key`."""
        raw = encode(key, value)
        self._call(lambda: self._inner.set(key, raw))

    def delete(self, key: str) -> None:
        """Removes `key` (no error when it has no value)."""
        self._call(lambda: self._inner.delete(key))

    def exists(self, key: str) -> bool:
        """Whether `key` has a value."""
        return self._call(lambda: self._inner.exists(key))

    def keys(self) -> List[str]:
        """Every key of the bucket."""
        found: List[str] = []
        cursor: Optional[str] = None
        while True:
            page = self._call(lambda: self._inner.list_keys(cursor))
            found.extend(page.keys)
            if page.cursor is None:
                return found
            cursor = page.cursor

    def get_many(self, keys: Sequence[str]) -> List[Any]:
        """The JSON values at `keys`, in the order asked (`None` for a key
        with no value), read in one call. At most 1000 keys."""
        from wit_world.imports import batch

        asked = list(keys)
        found = self._call(lambda: batch.get_many(self._inner, asked))
        if len(found) != len(asked):
            raise Transient(
                f"key-value: get-many of {len(asked)} keys answered {len(found)} values"
            )
        return [None if pair is None else decode(key, pair[1]) for key, pair in zip(asked, found)]

    def set_many(self, pairs: Sequence[Tuple[str, Any]]) -> None:
        """Stores each `(key, value)` as JSON, in one call. At most 1000
        pairs; every key and value is checked first (an invalid one writes
        nothing), but a store failing part way may leave some written."""
        from wit_world.imports import batch

        encoded = [(key, encode(key, value)) for key, value in pairs]
        self._call(lambda: batch.set_many(self._inner, encoded))

    def delete_many(self, keys: Sequence[str]) -> None:
        """Removes every key of `keys` (those with no value are skipped), in
        one call. At most 1000 keys."""
        from wit_world.imports import batch

        asked = list(keys)
        self._call(lambda: batch.delete_many(self._inner, asked))

    def increment(self, key: str, delta: int = 1) -> int:
        """Adds `delta` to the number at `key` (0 when absent), atomically,
        and returns the new number."""
        from wit_world.imports import atomics

        return self._call(lambda: atomics.increment(self._inner, key, delta))

    def update(self, key: str, change: Callable[[Any], Any]) -> Any:
        """Reads `key`, passes its value (`None` when absent) to `change`,
        and writes what `change` returns (`None`: leave the key as it is)
        only if nobody wrote the key in between; otherwise reads again and
        calls `change` again. Returns the value written (or `None`).
        `change` may raise (`Permanent`, say) to end the update with nothing
        written."""
        from componentize_py_types import Err
        from wit_world.imports import atomics

        cas = self._call(lambda: atomics.Cas.new(self._inner, key))
        for _ in range(UPDATE_TRIES):
            raw = self._call(cas.current)
            value = change(None if raw is None else decode(key, raw))
            if value is None:
                return None
            raw = encode(key, value)
            try:
                atomics.swap(cas, raw)
                return value
            except Err as err:
                why = err.value
                if type(why).__name__ == "CasError_CasFailed":
                    cas = why.value
                    continue
                raise store_error(self.name, why.value) from None
        raise Transient(f"key-value: update of {key!r} lost {UPDATE_TRIES} races to other writers")
