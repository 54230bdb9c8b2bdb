"""`project`: log records + prior states -> rows, positions, rejects, purely."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import codec
from schemas.envelope import record_hash
from schemas.events import (
    AutoSell,
    FailureCode,
    OrderEvent,
    OrderRetrying,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    SniperChecks,
    TransactionBuilt,
)
from services.domain.order import OrderState
from services.projector.projection import (
    ORDER_COLUMNS,
    LogRecord,
    Projection,
    order_ids_in,
    order_row,
    project,
)
from tests.builders import encoded_chain, leg, quote, route_plan, routed_and_sent
from tests.strategies import order_histories

TOPIC = "orders.events"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
A = uuid.UUID("00000000-0000-4000-8000-00000000000a")
B = uuid.UUID("00000000-0000-4000-8000-00000000000b")
TX = "3" * 88

SUBMITTED = OrderSubmitted(
    token_in="SOL", token_out="USDC", amount=Decimal("2.5"), slippage=Decimal("0.005")
)
PLAN = route_plan(
    (leg("RAYDIUM", amount_in="2.5", amount_out=375, fee="0.00625"),),
    amount_out=375,
    min_amount_out="373.125",
    price_impact="0.0001",
    market_slot=3,
    quoted_at=1.5,
)
LIFECYCLE: list[OrderEvent] = [
    SUBMITTED,
    *routed_and_sent(PLAN, (quote("RAYDIUM", amount_out=375, fee=0),), TX, reason="best"),
]


def history(order_id: uuid.UUID, payloads: Sequence[OrderEvent] = LIFECYCLE) -> list[bytes]:
    """The encoded events 1..n of one order."""
    return encoded_chain(order_id, payloads, start=T0)


def records(
    values: Sequence[bytes | None], partition: int = 0, key: uuid.UUID = A
) -> list[LogRecord]:
    """Consecutive records of one partition, from offset 0."""
    return [
        LogRecord(TOPIC, partition, offset, str(key).encode(), value)
        for offset, value in enumerate(values)
    ]


def sequences(projection: Projection) -> list[tuple[uuid.UUID, int]]:
    return [(row.envelope.order_id, row.envelope.sequence) for row in projection.events]


def with_top_level(value: bytes, **changes: object) -> bytes:
    return orjson.dumps({**orjson.loads(value), **changes})


def test_a_clean_batch_becomes_one_row_per_event_and_the_final_state() -> None:
    values = history(A)
    projection = project(records(values, partition=2), {})
    assert sequences(projection) == [(A, 1), (A, 2), (A, 3), (A, 4)]
    assert (projection.duplicates, projection.rejected) == (0, [])
    state = projection.states[A]
    assert (state.status, state.sequence, state.tx_hash) == (OrderStatus.SUBMITTED, 4, TX)
    rows = projection.events
    assert [(r.partition, r.offset) for r in rows] == [(2, 0), (2, 1), (2, 2), (2, 3)]
    assert [r.hash for r in rows] == [record_hash(v) for v in values]
    assert json.loads(rows[2].payload_json) == {"attempt": 1, "min_amount_out": "373.125"}
    assert [r.envelope for r in rows] == [codec.decode(v) for v in values]


def test_duplicates_within_a_batch_are_counted_and_not_applied() -> None:
    v = history(A)
    projection = project(records([v[0], v[1], v[1], v[0], v[2], v[2], v[3]]), {})
    assert projection.duplicates == 3
    assert sequences(projection) == [(A, 1), (A, 2), (A, 3), (A, 4)]
    assert [r.offset for r in projection.events] == [0, 1, 4, 6]  # the first copy wins
    assert projection.rejected == []
    assert projection.states[A].sequence == 4


def test_duplicates_of_events_already_in_the_read_model_are_dropped() -> None:
    v = history(A)
    first = project(records(v[:2]), {})
    prior: dict[uuid.UUID, OrderState | None] = {A: first.states[A]}
    second = project(records([v[1], v[0], v[2], v[1], v[3]]), prior)
    assert second.duplicates == 3
    assert sequences(second) == [(A, 3), (A, 4)]
    assert second.states[A].sequence == 4
    assert second.rejected == []


def test_an_order_missing_from_prior_starts_fresh() -> None:
    projection = project(records(history(A)[:1]), {A: None})
    assert sequences(projection) == [(A, 1)]


def test_poison_records_are_rejected_with_a_reason_and_the_rest_is_applied() -> None:
    a, b = history(A), history(B)
    batch = [
        b"\x00\xffgarbage",
        a[0],
        with_top_level(a[1], type="OrderVanished"),
        None,
        a[1],
        with_top_level(a[2], version=99),
        history(B, [TransactionBuilt(attempt=1, min_amount_out=Decimal(1))])[0],
        a[3],  # a gap: sequence 4 while the order is at 2
        a[2],
        b[0],
    ]
    logged = records(batch)
    projection = project(logged, {})
    reasons = [(r.record.offset, r.reason) for r in projection.rejected]
    assert reasons[0][0] == 0
    assert reasons[0][1].startswith("not JSON: ")
    assert reasons[1:] == [
        (2, "unknown event type 'OrderVanished'"),
        (3, "empty record value"),
        (5, "TransactionBuilt v99 is newer than this reader (v1)"),
        (6, f"order {B}: first event is TransactionBuilt"),
        (7, f"order {A}: got sequence 4, expected 3"),
    ]
    assert [r.record for r in projection.rejected] == [logged[i] for i in (0, 2, 3, 5, 6, 7)]
    assert sequences(projection) == [(A, 1), (A, 2), (A, 3), (B, 1)]
    assert projection.states[A].status is OrderStatus.BUILDING
    assert projection.states[B].status is OrderStatus.PENDING
    assert projection.duplicates == 0


def test_positions_advance_per_partition_past_every_record_even_rejected_ones() -> None:
    a, b = history(A), history(B)
    batch = [
        LogRecord(TOPIC, 0, 40, str(A).encode(), a[0]),
        LogRecord(TOPIC, 1, 7, str(B).encode(), b[0]),
        LogRecord(TOPIC, 0, 41, str(A).encode(), a[1]),
        LogRecord(TOPIC, 1, 8, str(B).encode(), b"not an event"),
        LogRecord(TOPIC, 0, 42, str(A).encode(), a[1]),  # a duplicate, last of its partition
        LogRecord(TOPIC, 2, 0, None, None),
    ]
    projection = project(batch, {})
    assert projection.positions == {0: 43, 1: 9, 2: 1}
    assert len(projection.rejected) == 2
    assert projection.duplicates == 1


def test_an_empty_batch_changes_nothing() -> None:
    projection = project([], {})
    assert projection == Projection()


def test_order_row_has_exactly_the_order_columns_as_plain_data() -> None:
    state = project(records(history(A)), {}).states[A]
    row = order_row(state)
    assert tuple(row) == ORDER_COLUMNS
    assert row["id"] == A
    assert (row["status"], row["last_sequence"], row["attempts"]) == ("submitted", 4, 1)
    assert row["amount"] == Decimal("2.5")
    assert row["route"] == PLAN.model_dump(mode="json")
    assert row["quotes"] == [
        {"venue": "RAYDIUM", "amount_out": "375", "fee": "0", "price_impact": "0", "error": None}
    ]
    orjson.dumps(row["route"])  # JSON columns must serialise as they are


def test_order_row_carries_a_sniper_s_fields_as_plain_data() -> None:
    sniper = OrderSubmitted(
        token_in="SOL", token_out="MEME", amount=Decimal(2), slippage=Decimal("0.15"),
        order_type=OrderType.SNIPER, max_price=Decimal("0.0003"),
        checks=SniperChecks(lp_burned=True, min_liquidity=Decimal(50)), only_at_launch=True,
        auto_sell=AutoSell(take_profit_pct=Decimal(100), stop_loss_pct=Decimal(30)),
        priority="high",
    )  # fmt: skip
    row = order_row(project(records(history(A, [sniper])), {}).states[A])
    assert tuple(row) == ORDER_COLUMNS
    assert (row["order_type"], row["max_price"]) == ("sniper", Decimal("0.0003"))
    assert row["checks"] == {
        "mint_renounced": True, "freeze_renounced": True, "lp_burned": True,
        "min_liquidity": "50",
    }  # fmt: skip
    assert row["auto_sell"] == {"take_profit_pct": "100", "stop_loss_pct": "30"}
    assert (row["only_at_launch"], row["priority"]) == (True, "high")
    orjson.dumps(row["checks"])


def test_order_row_of_a_market_order_has_the_sniper_defaults() -> None:
    row = order_row(project(records(history(A)[:1]), {}).states[A])
    assert (row["max_price"], row["checks"], row["auto_sell"]) == (None, None, None)
    assert (row["only_at_launch"], row["priority"]) == (False, "normal")


def test_order_row_of_a_fresh_order_has_no_route() -> None:
    row = order_row(project(records(history(A)[:1]), {}).states[A])
    assert tuple(row) == ORDER_COLUMNS
    assert (row["route"], row["quotes"], row["status"]) == (None, [], "pending")


def test_order_ids_in_skips_keys_that_are_not_order_ids() -> None:
    batch = [
        LogRecord(TOPIC, 0, 0, str(A).encode(), None),
        LogRecord(TOPIC, 0, 1, b"\xff\xfe", None),
        LogRecord(TOPIC, 0, 2, None, None),
        LogRecord(TOPIC, 0, 3, b"order-7", None),
        LogRecord(TOPIC, 1, 0, str(B).encode(), None),
    ]
    assert order_ids_in(batch) == {A, B}


def test_an_absurd_retry_delay_is_rejected_not_raised() -> None:
    # A delay past year 9999 once overflowed the fold and stopped the projector.
    retrying = OrderRetrying(
        attempt=1, code=FailureCode.VENUE_TIMEOUT, error="slow", delay_seconds=Decimal(1)
    )
    a = history(A, [SUBMITTED, retrying])
    a[1] = a[1].replace(b'"delay_seconds":"1"', b'"delay_seconds":"1e20"')
    b = history(B)
    projection = project([*records(a), *records(b[:1], partition=1, key=B)], {})
    assert [r.record.offset for r in projection.rejected] == [1]
    assert "delay_seconds" in projection.rejected[0].reason
    assert sequences(projection) == [(A, 1), (B, 1)]


# --- Replaying in any batching gives the same read model -------------------------------

POISON = [
    b"",
    b"[]",
    b"\x89PNG",
    b'{"type": "OrderSubmitted", "version": 7, "payload": {}}',
    b'{"type": "Nope", "version": 1}',
]


@st.composite
def log_streams(draw: st.DrawFn) -> list[LogRecord]:
    """Several orders' events interleaved over 3 partitions, with redeliveries and poison."""
    histories = draw(
        st.lists(
            order_histories(max_events=6),
            min_size=1,
            max_size=4,
            unique_by=lambda h: h[0].order_id,
        )
    )
    pending = [[codec.encode(e) for e in h] for h in histories]
    keys = [str(h[0].order_id).encode() for h in histories]
    partition_of = [draw(st.integers(0, 2)) for _ in histories]
    sent: list[list[bytes]] = [[] for _ in histories]
    next_offset = [0, 0, 0]
    stream: list[LogRecord] = []

    def append(partition: int, key: bytes | None, value: bytes | None) -> None:
        stream.append(LogRecord(TOPIC, partition, next_offset[partition], key, value))
        next_offset[partition] += 1

    while any(pending):
        i = draw(st.sampled_from([i for i, left in enumerate(pending) if left]))
        action = draw(st.sampled_from(["next", "next", "next", "redeliver", "poison"]))
        if action == "redeliver" and sent[i]:
            append(partition_of[i], keys[i], draw(st.sampled_from(sent[i])))
        elif action == "poison":
            append(draw(st.integers(0, 2)), keys[i], draw(st.sampled_from(POISON)))
        else:
            value = pending[i].pop(0)
            sent[i].append(value)
            append(partition_of[i], keys[i], value)
    return stream


