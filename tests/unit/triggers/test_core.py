"""The trigger engine's decisions (pure): proposals carry the next sequence; the log decides."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from schemas import codec
from schemas.envelope import Envelope, genesis_hash, record_hash
from schemas.events import (
    OrderAmended,
    OrderCancelled,
    OrderEvent,
    OrderExpired,
    OrderOpened,
    OrderSubmitted,
    OrderTriggered,
    OrderType,
)
from schemas.market import MarketTick, VenueTick
from services.domain.order import unpack
from services.triggers.core import TriggerCore

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
ORDER = uuid.UUID("00000000-0000-4000-8000-0000000000bb")


def tick(mid: str, slot: int) -> MarketTick:
    return MarketTick(
        pair="SOL-USDC",
        base="SOL",
        quote="USDC",
        slot=slot,
        at=T0,
        reference=Decimal(mid),
        venues=(
            VenueTick(
                venue="RAYDIUM", mid=Decimal(mid), depth_bid=Decimal(1), depth_ask=Decimal(1)
            ),
        ),
    )


class Log:
    """One order's log as the core reads it, with the hash chain."""

    def __init__(self, core: TriggerCore) -> None:
        self.core = core
        self.values: list[bytes] = []

    def write(self, event: OrderEvent, *, sequence: int | None = None) -> list[Envelope]:
        prev = record_hash(self.values[-1]) if self.values else genesis_hash(ORDER)
        envelope = Envelope.new(
            order_id=ORDER,
            sequence=sequence or len(self.values) + 1,
            producer="test",
            prev_hash=prev,
            payload=event,
            occurred_at=T0,
        )
        return self.append(envelope)

    def append(self, envelope: Envelope) -> list[Envelope]:
        value = codec.encode(envelope)
        if envelope.sequence == len(self.values) + 1:
            self.values.append(value)
        return self.core.apply(codec.decode(value), record_hash(value), T0)


def limit(price: str, expires: datetime | None = None) -> OrderSubmitted:
    return OrderSubmitted(
        token_in="SOL",
        token_out="USDC",
        amount=Decimal(2),
        slippage=Decimal("0.01"),
        order_type=OrderType.LIMIT,
        limit_price=Decimal(price),
        expires_at=expires,
    )


def test_a_crossing_tick_proposes_the_next_sequence_once_and_a_cancel_first_wins() -> None:
    core = TriggerCore()
    log = Log(core)
    log.write(limit("150"))
    assert core.on_tick(tick("149", 1), T0) == []
    (proposal,) = core.on_tick(tick("151", 2), T0)
    assert isinstance(proposal.payload, OrderTriggered)
    assert (proposal.sequence, proposal.prev_hash) == (2, record_hash(log.values[0]))
    assert (proposal.payload.slot, proposal.payload.price) == (2, Decimal(151))
    assert core.on_tick(tick("152", 3), T0) == []  # in flight: never proposed twice
    log.write(OrderCancelled())  # the owner's cancel took sequence 2 first
    assert log.append(proposal) == []  # our trigger: a duplicate sequence, dropped
    assert len(core) == 0
    assert core.resting == 0


def test_an_amend_that_wins_the_sequence_rests_the_order_at_its_new_price() -> None:
    core = TriggerCore()
    log = Log(core)
    log.write(limit("150"))
    (proposal,) = core.on_tick(tick("151", 1), T0)
    log.write(OrderAmended(limit_price=Decimal(160)))
    log.append(proposal)  # lost
    assert core.resting == 1
    assert core.on_tick(tick("155", 2), T0) == []
    (again,) = core.on_tick(tick("161", 3), T0)
    assert again.sequence == 3


def test_expiry_comes_before_a_late_trigger() -> None:
    core = TriggerCore()
    log = Log(core)
    log.write(limit("150", T0 + timedelta(seconds=1)))
    (proposal,) = core.on_tick(tick("151", 1), T0 + timedelta(seconds=2))
    assert isinstance(proposal.payload, OrderExpired)


def test_the_clock_expires_resting_orders_and_a_recovered_past_expiry_at_once() -> None:
    core = TriggerCore()
    log = Log(core)
    log.write(limit("150", T0 + timedelta(seconds=1)))
    assert core.on_clock(T0) == []
    (proposal,) = core.on_clock(T0 + timedelta(seconds=1))
    assert isinstance(proposal.payload, OrderExpired)
    late = TriggerCore()
    later = T0 - timedelta(days=1)
    submitted = Envelope.new(
        order_id=ORDER, sequence=1, producer="api", prev_hash=genesis_hash(ORDER),
        payload=limit("150", later + timedelta(seconds=1)), occurred_at=later,
    )  # fmt: skip
    value = codec.encode(submitted)
    # Catching up on the log: nothing proposed yet (later records may decide the order) ...
    assert late.apply(submitted, record_hash(value), T0, propose=False) == []
    # ... and the first clock after the catch-up expires it.
    (expired,) = late.on_clock(T0)
    assert isinstance(expired.payload, OrderExpired)


def test_a_limit_the_router_could_not_fill_waits_for_a_better_price_or_later_slots() -> None:
    core = TriggerCore()
    log = Log(core)
    log.write(limit("150"))
    (trigger,) = core.on_tick(tick("151", 10), T0)
    log.append(trigger)
    assert log.write(OrderOpened(reason="no route at the limit")) == []  # not again at once
    assert core.on_tick(tick("151", 11), T0) == []
    assert core.on_tick(tick("150.5", 12), T0) == []
    (better,) = core.on_tick(tick("152", 13), T0)
    assert better.sequence == 4


def test_market_orders_are_not_held() -> None:
    core = TriggerCore()
    log = Log(core)
    log.write(OrderSubmitted(token_in="SOL", token_out="USDC", amount=Decimal(1),
                             slippage=Decimal(0)))  # fmt: skip
    assert len(core) == 0


def test_an_order_loaded_from_the_read_model_rests_and_the_log_after_it_folds_on() -> None:
    """Recovery loads a row's state, then folds the log from the row's position: records the
    row already holds are dropped, later ones apply, and proposals chain to the row's hash."""
    written = Log(TriggerCore())
    written.write(limit("160"))
    written.write(OrderAmended(limit_price=Decimal(170)))
    row_state = unpack(written.core.orders[ORDER.int])
    assert (row_state.sequence, row_state.limit_price) == (2, Decimal(170))

    core = TriggerCore()
    core.load(row_state)
    assert core.resting == 1
    for value in written.values:  # the log up to the row's position: already in the row
        assert core.apply(codec.decode(value), record_hash(value), T0) == []
    assert core.on_tick(tick("165", 1), T0) == []  # the amended price holds, not 160
    (proposal,) = core.on_tick(tick("171", 2), T0)
    assert isinstance(proposal.payload, OrderTriggered)
    assert proposal.sequence == 3
    assert proposal.prev_hash == record_hash(written.values[-1])
