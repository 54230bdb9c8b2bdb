"""What the router counts: one call per appended event, so the lifecycle code stays free of it."""

from __future__ import annotations

from schemas.envelope import Envelope
from schemas.events import (
    OrderCompleted,
    OrderFailed,
    OrderRetrying,
    OrderRouted,
    OrderStatus,
    OrderType,
)
from services.common.metrics import (
    END_TO_END,
    EXECUTE,
    RETRIES,
    ROUTE,
    VENUE_QUOTES,
    observe_stage,
    order_finished,
    venues_used,
)
from services.domain.order import OrderState


def record(before: OrderState, envelope: Envelope) -> None:
    """Count `envelope`, just appended for an order that was in state `before`."""
    event, at = envelope.payload, envelope.occurred_at
    if isinstance(event, OrderRouted):
        for quote in event.quotes:
            VENUE_QUOTES.labels(quote.venue, "error" if quote.error else "ok").inc()
        # Not after a backoff: that is not routing time. A triggered order counts from its trigger.
        if before.status in (OrderStatus.PENDING, OrderStatus.TRIGGERED):
            observe_stage(ROUTE, (at - before.updated_at).total_seconds())
    elif isinstance(event, OrderRetrying):
        RETRIES.labels(event.code.value).inc()
    elif isinstance(event, OrderCompleted | OrderFailed):
        if isinstance(event, OrderCompleted):
            order_finished("completed")
            venues_used(event.selected_dex)
        else:
            order_finished("failed", event.code.value)
        if before.order_type is OrderType.MARKET:  # a conditional order's rest is not latency
            observe_stage(END_TO_END, (at - before.created_at).total_seconds())
        if before.plan is not None:
            observe_stage(EXECUTE, at.timestamp() - before.plan.quoted_at)
