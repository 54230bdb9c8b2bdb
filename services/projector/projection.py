"""Pure projection: a batch of log records plus the orders' prior states -> rows to write.

No I/O here. The live projector and `oee replay` both call `project`, so the
read models they build cannot differ.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from schemas.codec import UndecodableEvent, decode
from schemas.envelope import Envelope, record_hash
from services.domain.order import OrderState, OutOfSequence, evolve


class LogRecord(NamedTuple):
    """One record as read from the log (a tuple: one is made per record, cheaply)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class EventRow(NamedTuple):
    """A row of `order_events`."""

    envelope: Envelope
    payload_json: str  # the payload as JSON text, for the jsonb column
    hash: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Rejected:
    """A record that cannot be applied, and why: it goes to the dead-letter topic."""

    record: LogRecord
    reason: str


@dataclass
class Projection:
    """What one batch changes: new order states, new event rows, positions, rejects."""

    states: dict[uuid.UUID, OrderState] = field(default_factory=dict)
    events: list[EventRow] = field(default_factory=list)
    positions: dict[int, int] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    duplicates: int = 0


def order_ids_in(records: Sequence[LogRecord]) -> set[uuid.UUID]:
    """The orders a batch touches, from record keys, so their prior state can be loaded first."""
    ids: set[uuid.UUID] = set()
    for record in records:
        try:
            ids.add(uuid.UUID((record.key or b"").decode()))
        except (ValueError, UnicodeDecodeError):
            continue  # not an order key: the record will be rejected when decoded
    return ids


def project(
    records: Sequence[LogRecord], prior: Mapping[uuid.UUID, OrderState | None]
) -> Projection:
    """Fold `records` (in log order) onto `prior`; duplicates are dropped by sequence."""
    result = Projection()
    for record in records:
        result.positions[record.partition] = record.offset + 1
        try:
            envelope = decode(record.value)
        except UndecodableEvent as exc:
            result.rejected.append(Rejected(record, str(exc)))
            continue
        state = result.states.get(envelope.order_id) or prior.get(envelope.order_id)
        if state is not None and envelope.sequence <= state.sequence:
            result.duplicates += 1
            continue
        event_hash = record_hash(record.value or b"")
        try:
            new_state = evolve(state, envelope, event_hash)
        except (OutOfSequence, ArithmeticError, ValueError) as exc:
            # An event the fold cannot apply is parked, never a reason to stop projecting.
            result.rejected.append(Rejected(record, str(exc)))
            continue
        result.states[envelope.order_id] = new_state
        payload = envelope.payload.model_dump_json()
        result.events.append(
            EventRow(envelope, payload, event_hash, record.partition, record.offset)
        )
    return result


def order_row(state: OrderState) -> dict[str, Any]:
    """The `orders` row for a state (JSON columns as plain data)."""
    return {
        "id": state.order_id,
        "client_order_id": state.client_order_id,
        "owner": state.owner,
        "token_in": state.token_in,
        "token_out": state.token_out,
        "amount": state.amount,
        "slippage": state.slippage,
        "status": state.status.value,
        "selected_dex": state.selected_dex,
        "route": state.plan.model_dump(mode="json") if state.plan else None,
        "quotes": [quote.model_dump(mode="json") for quote in state.quotes],
        "amount_out": state.amount_out,
        "executed_price": state.executed_price,
        "fee": state.fee,
        "tx_hash": state.tx_hash,
        "error_code": state.error_code,
        "error": state.error,
        "attempts": state.attempts,
        "last_sequence": state.sequence,
        "created_at": state.created_at,
        "updated_at": state.updated_at,
        "order_type": state.order_type.value,
        "limit_price": state.limit_price,
        "trigger_price": state.trigger_price,
        "take_profit_price": state.take_profit_price,
        "stop_loss_price": state.stop_loss_price,
        "trailing_bps": state.trailing_bps,
        "expires_at": state.expires_at,
        "allow_partial": state.allow_partial,
        "triggered_leg": state.triggered_leg,
        "triggered_slot": state.triggered_slot,
        "triggered_price": state.triggered_price,
        "filled_amount": state.filled_amount,
        "max_price": state.max_price,
        "checks": state.checks.model_dump(mode="json") if state.checks else None,
        "only_at_launch": state.only_at_launch,
        "auto_sell": state.auto_sell.model_dump(mode="json") if state.auto_sell else None,
        "priority": state.priority,
    }


ORDER_COLUMNS: tuple[str, ...] = (
    "id", "client_order_id", "owner", "token_in", "token_out", "amount", "slippage", "status",
    "selected_dex", "route", "quotes", "amount_out", "executed_price", "fee", "tx_hash",
    "error_code", "error", "attempts", "last_sequence", "created_at", "updated_at",
    "order_type", "limit_price", "trigger_price", "take_profit_price", "stop_loss_price",
    "trailing_bps", "expires_at", "allow_partial", "triggered_leg", "triggered_slot",
    "triggered_price", "filled_amount", "max_price", "checks", "only_at_launch", "auto_sell",
    "priority",
)  # fmt: skip
