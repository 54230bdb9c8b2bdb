"""`evolve`: the one fold the router, the projector and replay share."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings

from schemas import codec
from schemas.envelope import Envelope, record_hash
from schemas.events import (
    FailureCode,
    OrderEvent,
    OrderFailed,
    OrderRetrying,
    OrderRouted,
    OrderStatus,
    OrderSubmitted,
    RoutePlan,
    TransactionBuilt,
    TransactionSubmitted,
    VenueQuote,
)
from services.domain.order import OrderState, OutOfSequence, evolve
from tests.builders import completed as build_completed
from tests.builders import envelope_chain, leg, route_plan
from tests.strategies import order_histories

ORDER_ID = uuid.UUID("00000000-0000-4000-8000-0000000000f0")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TX1 = "1" * 88
TX2 = "2" * 87

SUBMITTED = OrderSubmitted(
    token_in="SOL",
    token_out="USDC",
    amount=Decimal(10),
    slippage=Decimal("0.01"),
    client_order_id="c-1",
    owner="alice",
)
QUOTES = (
    VenueQuote(venue="RAYDIUM", amount_out=Decimal(1500), fee=Decimal("0.025"), price_impact=0),
    VenueQuote(venue="METEORA", amount_out=Decimal(1499), fee=Decimal("0.01"), price_impact=0),
)


def plan(*venues: str) -> RoutePlan:
    share = Decimal(1) / len(venues)
    return route_plan(
        [
            leg(venue, Decimal(10) * share, Decimal(1500) * share, "0.025", share)
            for venue in venues
        ],
        amount_out=1500,
        min_amount_out=1485,
        price_impact="0.001",
        market_slot=7,
        quoted_at=1.0,
    )


def envelopes_for(payloads: list[OrderEvent], order_id: uuid.UUID = ORDER_ID) -> list[Envelope]:
    """Events 1..n of one order, a second apart, hash-chained as a producer writes them."""
    return envelope_chain(order_id, payloads, start=T0)


def fold_steps(events: list[Envelope]) -> list[OrderState]:
    """The state after each event."""
    states: list[OrderState] = []
    state: OrderState | None = None
    for envelope in events:
        state = evolve(state, envelope, record_hash(codec.encode(envelope)))
        states.append(state)
    return states


def fold(events: list[Envelope]) -> OrderState | None:
    steps = fold_steps(events)
    return steps[-1] if steps else None


def at(sequence: int) -> datetime:
    return T0 + timedelta(seconds=sequence)


def test_a_completed_lifecycle() -> None:
    completed = build_completed(TX1, "1499.5", selected_dex="RAYDIUM", amount_in=10, fee="0.025")
    events = envelopes_for(
        [
            SUBMITTED,
            OrderRouted(attempt=1, quotes=QUOTES, plan=plan("RAYDIUM"), reason="best"),
            TransactionBuilt(attempt=1, min_amount_out=Decimal(1485)),
            TransactionSubmitted(attempt=1, tx_hash=TX1),
            completed,
        ]
    )
    pending, routing, building, submitted, done = fold_steps(events)

    assert pending == OrderState(
        order_id=ORDER_ID,
        token_in="SOL",
        token_out="USDC",
        amount=Decimal(10),
        slippage=Decimal("0.01"),
        client_order_id="c-1",
        owner="alice",
        status=OrderStatus.PENDING,
        sequence=1,
        last_hash=record_hash(codec.encode(events[0])),
        created_at=at(1),
        updated_at=at(1),
    )
    assert (routing.status, routing.sequence, routing.attempts) == (OrderStatus.ROUTING, 2, 1)
    assert routing.quotes == QUOTES
    assert routing.plan == plan("RAYDIUM")
    assert routing.selected_dex == "RAYDIUM"
    assert routing.updated_at == at(2)
    assert routing.created_at == at(1)

    assert (building.status, building.min_amount_out) == (OrderStatus.BUILDING, Decimal(1485))
    assert building.tx_hash is None
    assert (submitted.status, submitted.tx_hash) == (OrderStatus.SUBMITTED, TX1)
    assert not submitted.is_final

    assert done.status is OrderStatus.COMPLETED
    assert done.is_final
    assert (done.sequence, done.updated_at, done.attempts) == (5, at(5), 1)
    assert (done.amount_out, done.executed_price, done.fee) == (
        Decimal("1499.5"),
        Decimal("149.95"),
        Decimal("0.025"),
    )
    assert done.tx_hash == TX1
    assert (done.error_code, done.error, done.retry_at) == (None, None, None)
    assert done.last_hash == record_hash(codec.encode(events[-1]))
    # The events chain: each one points back at the previous record's hash.
    assert [e.prev_hash for e in events[1:]] == [
        s.last_hash for s in (pending, routing, building, submitted)
    ]


def test_a_failed_lifecycle_keeps_the_landed_signature() -> None:
    events = envelopes_for(
        [
            SUBMITTED,
            OrderRouted(attempt=1, quotes=QUOTES, plan=plan("METEORA", "RAYDIUM"), reason="split"),
            TransactionBuilt(attempt=1, min_amount_out=Decimal(1485)),
            TransactionSubmitted(attempt=1, tx_hash=TX1),
            OrderFailed(
                code=FailureCode.SLIPPAGE_EXCEEDED,
                error="got 1400, wanted at least 1485",
                retryable=False,
                attempts=1,
            ),
        ]
    )
    states = fold_steps(events)
    assert [s.status for s in states] == [
        OrderStatus.PENDING,
        OrderStatus.ROUTING,
        OrderStatus.BUILDING,
        OrderStatus.SUBMITTED,
        OrderStatus.FAILED,
    ]
    failed = states[-1]
    assert states[1].selected_dex == "METEORA+RAYDIUM"
    assert failed.is_final
    assert (failed.error_code, failed.error) == (
        "SLIPPAGE_EXCEEDED",
        "got 1400, wanted at least 1485",
    )
    assert failed.tx_hash == TX1  # the failure event carries none; the state keeps the one sent
    assert failed.attempts == 1
    assert (failed.amount_out, failed.executed_price, failed.fee) == (None, None, None)


def test_a_failure_before_any_route_counts_the_attempts_it_reports() -> None:
    events = envelopes_for(
        [
            SUBMITTED,
            OrderFailed(
                code=FailureCode.NO_ROUTE, error="no pool", retryable=False, attempts=3, tx_hash=TX2
            ),
        ]
    )
    failed = fold(events)
    assert failed is not None
    assert (failed.status, failed.attempts, failed.tx_hash) == (OrderStatus.FAILED, 3, TX2)
    assert (failed.plan, failed.quotes, failed.selected_dex) == (None, (), None)


def test_retrying_then_completed() -> None:
    events = envelopes_for(
        [
            SUBMITTED,
            OrderRouted(attempt=1, quotes=QUOTES, plan=plan("RAYDIUM"), reason="best"),
            TransactionBuilt(attempt=1, min_amount_out=Decimal(1485)),
            TransactionSubmitted(attempt=1, tx_hash=TX1),
            OrderRetrying(
                attempt=1,
                code=FailureCode.QUOTE_EXPIRED,
                error="quote older than 2s",
                delay_seconds=Decimal("2.5"),
            ),
            OrderRouted(attempt=2, quotes=QUOTES[1:], plan=plan("METEORA"), reason="best"),
            TransactionBuilt(attempt=2, min_amount_out=Decimal(1480)),
            TransactionSubmitted(attempt=2, tx_hash=TX2),
            build_completed(TX2, 1490, amount_in=10, fee="0.01"),
        ]
    )
    states = fold_steps(events)
    retrying, rerouted, rebuilt, resubmitted, done = states[4:]

    assert retrying.status is OrderStatus.RETRYING
    assert not retrying.is_final
    assert (retrying.attempts, retrying.error_code, retrying.error) == (
        1,
        "QUOTE_EXPIRED",
        "quote older than 2s",
    )
    assert retrying.retry_at == at(5) + timedelta(seconds=2.5)
    assert retrying.tx_hash == TX1

    assert (rerouted.status, rerouted.attempts, rerouted.retry_at) == (OrderStatus.ROUTING, 2, None)
    assert (rerouted.selected_dex, rerouted.quotes) == ("METEORA", QUOTES[1:])
    # The last failure stays visible while the retry is in flight...
    assert rerouted.error_code == "QUOTE_EXPIRED"
    assert rebuilt.min_amount_out == Decimal(1480)
    assert resubmitted.tx_hash == TX2

    # ...and the fill clears it.
    assert done.status is OrderStatus.COMPLETED
    assert (done.error_code, done.error, done.retry_at) == (None, None, None)
    assert (done.attempts, done.sequence, done.tx_hash) == (2, 9, TX2)
    assert (done.amount_out, done.fee) == (Decimal(1490), Decimal("0.01"))
    assert done.created_at == at(1)
    assert done.updated_at == at(9)


def _one(payload: OrderEvent, sequence: int) -> Envelope:
    return Envelope.new(
        order_id=ORDER_ID,
        sequence=sequence,
        producer="test",
        prev_hash="0" * 64,
        payload=payload,
        occurred_at=at(sequence),
    )


BUILT = TransactionBuilt(attempt=1, min_amount_out=Decimal(1))


@pytest.mark.parametrize(
    ("before", "event", "message"),
    [
        ([], _one(BUILT, 1), "first event is TransactionBuilt"),
        ([], _one(SUBMITTED, 2), "got sequence 2, expected 1"),
        ([_one(SUBMITTED, 1)], _one(BUILT, 3), "got sequence 3, expected 2"),
        ([_one(SUBMITTED, 1)], _one(BUILT, 1), "got sequence 1, expected 2"),
        (
            [_one(SUBMITTED, 1)],
            _one(SUBMITTED, 2),
            "OrderSubmitted is not allowed when the order is pending",
        ),
    ],
    ids=["first-not-submitted", "first-not-1", "gap", "repeat", "second-submission"],
)
def test_out_of_sequence_events_are_refused(
    before: list[Envelope], event: Envelope, message: str
) -> None:
    state = fold(before)
    with pytest.raises(OutOfSequence, match=message):
        evolve(state, event, "f" * 64)


@settings(max_examples=80, deadline=None)
@given(order_histories())
def test_folding_the_same_events_twice_gives_equal_states(history: list[Envelope]) -> None:
    first, second = fold_steps(history), fold_steps(history)
    assert first == second
    final = first[-1]
    assert final.sequence == len(history)
    assert final.status is history[-1].status
    assert final.created_at == history[0].occurred_at
    assert final.updated_at == history[-1].occurred_at
    assert final.last_hash == record_hash(codec.encode(history[-1]))
    # Folding what was read back from the log is the same as folding what was written.
    assert fold_steps([codec.decode(codec.encode(e)) for e in history]) == first
