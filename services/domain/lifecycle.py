"""The order lifecycle as one explicit table: (status, event type) -> next status.

Every pair not in the table is refused by the fold (`IllegalTransition`), so no
reader can ever build an order that was both cancelled and filled, or triggered
after it expired. `tests/unit/domain/test_lifecycle.py` walks the whole product
of statuses and event types against it.

Every next status is the status word the event itself names (`Envelope.status`, what
the socket and the audit rows show), so the two can never disagree; a test checks it.
The first event (`OrderSubmitted`) is not in the table: it has no status before it;
a market order starts `pending`, a conditional one `open`.

Races are settled before the table is asked: every writer appends an order's event
with the sequence it expects next, and readers drop any record whose sequence is not
above the order's last, so of a cancel and a trigger proposed on the same state only
the one first on the log (one partition per order: a total order) is ever folded.
"""

from __future__ import annotations

from schemas.events import (
    EVENT_TYPES,
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
    OrderStatus,
    OrderTriggered,
    TransactionBuilt,
    TransactionSubmitted,
)

S = OrderStatus

# Where the router may take an order it is executing (a market order, or a triggered one).
# Before this table the fold accepted any event after the first; these are all the steps the
# router has ever written (`services/router/execution.py`), so every existing log replays.
_EXECUTING: dict[tuple[OrderStatus, type[OrderEvent]], OrderStatus] = {
    (S.PENDING, OrderRouted): S.ROUTING,
    (S.PENDING, OrderRetrying): S.RETRYING,
    (S.PENDING, OrderFailed): S.FAILED,
    (S.TRIGGERED, OrderRouted): S.ROUTING,
    (S.TRIGGERED, OrderRetrying): S.RETRYING,
    (S.TRIGGERED, OrderFailed): S.FAILED,
    (S.TRIGGERED, OrderOpened): S.OPEN,  # a limit no route fills at its price: it rests again
    (S.ROUTING, OrderRouted): S.ROUTING,
    (S.ROUTING, TransactionBuilt): S.BUILDING,
    (S.ROUTING, OrderRetrying): S.RETRYING,  # the fold always allowed it: old logs may hold it
    (S.ROUTING, OrderFailed): S.FAILED,
    (S.BUILDING, TransactionSubmitted): S.SUBMITTED,
    (S.BUILDING, OrderRouted): S.ROUTING,  # the quote aged past its TTL: re-quoted
    (S.BUILDING, OrderOpened): S.OPEN,  # ... and the re-quote no longer gives the limit
    (S.BUILDING, OrderRetrying): S.RETRYING,
    (S.BUILDING, OrderFailed): S.FAILED,
    (S.SUBMITTED, OrderCompleted): S.COMPLETED,
    (S.SUBMITTED, OrderPartiallyFilled): S.PARTIALLY_FILLED,
    (S.SUBMITTED, OrderRetrying): S.RETRYING,
    (S.SUBMITTED, OrderFailed): S.FAILED,
    (S.RETRYING, OrderRouted): S.ROUTING,
    (S.RETRYING, OrderRetrying): S.RETRYING,
    (S.RETRYING, OrderFailed): S.FAILED,
    (S.RETRYING, OrderOpened): S.OPEN,
}

# A resting order: the trigger engine, its owner (cancel, amend) and its expiry act on it.
_RESTING: dict[tuple[OrderStatus, type[OrderEvent]], OrderStatus] = {
    (rest, event): after
    for rest in (S.OPEN, S.PARTIALLY_FILLED)
    for event, after in (
        (OrderTriggered, S.TRIGGERED),
        (OrderCancelled, S.CANCELLED),
        (OrderExpired, S.EXPIRED),
        (OrderAmended, S.OPEN),  # what rests after an amend is simply open
    )
}

# A sniper fails straight from `open` when its token's launch fails a rug check it asked for
# (or it is onlyAtLaunch and arrives after the pool opened): nothing was routed or sent.
_SNIPER: dict[tuple[OrderStatus, type[OrderEvent]], OrderStatus] = {
    (S.OPEN, OrderFailed): S.FAILED,
}

TRANSITIONS: dict[tuple[OrderStatus, type[OrderEvent]], OrderStatus] = {
    **_EXECUTING,
    **_RESTING,
    **_SNIPER,
}
"""The whole lifecycle after the first event. Final statuses have no entry: nothing follows."""


class OutOfSequence(ValueError):
    """An event that does not follow the order's last one: a gap, or a first non-submission."""


class IllegalTransition(OutOfSequence):
    """An event the order's status does not allow (e.g. a trigger after a cancel).

    A kind of OutOfSequence, so every reader parks it exactly where it parks a gap."""


def next_status(status: OrderStatus, event: OrderEvent) -> OrderStatus:
    """The status after `event`, or IllegalTransition."""
    after = TRANSITIONS.get((status, type(event)))
    if after is None:
        raise IllegalTransition(f"{event.TYPE} is not allowed when the order is {status.value}")
    return after


def allowed_events(status: OrderStatus) -> frozenset[str]:
    """The event types the table accepts in `status` (for error messages and docs)."""
    return frozenset(event.TYPE for (before, event) in TRANSITIONS if before is status) & frozenset(
        EVENT_TYPES
    )
