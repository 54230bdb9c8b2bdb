"""The lifecycle table, walked whole: every status x every event type is defined or refused.

And the race rule that rests on it: proposals made on the same state take the same sequence,
readers keep the first on the log, so a cancel and a trigger never both apply.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import codec
from schemas.envelope import Envelope, genesis_hash, record_hash
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
    OrderSubmitted,
    OrderTriggered,
    OrderType,
    TransactionBuilt,
    TransactionSubmitted,
)
from services.domain.lifecycle import TRANSITIONS, IllegalTransition
from services.domain.order import OrderState, evolve, pack, unpack
from tests.builders import quote, route_plan
from tests.strategies import order_histories

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
TX = "5" * 88
LIMIT = OrderSubmitted(
    token_in="SOL",
    token_out="USDC",
    amount=Decimal(10),
    slippage=Decimal("0.01"),
    order_type=OrderType.LIMIT,
    limit_price=Decimal(150),
    expires_at=T0 + timedelta(days=1),
)

SAMPLES: dict[str, OrderEvent] = {
    "OrderSubmitted": LIMIT,
    "OrderOpened": OrderOpened(reason="no route at the limit"),
    "OrderTriggered": OrderTriggered(
        leg="limit", pair="SOL-USDC", slot=7, price=Decimal(151), level=Decimal(150)
    ),
    "OrderCancelled": OrderCancelled(),
    "OrderExpired": OrderExpired(expires_at=T0),
    "OrderAmended": OrderAmended(limit_price=Decimal(149)),
    "OrderPartiallyFilled": OrderPartiallyFilled(
        tx_hash=TX, amount_in=Decimal(4), amount_out=Decimal(600), remaining=Decimal(6)
    ),
    "OrderRouted": OrderRouted(attempt=1, quotes=(quote(),), plan=route_plan(), reason="best"),
    "TransactionBuilt": TransactionBuilt(attempt=1, min_amount_out=Decimal(1)),
    "TransactionSubmitted": TransactionSubmitted(attempt=1, tx_hash=TX),
    "OrderRetrying": OrderRetrying(
        attempt=1, code="VENUE_TIMEOUT", error="slow", delay_seconds=Decimal(2)
    ),
    "OrderCompleted": OrderCompleted(
        tx_hash=TX,
        selected_dex="RAYDIUM",
        amount_in=Decimal(10),
        amount_out=Decimal(1510),
        executed_price=Decimal(151),
        fee=Decimal("0.025"),
    ),
    "OrderFailed": OrderFailed(code="NO_ROUTE", error="none", retryable=False, attempts=1),
}
ORDER = uuid.UUID("00000000-0000-4000-8000-0000000000aa")


def test_every_event_type_has_a_sample() -> None:
    assert SAMPLES.keys() == EVENT_TYPES.keys()


def opened() -> OrderState:
    return evolve(None, _envelope(1, LIMIT, genesis_hash(ORDER)), "a" * 64)


def _envelope(sequence: int, payload: OrderEvent, prev_hash: str) -> Envelope:
    return Envelope.new(
        order_id=ORDER,
        sequence=sequence,
        producer="test",
        prev_hash=prev_hash,
        payload=payload,
        occurred_at=T0 + timedelta(seconds=sequence),
    )


@pytest.mark.parametrize("status", list(OrderStatus), ids=lambda s: s.value)
@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_status_and_event_type_is_defined_or_refused(
    status: OrderStatus, event_type: str
) -> None:
    state = dataclasses.replace(opened(), status=status)
    payload = SAMPLES[event_type]
    envelope = _envelope(state.sequence + 1, payload, state.last_hash)
    expected = TRANSITIONS.get((status, type(payload)))
    if expected is None:
        with pytest.raises(IllegalTransition):
            evolve(state, envelope, "b" * 64)
    else:
        after = evolve(state, envelope, "b" * 64)
        assert after.status is expected
        # The status word the event names (socket, audit rows) is the fold's.
        assert envelope.status is expected
        assert after.sequence == state.sequence + 1


def test_final_statuses_accept_nothing_and_every_other_status_has_a_way_out() -> None:
    sources = {before for before, _ in TRANSITIONS}
    for status in OrderStatus:
        assert (status in sources) != status.is_final, status


def test_every_status_is_reachable_from_a_submission() -> None:
    reached = {OrderStatus.PENDING, OrderStatus.OPEN}
    frontier = list(reached)
    while frontier:
        status = frontier.pop()
        for (before, _), after in TRANSITIONS.items():
            if before is status and after not in reached:
                reached.add(after)
                frontier.append(after)
    assert reached == set(OrderStatus)


def test_a_market_order_can_be_neither_cancelled_nor_triggered() -> None:
    for event in (OrderCancelled, OrderTriggered, OrderExpired, OrderAmended):
        assert (OrderStatus.PENDING, event) not in TRANSITIONS


# --- Races ----------------------------------------------------------------------------------

Proposal = tuple[str, OrderEvent]  # (writer, event)


def read_as_every_consumer_does(records: list[bytes]) -> OrderState | None:
    """Fold log records in order, dropping any at or below the order's sequence (duplicates,
    and proposals that lost their sequence to another writer)."""
    state: OrderState | None = None
    for value in records:
        envelope = codec.decode(value)
        if state is not None and envelope.sequence <= state.sequence:
            continue
        state = evolve(state, envelope, record_hash(value))
    return state


def propose(state: OrderState, event: OrderEvent) -> bytes:
    """What a writer appends: the event with the sequence it expects next, chained."""
    return codec.encode(_envelope(state.sequence + 1, event, state.last_hash))


@settings(max_examples=200, deadline=None)
@given(
    first=st.sampled_from(["cancel", "trigger", "expire", "amend"]),
    others=st.lists(st.sampled_from(["cancel", "trigger", "expire", "amend"]), max_size=4),
)
def test_proposals_on_one_state_apply_only_the_first_on_the_log(
    first: str, others: list[str]
) -> None:
    """Cancel, trigger, expiry and amend proposed by different writers on the same open state,
    in any log order: exactly the first applies, whatever follows it."""
    start = opened()
    first_value = codec.encode(_envelope(1, LIMIT, genesis_hash(ORDER)))
    kinds = {
        "cancel": SAMPLES["OrderCancelled"],
        "trigger": SAMPLES["OrderTriggered"],
        "expire": SAMPLES["OrderExpired"],
        "amend": SAMPLES["OrderAmended"],
    }
    log = [first_value, *(propose(start, kinds[k]) for k in [first, *others])]
    final = read_as_every_consumer_does(log)
    assert final is not None
    assert final.sequence == 2
    assert final.status is type(kinds[first]).STATUS


def test_a_cancel_after_a_trigger_it_did_not_see_is_dropped_even_later_in_the_run() -> None:
    """The router goes on from the trigger; a cancel proposed on the open state never lands."""
    start = opened()
    triggered_value = propose(start, SAMPLES["OrderTriggered"])
    triggered = evolve(start, codec.decode(triggered_value), record_hash(triggered_value))
    routed_value = propose(triggered, SAMPLES["OrderRouted"])
    cancel_value = propose(start, SAMPLES["OrderCancelled"])  # made on the stale open state
    log = [codec.encode(_envelope(1, LIMIT, genesis_hash(ORDER))), triggered_value]
    final = read_as_every_consumer_does([*log, cancel_value, routed_value])
    assert final is not None
    assert final.status is OrderStatus.ROUTING


@settings(max_examples=50, deadline=None)
@given(history=order_histories())
def test_packing_a_state_is_lossless(history: list[Envelope]) -> None:
    shared: dict[object, object] = {}

    def share(value: object) -> object:  # as the trigger engine shares repeated values
        return shared.setdefault((type(value), str(value)), value)

    state = None
    for envelope in history:
        state = evolve(state, envelope, record_hash(envelope.model_dump_json().encode()))
        assert unpack(pack(state)) == state
        # Exactly, not only equal: Decimal("1.0") == Decimal("1") but is not the same amount.
        assert repr(unpack(pack(state))) == repr(state)
        assert repr(unpack(pack(state, share))) == repr(state)
