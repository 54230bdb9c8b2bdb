"""The order lifecycle as pure functions over events.

`evolve` folds one event into an order's state. The router folds to know where
an order stands after a restart; the projector folds the same way to build the
read model; replay folds again. One fold, so the three can never disagree.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import singledispatch
from typing import Any

from schemas.envelope import Envelope
from schemas.events import (
    AutoSell,
    LaunchTarget,
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
    OrderSubmitted,
    OrderTriggered,
    OrderType,
    Priority,
    RoutePlan,
    SniperChecks,
    TransactionBuilt,
    TransactionSubmitted,
    VenueQuote,
)
from services.domain.lifecycle import IllegalTransition, OutOfSequence, next_status

__all__ = ["IllegalTransition", "OrderState", "OutOfSequence", "evolve", "pack", "unpack"]


@dataclass(frozen=True)
class OrderState:
    """Everything known about one order after folding its events."""

    order_id: uuid.UUID
    token_in: str
    token_out: str
    amount: Decimal
    slippage: Decimal
    client_order_id: str | None
    owner: str | None
    status: OrderStatus
    sequence: int
    last_hash: str
    created_at: datetime
    updated_at: datetime
    attempts: int = 0
    quotes: tuple[VenueQuote, ...] = ()
    plan: RoutePlan | None = None
    min_amount_out: Decimal | None = None
    tx_hash: str | None = None
    # The signed transaction of the current attempt as sent (base64), its blockhash and the
    # last block height that blockhash is valid at: a router taking over re-sends these bytes.
    signed_transaction: str | None = None
    blockhash: str | None = None
    last_valid_block_height: int | None = None
    selected_dex: str | None = None
    amount_out: Decimal | None = None
    executed_price: Decimal | None = None
    fee: Decimal | None = None
    error_code: str | None = None
    error: str | None = None
    retry_at: datetime | None = None
    # Conditional orders (issue 17); a market order keeps the defaults.
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    trigger_price: Decimal | None = None
    take_profit_price: Decimal | None = None
    stop_loss_price: Decimal | None = None
    trailing_bps: int | None = None
    expires_at: datetime | None = None
    allow_partial: bool = True
    triggered_leg: str | None = None  # which price the trigger crossed (an OCO has two)
    triggered_slot: int | None = None
    triggered_price: Decimal | None = None
    filled_amount: Decimal = Decimal(0)  # of token_in, by partial fills
    fills: int = 0  # partial fills so far: the next fill's transaction is keyed by this count
    # Sniper orders and the priority lane (issue 18); every other order keeps the defaults.
    max_price: Decimal | None = None  # tokenIn per tokenOut at most
    checks: SniperChecks | None = None
    only_at_launch: bool = False
    auto_sell: AutoSell | None = None
    priority: Priority = "normal"
    launch: LaunchTarget | None = None  # the launched pool a sniper's trigger named

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    @property
    def remaining(self) -> Decimal:
        """What is left to fill of token_in."""
        return self.amount - self.filled_amount

    @property
    def min_price(self) -> Decimal | None:
        """The worst price (tokenOut per tokenIn) this order may execute at, if it has one:
        a limit (or take-profit, or the take-profit leg of an OCO that triggered) fills only
        at or above it; a stop executes as a market order with the order's slippage."""
        if self.order_type in (OrderType.LIMIT, OrderType.TAKE_PROFIT):
            return self.limit_price
        if self.order_type is OrderType.OCO and self.triggered_leg == "takeProfit":
            return self.take_profit_price
        return None


def evolve(state: OrderState | None, envelope: Envelope, event_hash: str) -> OrderState:
    """The state after `envelope`; `event_hash` is the hash of its bytes on the log.

    Raises OutOfSequence unless the event is exactly the next one; callers
    drop events at or below `state.sequence` as duplicates before calling.
    """
    expected = 1 if state is None else state.sequence + 1
    if envelope.sequence != expected:
        raise OutOfSequence(
            f"order {envelope.order_id}: got sequence {envelope.sequence}, expected {expected}"
        )
    if state is None:
        if not isinstance(envelope.payload, OrderSubmitted):
            raise OutOfSequence(f"order {envelope.order_id}: first event is {envelope.type}")
        return _submitted(envelope, envelope.payload, event_hash)
    return _copy_with(
        state,
        {
            "status": next_status(state.status, envelope.payload),
            "sequence": envelope.sequence,
            "last_hash": event_hash,
            "updated_at": envelope.occurred_at,
            **_changes(envelope.payload, state, envelope),
        },
    )