def project_in_batches(stream: Sequence[LogRecord], cuts: Sequence[int]) -> Projection:
    """Project batch after batch, each seeing the states the earlier ones produced."""
    total = Projection()
    bounds = [0, *sorted(cuts), len(stream)]
    for start, end in itertools.pairwise(bounds):
        batch = project(stream[start:end], dict(total.states))
        total.states.update(batch.states)
        total.events += batch.events
        total.positions.update(batch.positions)
        total.rejected += batch.rejected
        total.duplicates += batch.duplicates
    return total


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_batching_of_the_log_builds_the_same_read_model(data: st.DataObject) -> None:
    stream = data.draw(log_streams())
    cuts = data.draw(st.lists(st.integers(0, len(stream))))
    whole = project(stream, {})
    batched = project_in_batches(stream, cuts)

    assert batched.states == whole.states
    assert batched.events == whole.events
    assert batched.positions == whole.positions
    assert [(r.record, r.reason) for r in batched.rejected] == [
        (r.record, r.reason) for r in whole.rejected
    ]
    assert batched.duplicates == whole.duplicates
    # Replaying the whole log onto the finished read model applies nothing again.
    again = project(stream, dict(whole.states))
    assert again.events == []
    assert again.states == {}
    # Every order's events are there exactly once, in sequence.
    per_order: dict[uuid.UUID, list[int]] = {}
    for row in whole.events:
        per_order.setdefault(row.envelope.order_id, []).append(row.envelope.sequence)
    assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in per_order.values())
    assert {o: s[-1] for o, s in per_order.items()} == {
        o: state.sequence for o, state in whole.states.items()
    }
