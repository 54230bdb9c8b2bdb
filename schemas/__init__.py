"""The event contract: the envelope, one model per order event, and their wire format."""

from schemas.envelope import Envelope
from schemas.events import (
    EVENT_TYPES,
    FailureCode,
    OrderCompleted,
    OrderEvent,
    OrderFailed,
    OrderRetrying,
    OrderRouted,
    OrderStatus,
    OrderSubmitted,
    TransactionBuilt,
    TransactionSubmitted,
)

__all__ = [
    "EVENT_TYPES",
    "Envelope",
    "FailureCode",
    "OrderCompleted",
    "OrderEvent",
    "OrderFailed",
    "OrderRetrying",
    "OrderRouted",
    "OrderStatus",
    "OrderSubmitted",
    "TransactionBuilt",
    "TransactionSubmitted",
]