_FIELD_ORDER = tuple(field.name for field in fields(OrderState))
_STATE_FIELDS = frozenset(_FIELD_ORDER)
_REQUIRED = object()  # what no field's value ever is: a field without a default is kept
_DEFAULTS: dict[str, Any] = {
    field.name: field.default for field in fields(OrderState) if field.default is not MISSING
}
# For the fields without a default that `pack(..., only=...)` leaves out.
_UNPACK_DEFAULTS: dict[str, Any] = _DEFAULTS | {
    "amount": Decimal(0),
    "slippage": Decimal(0),
    "client_order_id": None,
    "owner": None,
    "created_at": datetime(1970, 1, 1, tzinfo=UTC),
    "updated_at": datetime(1970, 1, 1, tzinfo=UTC),
}
_REPEATED_FIELDS = frozenset(
    {
        "token_in", "token_out", "owner", "amount", "slippage", "limit_price", "trigger_price",
        "take_profit_price", "stop_loss_price", "status", "order_type",
    }
)  # fmt: skip
_LAYOUTS: dict[int, tuple[str, ...]] = {}  # mask -> the fields it holds (a few dozen masks)


def pack(
    state: OrderState,
    share: Callable[[Any], Any] | None = None,
    only: frozenset[str] | None = None,
) -> tuple[Any, ...]:
    """The state compact, for holders of many states at rest (the trigger engine's resting
    orders). Lossless: `unpack(pack(state)) == state`; with `only`, the fields named keep
    their values and the others unpack as their defaults (those without one: zero amounts,
    no owner or client id, the epoch), for a holder that reads only those fields.

    Sparse: `(mask, *values)` with only the fields not at their default (a resting order
    sets ~15 of 40: ~190 bytes of tuple instead of ~380), the id as its int (44 bytes, not
    a 100-byte `UUID`) and the hash as its 32 bytes (65, not a 113-byte hex str). `share`,
    if given, is applied to the mask and to the values many orders repeat (tokens, owner,
    amounts, prices, status), so the holder can keep one object per distinct value."""
    values = state.__dict__
    mask = 0
    packed: list[Any] = []
    for bit, name in enumerate(_FIELD_ORDER):
        value = values[name]
        if value is _DEFAULTS.get(name, _REQUIRED) or (only is not None and name not in only):
            continue  # the very default object (or a field not kept): unpack puts one back
        mask |= 1 << bit
        if name == "order_id":
            value = value.int
        elif name == "last_hash":
            value = _compact_hash(value)
        elif share is not None and name in _REPEATED_FIELDS and value is not None:
            value = share(value)
        packed.append(value)
    return (mask if share is None else share(mask), *packed)


def unpack(packed: tuple[Any, ...]) -> OrderState:
    """The state `pack` made these values of."""
    mask = packed[0]
    layout = _LAYOUTS.get(mask)
    if layout is None:
        layout = _LAYOUTS[mask] = tuple(
            name for bit, name in enumerate(_FIELD_ORDER) if mask >> bit & 1
        )
    values = dict(_UNPACK_DEFAULTS)
    values.update(zip(layout, packed[1:], strict=True))
    values["order_id"] = uuid.UUID(int=values["order_id"])
    last_hash = values["last_hash"]
    if isinstance(last_hash, bytes):
        values["last_hash"] = last_hash.hex()
    state = object.__new__(OrderState)
    state.__dict__.update({name: values[name] for name in _FIELD_ORDER})
    return state


def _compact_hash(value: str) -> bytes | str:
    """A lowercase hex digest as its bytes; anything else as it is (still lossless)."""
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return value
    return raw if raw.hex() == value else value


def _copy_with(state: OrderState, changes: dict[str, Any]) -> OrderState:
    """`dataclasses.replace`, at a tenth of its cost: the fold's hot spot on replay.

    `replace` calls `__init__` again over all 27 fields; a state has no `__post_init__`
    and no field with `init=False`, so copying its attributes is the same result. It
    still stays frozen: only this function ever writes an existing state's `__dict__`,
    and only a new one's.
    """
    unknown = changes.keys() - _STATE_FIELDS
    if unknown:
        raise TypeError(f"OrderState has no field(s) {sorted(unknown)}")
    copy = object.__new__(OrderState)
    copy.__dict__.update(state.__dict__, **changes)
    return copy


def _submitted(envelope: Envelope, event: OrderSubmitted, event_hash: str) -> OrderState:
    return OrderState(
        order_id=envelope.order_id,
        token_in=event.token_in,
        token_out=event.token_out,
        amount=event.amount,
        slippage=event.slippage,
        client_order_id=event.client_order_id,
        owner=event.owner,
        status=event.resulting_status(),
        sequence=envelope.sequence,
        last_hash=event_hash,
        created_at=envelope.occurred_at,
        updated_at=envelope.occurred_at,
        order_type=event.order_type,
        limit_price=event.limit_price,
        trigger_price=event.trigger_price,
        take_profit_price=event.take_profit_price,
        stop_loss_price=event.stop_loss_price,
        trailing_bps=event.trailing_bps,
        expires_at=event.expires_at,
        allow_partial=event.allow_partial,
        max_price=event.max_price,
        checks=event.checks,
        only_at_launch=event.only_at_launch,
        auto_sell=event.auto_sell,
        priority=event.priority,
    )


