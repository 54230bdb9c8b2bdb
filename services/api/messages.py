"""Pure: an order event -> the JSON message a WebSocket client (or the events endpoint) sees.

Messages keep the original system's shape `{orderId, status, message, timestamp, ...details}`
and add `sequence` and `type` so a client can tell it missed nothing. Details are the
event's own fields in camelCase; money stays a JSON string.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from schemas.envelope import Envelope
from schemas.events import (
    OrderAmended,
    OrderCancelled,
    OrderCompleted,
    OrderEvent,
    OrderExpired,
    OrderFailed,
    OrderOpened,
    OrderPartiallyFilled,
    OrderRetrying,
    OrderRouted,
    OrderSubmitted,
    OrderTriggered,
    OrderType,
    TransactionBuilt,
    TransactionSubmitted,
)
from services.venues.pool import display_name


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def camelize(value: Any) -> Any:
    """Rename every dict key of JSON-ready data to camelCase, recursively."""
    if isinstance(value, dict):
        return {camel(k): camelize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [camelize(v) for v in value]
    return value


def seconds(value: Decimal) -> str:
    """2.0 -> "2", 0.50 -> "0.5": how a delay reads in a sentence."""
    return f"{value.normalize():f}"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _venues(event: OrderRouted) -> str:
    return "+".join(sorted({leg.venue for leg in event.plan.legs}))


def _routed(event: OrderRouted) -> str:
    chosen = " and ".join(display_name(v) for v in _venues(event).split("+"))
    return f"Comparing prices on Raydium and Meteora: routing via {chosen} ({event.reason})"


_MESSAGES: dict[type[OrderEvent], Callable[[Any], str]] = {
    OrderSubmitted: lambda e: "Order received and queued",
    OrderRouted: _routed,
    TransactionBuilt: lambda e: "Building transaction",
    TransactionSubmitted: lambda e: "Transaction submitted",
    OrderRetrying: lambda e: (
        f"Retrying in {seconds(e.delay_seconds)}s after {e.code.value}: {e.error}"
    ),
    OrderCompleted: lambda e: "Swap completed",
    OrderFailed: lambda e: f"Order failed: {e.error}",
    OrderOpened: lambda e: f"Order open again: {e.reason}",
    OrderTriggered: lambda e: (
        f"Triggered: {e.pair} at {e.price} (slot {e.slot}, {e.leg} {e.level})"
    ),
    OrderCancelled: lambda e: "Order cancelled",
    OrderExpired: lambda e: "Order expired",
    OrderAmended: lambda e: "Order amended",
    OrderPartiallyFilled: lambda e: f"Partially filled: {e.amount_in}, {e.remaining} open",
}

# A market order's submission message stays what it was before conditional orders existed.
_MARKET_DEFAULTS = frozenset(
    {"orderType", "limitPrice", "triggerPrice", "takeProfitPrice", "stopLossPrice",
     "trailingBps", "expiresAt", "allowPartial", "maxPrice", "checks", "onlyAtLaunch",
     "autoSell"}
)  # fmt: skip
# Issue 18's fields at their defaults say nothing: left out, so older messages stay the same.
_QUIET_DEFAULTS = {"onlyAtLaunch": False, "priority": "normal"}


def details(event: OrderEvent) -> dict[str, Any]:
    """The event's fields in camelCase, plus `route` and `selectedDex` for a routing decision."""
    fields: dict[str, Any] = camelize(event.model_dump(mode="json"))
    if isinstance(event, OrderSubmitted):
        if event.order_type is OrderType.MARKET:
            fields = {k: v for k, v in fields.items() if k not in _MARKET_DEFAULTS}
        else:
            fields = {k: v for k, v in fields.items() if v is not None}
        fields = {k: v for k, v in fields.items() if _QUIET_DEFAULTS.get(k, ...) != v}
    if isinstance(event, OrderRouted):
        fields["route"] = fields["plan"]
        fields["selectedDex"] = _venues(event)
    return fields


def event_message(envelope: Envelope) -> dict[str, Any]:
    """The live-update message for one event."""
    event = envelope.payload
    return {
        **details(event),
        "orderId": str(envelope.order_id),
        "status": envelope.status.value,
        "message": _MESSAGES[type(event)](event),
        "timestamp": iso(envelope.occurred_at),
        "sequence": envelope.sequence,
        "type": envelope.type,
    }


def connected_message(order_id: uuid.UUID | None, at: datetime) -> dict[str, Any]:
    """First message on every socket; `orderId` is null on the firehose."""
    return {
        "orderId": str(order_id) if order_id else None,
        "status": "connected",
        "message": "Connected; streaming order updates"
        if order_id
        else "Connected; streaming all orders",
        "timestamp": iso(at),
    }


def error_message(order_id: str | None, error: str, message: str, at: datetime) -> dict[str, Any]:
    return {
        "orderId": order_id,
        "status": "error",
        "error": error,
        "message": message,
        "timestamp": iso(at),
    }
