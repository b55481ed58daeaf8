"""`payment`, in Python: charges an order when it is created.

The same handler as the Rust `plugins/payment`, on the same events with the
same outputs, subjects and error kinds. On
`orders.order.created` it validates the order (items present, every quantity
positive, `total_cents` equal to the sum of the items), charges a simulated
provider and emits `payments.payment.completed`, or `payments.payment.failed`
when the order is over the configured limit.

A broken business rule or a declined card is a permanent error; the provider
being unavailable is transient. The simulated provider follows `[config]`:
- `decline_customers = "c-1,c-2"`: these customers' cards are declined;
- `fail_attempts = 2`: the provider is unavailable on attempts 1 and 2;
- `unavailable = true`: the provider is always unavailable;
- `limit_cents = 100000`: larger orders fail as a business outcome;
- `version = "v2"`: copied into every output as `handler_version`.

With `provider_url = "https://…"` in `[config]` (and that URL granted in
`[capabilities] http`) it charges a real provider instead: `POST
{provider_url}/charges` with `{"order_id", "customer_id", "amount_cents"}` and
the message's idempotency key as `Idempotency-Key` (`evhost_sdk.http` sends
it), so a retried charge is never charged twice. 2xx is a completed payment,
402 a declined card (permanent), 5xx, 429 and timeouts are transient.

Build: `componentize-py -d ../../wit -w handler-http componentize app -o
payment.wasm` (with `evhost-sdk` installed, or `-p ../../python-sdk/src`).
"""

import datetime
import uuid
from dataclasses import dataclass
from typing import List, Optional

from evhost_sdk import WitWorld  # noqa: F401  (the component's export)
from evhost_sdk import Message, Outgoing, Permanent, Transient, config, handler, http, log

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1


def _unsigned(name: str, value: int, maximum: int) -> None:
    # The Rust plugin decodes these as u32/u64: out of range does not decode.
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} {value} is out of range (0 to {maximum})")


@dataclass
class Item:
    """One line of an order."""

    product_id: str
    quantity: int
    price_cents: int

    def __post_init__(self) -> None:
        _unsigned("quantity", self.quantity, U32_MAX)
        _unsigned("price_cents", self.price_cents, U64_MAX)


@dataclass
class OrderCreated:
    """`orders.order.created`."""

    event_id: str
    order_id: str
    customer_id: str
    items: List[Item]
    total_cents: int
    created_at: str

    def __post_init__(self) -> None:
        _unsigned("total_cents", self.total_cents, U64_MAX)


def validate(order: OrderCreated) -> Optional[str]:
    """The business rule `order` breaks, named, or `None`."""
    if not order.items:
        return f"order {order.order_id} has no items"
    for item in order.items:
        if item.quantity == 0:
            return f"order {order.order_id}: item {item.product_id} has quantity 0"
    total = sum(i.quantity * i.price_cents for i in order.items)
    if total != order.total_cents:
        return (
            f"order {order.order_id}: total_cents {order.total_cents} "
            f"does not match the items ({total})"
        )
    return None


APPROVED, DECLINED, UNAVAILABLE = "approved", "declined", "unavailable"


def charge(
    customer: str, attempt: int, declined: Optional[str], fail_attempts: int, unavailable: bool
) -> str:
    """The simulated provider's answer for `customer` on delivery `attempt`."""
    if unavailable or attempt <= fail_attempts:
        return UNAVAILABLE
    if declined is not None and any(c.strip() == customer for c in declined.split(",")):
        return DECLINED
    return APPROVED


def charge_from_status(status: int) -> str:
    """What a provider's status means for the charge."""
    if 200 <= status <= 299:
        return APPROVED
    if status == 402:
        return DECLINED
    if status == 429 or 500 <= status <= 599:
        return UNAVAILABLE
    raise Permanent(f"payment provider answered {status}")


def charge_provider(url: str, order: OrderCreated) -> str:
    """Charges `order` at the provider behind `url`."""
    request = {
        "order_id": order.order_id,
        "customer_id": order.customer_id,
        "amount_cents": order.total_cents,
    }
    response = http.post(f"{url.rstrip('/')}/charges", json=request)
    return charge_from_status(response.status)


def now() -> str:
    """The time in RFC 3339 with milliseconds, as the Rust plugin writes it."""
    t = datetime.datetime.now(datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _versioned(event: dict, version: Optional[str]) -> dict:
    if version is not None:
        event["handler_version"] = version
    return event


@handler(subject="orders.order.created")
def on_order_created(order: OrderCreated, msg: Message) -> List[Outgoing]:
    broken = validate(order)
    if broken is not None:
        raise Permanent(broken)
    raw_fail = config("fail_attempts")
    fail_attempts = 0
    if raw_fail is not None:
        try:
            fail_attempts = int(raw_fail)
            _unsigned("fail_attempts", fail_attempts, U32_MAX)
        except ValueError as err:
            raise Permanent(f"config fail_attempts {raw_fail!r}: {err}") from None
    unavailable = config("unavailable") == "true"
    version = config("version")
    limit: Optional[int] = None
    raw_limit = config("limit_cents")
    if raw_limit is not None and raw_limit.isdigit():
        limit = int(raw_limit)

    if limit is not None and order.total_cents > limit:
        log.info("order %s over the limit of %d cents", order.order_id, limit)
        failed = {
            "event_id": str(uuid.uuid4()),
            "order_id": order.order_id,
            "reason": f"amount {order.total_cents} over the limit of {limit} cents",
            "causation_id": order.event_id,
            "created_at": now(),
        }
        return [Outgoing.json("payments.payment.failed", _versioned(failed, version))]

    provider_url = config("provider_url")
    if provider_url is not None:
        outcome = charge_provider(provider_url, order)
    else:
        outcome = charge(
            order.customer_id,
            msg.attempt,
            config("decline_customers"),
            fail_attempts,
            unavailable,
        )
    if outcome == UNAVAILABLE:
        raise Transient(f"payment provider unavailable (attempt {msg.attempt})")
    if outcome == DECLINED:
        raise Permanent(f"card declined for customer {order.customer_id}")
    log.debug("charged %d cents for order %s", order.total_cents, order.order_id)
    completed = {
        "event_id": str(uuid.uuid4()),
        "order_id": order.order_id,
        "customer_id": order.customer_id,
        "amount_cents": order.total_cents,
        "causation_id": order.event_id,
        "created_at": now(),
    }
    return [Outgoing.json("payments.payment.completed", _versioned(completed, version))]
