"""The per-order hash chain, checked over events as read from the log (pure, no I/O).

Every event carries `prev_hash`, the SHA-256 of the bytes of the order's previous event
as written to the log; the first event carries `genesis_hash(order_id)`. Rewriting an
event's bytes changes its hash, so the link from its *successor* breaks: the event
reported is the first one whose `prev_hash` does not match what the log holds before
it, and the suspect is that event's predecessor (or the event's own `prev_hash`). A
rewrite of an order's last event breaks no link yet; `verify` catches it in the row
comparison instead, since the live `order_events.hash` was taken from the original.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from schemas.envelope import genesis_hash
from services.domain.order import OrderState
from services.projector.projection import EventRow


@dataclass(frozen=True)
class ChainBreak:
    """An event whose `prev_hash` does not point at the event before it on the log."""

    order_id: uuid.UUID
    sequence: int
    partition: int
    offset: int
    expected: str  # the hash of the previous event's bytes (or the order's genesis hash)
    found: str  # the prev_hash the event carries

    def describe(self) -> str:
        where = f"partition {self.partition} offset {self.offset}"
        if self.sequence == 1:
            return (
                f"order {self.order_id} event 1 ({where}) is not anchored to the order id:"
                f" prev_hash {self.found[:12]}… != genesis {self.expected[:12]}…"
            )
        return (
            f"order {self.order_id} event {self.sequence} ({where}): prev_hash"
            f" {self.found[:12]}… != hash of event {self.sequence - 1} on the log"
            f" {self.expected[:12]}…; event {self.sequence - 1} was rewritten, or this"
            " event's prev_hash was"
        )


def chain_breaks(
    events: Sequence[EventRow], prior: Mapping[uuid.UUID, OrderState | None]
) -> list[ChainBreak]:
    """Check each applied event (in log order) against the one before it.

    `events` are a projection's rows (hash = SHA-256 of the record's bytes, computed
    from the log); `prior` the orders' states before them (`last_hash` is the hash of
    the last event applied). Costs one dict lookup per event: nothing is decoded again.
    """
    last: dict[uuid.UUID, str] = {}
    breaks: list[ChainBreak] = []
    for row in events:
        envelope = row.envelope
        order_id = envelope.order_id
        if envelope.sequence == 1:
            expected = genesis_hash(order_id)
        elif order_id in last:
            expected = last[order_id]
        else:
            state = prior.get(order_id)
            # project() only applies event n on top of event n-1, so a state is always there.
            expected = state.last_hash if state is not None else ""
        if envelope.prev_hash != expected:
            breaks.append(
                ChainBreak(
                    order_id, envelope.sequence, row.partition, row.offset,
                    expected, envelope.prev_hash,
                )
            )  # fmt: skip
        last[order_id] = row.hash
    return breaks