@singledispatch
def _changes(event: OrderEvent, state: OrderState, envelope: Envelope) -> dict[str, Any]:
    """The fields an event changes beyond status, sequence, hash and time."""
    raise OutOfSequence(f"order {state.order_id}: {type(event).__name__} after the first event")


@_changes.register
def _(event: OrderRouted, state: OrderState, envelope: Envelope) -> dict[str, Any]:
    venues = sorted({leg.venue for leg in event.plan.legs})
    return {
        "attempts": event.attempt,
        "quotes": event.quotes,
        "plan": event.plan,
        "selected_dex": "+".join(venues),
        "retry_at": None,
    }


@_changes.register
def _(event: TransactionBuilt, state: OrderState, envelope: Envelope) -> dict[str, Any]:
    return {"min_amount_out": event.min_amount_out}


@_changes.register
def _(event: TransactionSubmitted, state: OrderState, envelope: Envelope) -> dict[str, Any]:
    return {
        "tx_hash": event.tx_hash,
        "signed_transaction": event.transaction,
        "blockhash": event.blockhash,
        "last_valid_block_height": event.last_valid_block_height,
    }


@_changes.register
def _(event: OrderRetrying, state: OrderState, envelope: Envelope) -> dict[str, Any]:
    return {
        "attempts": event.attempt,
        "error_code": event.code.value,
        "error": event.error,
        "retry_at": envelope.occurred_at + timedelta(seconds=float(event.delay_seconds)),
    }


@_changes.register
def _(event: OrderCompleted, state: OrderState, envelope: Envelope) -> dict[str, Any]:
    # After partial fills the completion carries the totals (amount in and out of all fills).
    filled = {"filled_amount": event.amount_in} if state.fills else {}
    return {
        **filled,
        "tx_hash": event.tx_hash,
        "selected_dex": event.selected_dex,
        "amount_out": event.amount_out,
        "executed_price": event.executed_price,
        "fee": event.fee,
        "error_code": None,
        "error": None,
    }


@_changes.register
def _(event: OrderFailed, state: OrderState, envelope: Envelope) -> dict[str, Any]:
    return {
        "error_code": event.code.value,
        "error": event.error,
        "attempts": max(state.attempts, event.attempts),
        "tx_hash": event.tx_hash or state.tx_hash,
    }


@_changes.register
def _(event: OrderTriggered, state: OrderState, envelope: Envelope) -> dict[str, Any]:
    return {
        "triggered_leg": event.leg,
        "triggered_slot": event.slot,
        "triggered_price": event.price,
        "launch": event.launch or state.launch,
        "attempts": 0,  # the market path's attempts count from the trigger
        "plan": None,
        "error_code": None,
        "error": None,
        # A new fill, a new transaction: nothing of an earlier partial fill's is re-sent.
        "tx_hash": None,
        "signed_transaction": None,
        "blockhash": None,
        "last_valid_block_height": None,
    }


@_changes.register
def _(event: OrderOpened, state: OrderState, envelope: Envelope) -> dict[str, Any]:
    return {"triggered_leg": None, "error": event.reason, "plan": None, "retry_at": None}


@_changes.register
def _(event: OrderCancelled, state: OrderState, envelope: Envelope) -> dict[str, Any]:
    return {"error": event.reason}


@_changes.register
def _(event: OrderExpired, state: OrderState, envelope: Envelope) -> dict[str, Any]:
    return {"error": f"expired at {event.expires_at.isoformat()}"}


_AMENDABLE = (
    "limit_price", "trigger_price", "take_profit_price", "stop_loss_price", "trailing_bps",
    "expires_at",
)  # fmt: skip


@_changes.register
def _(event: OrderAmended, state: OrderState, envelope: Envelope) -> dict[str, Any]:
    return {name: getattr(event, name) for name in _AMENDABLE if getattr(event, name) is not None}


@_changes.register
def _(event: OrderPartiallyFilled, state: OrderState, envelope: Envelope) -> dict[str, Any]:
    return {
        "filled_amount": state.filled_amount + event.amount_in,
        "amount_out": (state.amount_out or Decimal(0)) + event.amount_out,
        "fills": state.fills + 1,
        "fee": (state.fee or Decimal(0)) + event.fee,
        "tx_hash": event.tx_hash,
        "triggered_leg": None,
        "plan": None,
    }
