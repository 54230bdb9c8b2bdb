"""Pure parts of replay: hash chain, `--until`, state cache, row pairing, timelines."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from rich.console import Console

from schemas import codec
from schemas.envelope import Envelope, genesis_hash, record_hash
from schemas.events import (
    EVENT_TYPES,
    FailureCode,
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
    OrderSubmitted,
    OrderTriggered,
    OrderType,
    TransactionBuilt,
    TransactionSubmitted,
)
from services.projector.cache import StateCache
from services.projector.projection import LogRecord, project
from services.replay.hashchain import chain_breaks
from services.replay.rebuilder import Until, ahead_of, parse_until
from services.replay.timeline import TimedRecord, build_timeline, partition_of, render, to_json
from services.replay.verify import pair_rows
from tests.builders import quote, route_plan

T0 = datetime(2025, 6, 1, 9, 30, tzinfo=UTC)
TX = "T" * 88


def lifecycle() -> list[OrderEvent]:
    return [
        OrderSubmitted(token_in="SOL", token_out="USDC", amount=Decimal(4), slippage=Decimal(0)),
        OrderRouted(attempt=1, quotes=(quote(),), plan=route_plan(), reason="best"),
        TransactionBuilt(attempt=1, min_amount_out=Decimal(590)),
        TransactionSubmitted(attempt=1, tx_hash=TX),
        OrderCompleted(
            tx_hash=TX, selected_dex="RAYDIUM", amount_in=Decimal(4), amount_out=Decimal(600),
            executed_price=Decimal(150), fee=Decimal("0.01"),
        ),
    ]  # fmt: skip


def chained(order_id: uuid.UUID, payloads: list[OrderEvent], first: int = 1) -> list[bytes]:
    """The order's events as bytes on the log, each pointing at the previous one's hash."""
    values: list[bytes] = []
    for n, payload in enumerate(payloads, start=first):
        values.append(
            codec.encode(
                Envelope.new(
                    order_id=order_id,
                    sequence=n,
                    producer="test",
                    prev_hash=record_hash(values[-1]) if values else genesis_hash(order_id),
                    payload=payload,
                    occurred_at=T0 + timedelta(seconds=n),
                )
            )
        )
    return values


def records(order_id: uuid.UUID, values: list[bytes], start: int = 0) -> list[LogRecord]:
    key = str(order_id).encode()
    return [LogRecord("t", 0, start + i, key, v) for i, v in enumerate(values)]


def tamper(value: bytes) -> bytes:
    """The same event with its payload changed and its prev_hash kept."""
    event = orjson.loads(value)
    event["payload"]["attempt"] = 9
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)


def test_an_intact_chain_has_no_breaks() -> None:
    order = uuid.uuid4()
    batch = records(order, chained(order, lifecycle()))
    projection = project(batch, {})
    assert len(projection.events) == 5
    assert chain_breaks(projection.events, {}) == []


def test_a_rewritten_event_breaks_the_link_from_its_successor() -> None:
    order = uuid.uuid4()
    values = chained(order, lifecycle())
    values[1] = tamper(values[1])  # event 2 rewritten; its own prev_hash still fits event 1
    projection = project(records(order, values), {})
    breaks = chain_breaks(projection.events, {})
    assert [(b.order_id, b.sequence, b.offset) for b in breaks] == [(order, 3, 2)]
    assert breaks[0].expected == record_hash(values[1])
    assert "event 2 was rewritten" in breaks[0].describe()


def test_a_first_event_must_be_anchored_to_its_order() -> None:
    order, other = uuid.uuid4(), uuid.uuid4()
    event = orjson.loads(chained(order, lifecycle()[:1])[0])
    event["prev_hash"] = genesis_hash(other)
    projection = project(records(order, [orjson.dumps(event)]), {})
    (broken,) = chain_breaks(projection.events, {})
    assert (broken.sequence, broken.expected) == (1, genesis_hash(order))
    assert "not anchored" in broken.describe()


def test_the_chain_is_followed_across_batches_through_the_prior_state() -> None:
    order = uuid.uuid4()
    values = chained(order, lifecycle())
    first = project(records(order, values[:2]), {})
    good = project(records(order, values[2:], start=2), first.states)
    assert chain_breaks(good.events, first.states) == []
    values[1] = tamper(values[1])
    first = project(records(order, values[:2]), {})
    bad = project(records(order, values[2:], start=2), first.states)
    assert [b.sequence for b in chain_breaks(bad.events, first.states)] == [3]


def test_until_takes_offsets_or_a_time() -> None:
    assert parse_until("0:12,2:7") == Until(offsets={0: 12, 2: 7})
    assert parse_until("2025-06-01T09:30:00Z") == Until(timestamp=T0)
    assert parse_until("2025-06-01T11:30:00+02:00") == Until(timestamp=T0)
    assert parse_until("2025-06-01 09:30:00") == Until(timestamp=T0)  # naive is UTC
    with pytest.raises(ValueError, match="neither"):
        parse_until("yesterday")
    assert ahead_of({0: 5, 1: 9}, {1: 7, 2: 3}) == {0: 5, 1: 9, 2: 3}


def test_the_state_cache_is_bounded_and_forgets_finished_orders() -> None:
    cache = StateCache(capacity=2)
    orders = [uuid.uuid4() for _ in range(3)]
    states = {}
    evicted = []
    for order in orders:
        projection = project(records(order, chained(order, lifecycle()[:2])), {})
        states[order] = projection.states[order]
        evicted += cache.remember(projection.states)
    found, missing = cache.lookup(orders)
    assert set(found) == set(orders[1:])
    assert missing == {orders[0]}  # least recently used, evicted
    assert evicted == [states[orders[0]]]  # handed back, so a rebuild can write its row
    assert cache.states() == [states[orders[1]], states[orders[2]]]

    done = project(records(orders[1], chained(orders[1], lifecycle())), {}).states
    assert cache.remember(done) == []  # a finished order leaves, but is not "evicted"
    assert cache.lookup([orders[1]]) == ({}, {orders[1]})
    assert len(cache) == 1


def test_rows_on_one_side_or_changed_are_paired_by_key() -> None:
    order = uuid.uuid4()
    rows: list[tuple[str, dict[str, Any]]] = [
        ("live", {"id": order, "status": "completed", "amount_out": Decimal(600)}),
        ("rebuilt", {"id": order, "status": "completed", "amount_out": Decimal("599.5")}),
        ("live", {"id": "fake", "status": "completed", "amount_out": None}),
    ]
    changed, only_live = pair_rows("orders", ("id",), rows)
    assert changed.columns == ["amount_out"]
    assert "amount_out: live Decimal('600') != log Decimal('599.5')" in changed.describe()
    assert only_live.rebuilt is None
    assert "in the live read model only" in only_live.describe()


def test_a_timeline_marks_duplicates_rejects_and_chain_breaks() -> None:
    order = uuid.uuid4()
    values = chained(order, lifecycle())
    values[1] = tamper(values[1])
    log = [*values[:3], values[2], values[3], values[4], b"not json"]
    timed = [TimedRecord(r, T0 + timedelta(seconds=r.offset)) for r in records(order, log)]
    timeline = build_timeline(order, "t", timed)
    assert [(e.applied, e.chain_ok) for e in timeline.entries] == [
        (True, True), (True, True), (True, False), (False, None), (True, True), (True, True),
        (False, None),
    ]  # fmt: skip
    notes = [e.note or "" for e in timeline.entries]
    assert "hash chain broken" in notes[2]
    assert notes[3].startswith("duplicate")
    assert notes[6].startswith("rejected: not JSON")
    assert timeline.state is not None
    assert (timeline.state.status, timeline.state.amount_out) == ("completed", Decimal(600))

    document = orjson.loads(to_json(timeline))
    assert document["state"]["status"] == "completed"
    assert document["state"]["amount_out"] == "600"
    assert [e["event"]["sequence"] if e["event"] else None for e in document["events"]] == [
        1, 2, 3, 3, 4, 5, None,
    ]  # fmt: skip
    console = Console(record=True, width=200)
    render(timeline, console)
    text = console.export_text()
    assert "fill: 4 in, 600 out on RAYDIUM" in text
    assert "BROKEN" in text


def test_the_partition_of_an_order_is_kafkas_default() -> None:
    # murmur2 of the key, as the Java client and aiokafka's DefaultPartitioner compute it.
    from aiokafka.partitioner import DefaultPartitioner

    order = uuid.uuid4()
    key = str(order).encode()
    assert partition_of(order, 12) == DefaultPartitioner()(key, list(range(12)), list(range(12)))


def test_a_conditional_orders_timeline_tells_the_tick_that_triggered_it() -> None:
    order = uuid.uuid4()
    stop = OrderSubmitted(
        token_in="SOL", token_out="USDC", amount=Decimal(4), slippage=Decimal("0.01"),
        order_type=OrderType.STOP, trigger_price=Decimal(140), expires_at=T0 + timedelta(days=1),
    )  # fmt: skip
    amended = OrderAmended(trigger_price=Decimal(135), by="key-1")
    triggered = OrderTriggered(
        leg="stop", pair="SOL-USDC", slot=4242, price=Decimal("134.5"), level=Decimal(135)
    )
    values = chained(order, [stop, amended, triggered, *lifecycle()[1:]])
    timed = [TimedRecord(r, T0 + timedelta(seconds=r.offset)) for r in records(order, values)]
    timeline = build_timeline(order, "t", timed)
    assert timeline.state is not None
    assert (timeline.state.triggered_slot, timeline.state.triggered_price) == (
        4242, Decimal("134.5"),
    )  # fmt: skip
    console = Console(record=True, width=200)
    render(timeline, console)
    text = console.export_text()
    assert "stop: trigger 140, expires 2025-06-02T09:30:00+00:00" in text
    assert "amended: trigger 135 (key key-1)" in text
    assert "stop 135 crossed by the SOL-USDC tick at slot 4242, price 134.5" in text
    assert "last triggered by the tick at slot 4242, price 134.5" in text
    assert "fill: 4 in, 600 out on RAYDIUM" in text


def test_every_event_type_has_lines_in_a_timeline() -> None:
    """A new event type must say something in `oee replay order`, not an empty row."""
    from services.replay.timeline import _details

    for event_type in EVENT_TYPES.values():
        samples = [e for e in (*lifecycle(), *conditional_events()) if type(e) is event_type]
        assert samples, f"no sample of {event_type.__name__}"
        assert all(_details(sample) for sample in samples), event_type.__name__


def conditional_events() -> list[OrderEvent]:
    return [
        OrderTriggered(leg="limit", pair="SOL-USDC", slot=1, price=Decimal(2), level=Decimal(1)),
        OrderOpened(reason="no route at the limit", best_amount_out=Decimal(1)),
        OrderPartiallyFilled(
            tx_hash=TX, amount_in=Decimal(1), amount_out=Decimal(150), remaining=Decimal(3)
        ),
        OrderCancelled(by="key-1"),
        OrderExpired(expires_at=T0),
        OrderAmended(limit_price=Decimal(3)),
        OrderRetrying(
            attempt=1, code=FailureCode.VENUE_TIMEOUT, error="e", delay_seconds=Decimal(1)
        ),
        OrderFailed(code=FailureCode.VENUE_TIMEOUT, error="e", retryable=False, attempts=1),
    ]
