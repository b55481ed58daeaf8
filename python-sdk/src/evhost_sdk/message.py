"""The messages a handler receives (`Message`) and publishes (`Outgoing`)."""

import dataclasses
import json
from typing import Any, List, Optional, Tuple

from .errors import Permanent

Header = Tuple[str, str]


@dataclasses.dataclass
class Message:
    """One delivery of one message."""

    subject: str
    """The NATS subject it was published to."""
    headers: List[Header]
    """Its headers, in the order they arrived (a name may repeat)."""
    payload: bytes
    """The body, exactly as published."""
    reply_to: Optional[str]
    """Where a requester waits for a reply, when it was a request."""
    attempt: int
    """1 on the first delivery, 2 on the first retry, and so on."""

    def header(self, name: str) -> Optional[str]:
        """The first value of header `name` (compared without case)."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def json(self) -> Any:
        """The payload decoded as JSON (a `Permanent` error when it is not)."""
        try:
            return json.loads(self.payload)
        except (ValueError, UnicodeDecodeError) as err:
            raise Permanent(f"payload is not JSON: {err}") from None


@dataclasses.dataclass
class Outgoing:
    """A message to publish if, and only if, the handler succeeds."""

    subject: str
    payload: bytes = b""
    headers: List[Header] = dataclasses.field(default_factory=list)

    @classmethod
    def json(cls, subject: str, value: Any, headers: Optional[List[Header]] = None) -> "Outgoing":
        """`value` encoded as compact JSON, with `content-type:
        application/json` unless `headers` names one. Dataclasses are encoded
        as objects of their fields. A value JSON cannot encode is a
        `Permanent` error."""
        try:
            payload = encode_json(value)
        except (TypeError, ValueError) as err:
            raise Permanent(f"cannot encode the output as JSON: {err}") from None
        headers = list(headers or [])
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("content-type", "application/json"))
        return cls(subject, payload, headers)


def encode_json(value: Any) -> bytes:
    """Compact JSON (as serde_json writes it), dataclasses as objects."""
    return json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default
    ).encode("utf-8")


def _default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
