"""Cancel and amend: appended only on a resting order, and answered by what the log decided.

The API proposes its event as every writer does: with the order's next sequence and the hash
of its last event, as the read model shows them. The trigger engine may propose a trigger on
the same state at the same moment; both records land in the order's one partition, and every
reader keeps the first and drops the other as a duplicate sequence (`services/domain/
lifecycle.py`). So the API cannot know from its own write whether it won: it waits until the
projector (whose rows and log positions commit together) has passed the offset it wrote at,
and reads which event holds that sequence. Ours: cancelled (or amended). Another: the order
moved on, and the answer follows from where it stands (409 ALREADY_TRIGGERED or
ALREADY_FINAL), or, if it still rests (an amend or another cancel won), the API proposes
again on the new state. Never both a cancel and a fill: the fold refuses a cancel after a
trigger, and a trigger after a cancel.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from schemas.envelope import Envelope
from schemas.events import OrderEvent, OrderStatus
from services.api.publisher import OrderPublisher
from services.api.read_model import ReadModel

PRODUCER = "api"
_ROUNDS = 5  # proposals on successive states (each lost to a concurrent amend) before 409
_POLL_SECONDS = 0.01


class OutcomeUnknown(RuntimeError):
    """Written, but the projector did not reach it in time: the answer is on the log later."""


@dataclass(frozen=True)
class Decision:
    """What happened to a cancel or an amend."""

    applied: bool  # our event is the order's: cancelled / amended
    status: str  # the order's status as the log has it now
    code: str | None = None  # why not: ALREADY_TRIGGERED, ALREADY_FINAL
    row: dict[str, Any] | None = None


def refusal(status: str) -> str | None:
    """None when a resting order; else why a cancel or amend cannot apply."""
    state = OrderStatus(status)
    if state.is_resting:
        return None
    return "ALREADY_FINAL" if state.is_final else "ALREADY_TRIGGERED"


async def event_at(read_model: ReadModel, order_id: uuid.UUID, sequence: int) -> dict[str, Any]:
    rows = await read_model.event_rows(order_id, [sequence])
    return rows[0] if rows else {}


async def propose_on_resting(
    read_model: ReadModel,
    publisher: OrderPublisher,
    order_id: uuid.UUID,
    event: OrderEvent,
    *,
    timeout: float,
) -> Decision:
    """Append `event` to the order if it rests, and say whether the log took it."""
    for _ in range(_ROUNDS):
        row = await read_model.order(order_id)
        assert row is not None
        why = refusal(row["status"])
        if why is not None:
            if why == "ALREADY_FINAL" and row["status"] == OrderStatus.CANCELLED.value:
                return Decision(False, row["status"], "ALREADY_CANCELLED", row)
            return Decision(False, row["status"], why, row)
        sequence = int(row["last_sequence"]) + 1
        last = await event_at(read_model, order_id, sequence - 1)
        envelope = Envelope.new(
            order_id=order_id,
            sequence=sequence,
            producer=PRODUCER,
            prev_hash=last["hash"],
            payload=event,
        )
        partition, offset = await publisher.publish(envelope)
        deadline = time.monotonic() + timeout
        while await read_model.log_position(publisher.topic, partition) <= offset:
            if time.monotonic() > deadline:
                raise OutcomeUnknown(
                    f"{event.TYPE} is on the log; the read model has not reached it yet"
                )
            await asyncio.sleep(_POLL_SECONDS)
        winner = await event_at(read_model, order_id, sequence)
        if winner.get("type") == event.TYPE and winner.get("producer") == PRODUCER:
            after = await read_model.order(order_id)
            return Decision(True, event.STATUS.value, None, after)
        # Another writer took the sequence; look again at where the order stands.
    row = await read_model.order(order_id)
    status = row["status"] if row else "unknown"
    return Decision(False, status, refusal(status) or "CONFLICT", row)
