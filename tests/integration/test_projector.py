"""The projector against a real broker and PostgreSQL: rows, positions, dead letters, resume.

The read-model tables are shared by the whole session, so every query is filtered by this
test's own order ids or topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata

from schemas import codec
from schemas.envelope import Envelope, genesis_hash, record_hash
from schemas.events import FailureCode, OrderEvent, OrderFailed, TransactionBuilt
from services.common.db import open_pool
from services.common.kafka import durable_producer, ensure_topics, start_producer, topic_specs
from services.common.settings import Settings
from services.projector.main import Projector
from services.projector.projection import LogRecord
from services.projector.store import ReadModelStore
from tests.builders import completed, next_envelope, quote, route_plan, routed_and_sent, submitted
from tests.fixtures.projector import caught_up, projector_running
from tests.fixtures.settings import MakeSettings

T0 = datetime(2025, 6, 1, 9, 30, tzinfo=UTC)
TX_A = "A" * 88
TX_C = "C" * 85
TX_B = "B" * 80

PLAN = route_plan()
QUOTE = quote()


def route_and_send(tx_hash: str) -> list[OrderEvent]:
    """Events 2..4 of an order: routed, built, sent."""
    return routed_and_sent(PLAN, (QUOTE,), tx_hash, reason="only venue quoting")


@dataclass
class Writer:
    """Appends events to orders, hash-chained, remembering every value it wrote."""

    producer: AIOKafkaProducer
    topic: str
    written: dict[uuid.UUID, list[bytes]] = field(default_factory=dict)

    async def append(self, order_id: uuid.UUID, *payloads: OrderEvent) -> None:
        values = self.written.setdefault(order_id, [])
        for payload in payloads:
            envelope = next_envelope(order_id, values, payload, start=T0, producer="test-router")
            values.append(codec.encode(envelope))
            await self.raw(order_id, values[-1])

    async def redeliver(self, order_id: uuid.UUID, sequence: int) -> None:
        """Write an event again, byte for byte, as a producer retrying after a crash would."""
        await self.raw(order_id, self.written[order_id][sequence - 1])

    async def raw(self, order_id: uuid.UUID, value: bytes) -> RecordMetadata:
        return await self.producer.send_and_wait(
            self.topic, value=value, key=str(order_id).encode()
        )


@contextlib.asynccontextmanager
async def writer(settings: Settings) -> AsyncIterator[Writer]:
    servers = str(settings.kafka_bootstrap_servers)
    producer = durable_producer(servers, client_id="test-projector-writer")
    await start_producer(producer, servers)
    try:
        yield Writer(producer, settings.orders_topic)
    finally:
        await producer.stop()


async def read_topic(settings: Settings, topic: str) -> list[Any]:
    """Every record of a one-partition topic, from the beginning to its end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        records: list[Any] = []
        while await consumer.position(tp) < end:
            for batch in (await consumer.getmany(tp, timeout_ms=500)).values():
                records += batch
        return records
    finally:
        await consumer.stop()


class ReadModel:
    """Queries over the live read model, always restricted to this test's orders and topic."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], topic: str) -> None:
        self.conn = conn
        self.topic = topic

    async def positions(self) -> dict[int, int]:
        cursor = await self.conn.execute(
            "SELECT partition, next_offset FROM read_model.log_positions WHERE topic = %s",
            (self.topic,),
        )
        return dict(await cursor.fetchall())

    async def orders(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        cursor = await self.conn.execute(
            "SELECT id, status, amount, amount_out, executed_price, fee, tx_hash, selected_dex,"
            " error_code, attempts, last_sequence, route, quotes, created_at, updated_at"
            " FROM read_model.orders WHERE id = ANY(%s)",
            (ids,),
        )
        names = [c.name for c in cursor.description or []]
        return {row[0]: dict(zip(names, row, strict=True)) for row in await cursor.fetchall()}

    async def event_sequences(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[int]]:
        cursor = await self.conn.execute(
            "SELECT order_id, sequence FROM read_model.order_events"
            " WHERE order_id = ANY(%s) ORDER BY order_id, sequence",
            (ids,),
        )
        found: dict[uuid.UUID, list[int]] = {}
        for order_id, sequence in await cursor.fetchall():
            found.setdefault(order_id, []).append(sequence)
        return found

    async def event_hashes(self, order_id: uuid.UUID) -> list[str]:
        cursor = await self.conn.execute(
            "SELECT hash FROM read_model.order_events WHERE order_id = %s ORDER BY sequence",
            (order_id,),
        )
        return [row[0] for row in await cursor.fetchall()]


@contextlib.asynccontextmanager
async def read_model(settings: Settings) -> AsyncIterator[ReadModel]:
    assert settings.database_url
    conn = await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True)
    try:
        yield ReadModel(conn, settings.orders_topic)
    finally:
        await conn.close()


@dataclass
class Poison:
    value: bytes
    key: bytes
    where: RecordMetadata
    reason: str  # a part of the reason the projector must give


async def write_poison(w: Writer) -> list[Poison]:
    """One record of each kind the projector cannot apply."""
    good = orjson.loads(codec.encode(Envelope.new(
        order_id=uuid.uuid4(), sequence=1, producer="test", prev_hash="0" * 64,
        payload=submitted("1"), occurred_at=T0,
    )))  # fmt: skip
    not_first_id = uuid.uuid4()
    not_first = codec.encode(Envelope.new(
        order_id=not_first_id, sequence=1, producer="test", prev_hash=genesis_hash(not_first_id),
        payload=TransactionBuilt(attempt=1, min_amount_out=Decimal(1)), occurred_at=T0,
    ))  # fmt: skip
    kinds = [
        (uuid.uuid4(), b"\x00\x01 definitely not json", "not JSON"),
        (uuid.uuid4(), orjson.dumps({**good, "type": "OrderVanished"}), "unknown event type"),
        (uuid.uuid4(), orjson.dumps({**good, "version": 9}), "OrderSubmitted v9 is newer"),
        (not_first_id, not_first, "first event is TransactionBuilt"),
    ]
    poison = []
    for key, value, reason in kinds:
        where = await w.raw(key, value)
        poison.append(Poison(value, str(key).encode(), where, reason))
    return poison


def parked_by_source(letters: list[Any]) -> dict[str, list[Any]]:
    """Dead letters grouped by the record they park (`topic/partition/offset`)."""
    parked: dict[str, list[Any]] = {}
    for letter in letters:
        source = dict(letter.headers)["dlq.source"].decode()
        parked.setdefault(source, []).append(letter)
    return parked


def assert_dead_lettered(settings: Settings, letters: list[Any], poison: list[Poison]) -> None:
    """Every poison record is parked, byte for byte, with its provenance and reason."""
    parked = parked_by_source(letters)
    expected = {f"{settings.orders_topic}/{p.where.partition}/{p.where.offset}": p for p in poison}
    assert parked.keys() == expected.keys()
    for source, record in expected.items():
        for letter in parked[source]:
            headers = {k: v.decode() for k, v in letter.headers}
            assert (letter.key, letter.value) == (record.key, record.value)
            assert record.reason in headers["dlq.reason"], headers
            assert headers["dlq.consumer"]  # which consumer parked it


async def test_the_projector_builds_the_read_model_and_parks_poison(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    await ensure_topics(str(settings.kafka_bootstrap_servers), topic_specs(settings))
    done, failed, midway = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with writer(settings) as w:
        await w.append(done, submitted("4"), *route_and_send(TX_A))
        await w.append(midway, submitted("2.000000001"), *route_and_send(TX_B)[:2])
        await w.append(failed, submitted("4"), *route_and_send(TX_C))
        await w.redeliver(done, 2)
        poison = await write_poison(w)
        await w.append(done, completed(TX_A, "599.5"))
        await w.redeliver(failed, 1)
        await w.append(
            failed,
            OrderFailed(
                code=FailureCode.SLIPPAGE_EXCEEDED,
                error="received 590 < 597",
                retryable=False,
                attempts=1,
            ),
        )
        await w.redeliver(done, 5)
    ours = [done, failed, midway]
    strays = [uuid.UUID(p.key.decode()) for p in poison]

    async with read_model(settings) as db, projector_running(settings) as projector:
        positions = await caught_up(settings, db.positions)
        assert sum(positions.values()) == 13 + 3 + 4  # events, redeliveries, poison
        assert projector.applied == 13
        orders = await db.orders(ours + strays)
        events = await db.event_sequences(ours + strays)
        hashes = await db.event_hashes(done)
    letters = await read_topic(settings, settings.dead_letter_topic)

    assert set(orders) == set(ours)
    assert events == {done: [1, 2, 3, 4, 5], failed: [1, 2, 3, 4, 5], midway: [1, 2, 3]}
    assert hashes == [record_hash(v) for v in w.written[done]]

    row = orders[done]
    assert (row["status"], row["last_sequence"], row["attempts"]) == ("completed", 5, 1)
    assert (row["amount"], row["amount_out"], row["fee"]) == (
        Decimal(4),
        Decimal("599.5"),
        Decimal("0.004"),
    )
    assert row["executed_price"] == Decimal("149.875")
    assert (row["tx_hash"], row["selected_dex"], row["error_code"]) == (TX_A, "METEORA", None)
    assert row["route"] == PLAN.model_dump(mode="json")
    assert row["quotes"] == [QUOTE.model_dump(mode="json")]
    assert (row["created_at"], row["updated_at"]) == (
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=5),
    )

    row = orders[failed]
    assert (row["status"], row["error_code"], row["tx_hash"]) == (
        "failed",
        "SLIPPAGE_EXCEEDED",
        TX_C,
    )
    assert row["amount_out"] is None

    row = orders[midway]
    assert (row["status"], row["amount"], row["tx_hash"]) == (
        "building",
        Decimal("2.000000001"),
        None,
    )

    assert_dead_lettered(settings, letters, poison)


async def test_a_new_projector_resumes_where_the_last_one_stopped(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    await ensure_topics(str(settings.kafka_bootstrap_servers), topic_specs(settings))
    first, second, later = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ours = [first, second, later]

    async with writer(settings) as w:
        await w.append(first, submitted("4"), *route_and_send(TX_A), completed(TX_A, "600"))
        await w.append(second, submitted("4"), *route_and_send(TX_B)[:2])
        await w.redeliver(first, 3)
        poison = await write_poison(w)
        async with read_model(settings) as db:
            async with projector_running(settings) as projector:
                before = await caught_up(settings, db.positions)
                assert projector.applied == 8
            events_before = await db.event_sequences(ours)
            assert events_before == {first: [1, 2, 3, 4, 5], second: [1, 2, 3]}

            # While no projector runs: the rest of `second`, a new order, old events again,
            # and one more poison record.
            await w.append(second, route_and_send(TX_B)[2], completed(TX_B, "601"))
            await w.redeliver(first, 5)
            await w.redeliver(second, 1)
            await w.append(later, submitted("7"))
            poison += await write_poison(w)

            async with projector_running(settings) as resumed:
                after = await caught_up(settings, db.positions)
                assert resumed.applied == 3  # second's 4 and 5, later's 1: nothing twice
            events_after = await db.event_sequences(ours)
            orders = await db.orders(ours)
    letters = await read_topic(settings, settings.dead_letter_topic)

    assert sum(after.values()) - sum(before.values()) == 3 + 2 + 4
    assert all(after[p] >= offset for p, offset in before.items())
    assert events_after == {first: [1, 2, 3, 4, 5], second: [1, 2, 3, 4, 5], later: [1]}
    assert {o: (r["status"], r["last_sequence"]) for o, r in orders.items()} == {
        first: ("completed", 5),
        second: ("completed", 5),
        later: ("pending", 1),
    }
    assert (orders[second]["tx_hash"], orders[second]["amount_out"]) == (TX_B, Decimal(601))
    assert_dead_lettered(settings, letters, poison)


class SlowPositions(ReadModelStore):
    """The live store, with PostgreSQL answering the rebalance listener slowly (as under load)."""

    async def positions(
        self, conn: psycopg.AsyncConnection[Any], topic: str, *, lock: bool = False
    ) -> dict[int, int]:
        if not lock:  # the rebalance listener's read, not the one inside each batch
            await asyncio.sleep(1.5)
        return await super().positions(conn, topic, lock=lock)


async def test_a_restarted_projector_reads_nothing_before_its_stored_positions(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    await ensure_topics(str(settings.kafka_bootstrap_servers), topic_specs(settings))
    order = uuid.uuid4()
    async with writer(settings) as w, read_model(settings) as db:
        await w.append(order, submitted("4"), *route_and_send(TX_A))
        poison = await write_poison(w)
        async with projector_running(settings):
            await caught_up(settings, db.positions)
        parked_once = parked_by_source(await read_topic(settings, settings.dead_letter_topic))

        await w.append(order, completed(TX_A, "600"))
        async with projector_running(settings, SlowPositions()) as resumed:
            await caught_up(settings, db.positions)
            assert resumed.applied == 1
    parked = parked_by_source(await read_topic(settings, settings.dead_letter_topic))

    assert len(parked) == len(poison)
    # The first projector is subject to the same race on a fresh topic; only compare growth.
    assert {s: len(v) for s, v in parked.items()} == {s: len(v) for s, v in parked_once.items()}


async def test_a_cached_state_behind_the_stored_one_is_not_used(
    make_settings: MakeSettings,
) -> None:
    """After a rebalance another projector may have applied an order's events: the stored
    `last_sequence` wins over the cache, or the next event would be refused as a gap."""
    settings = make_settings()
    assert settings.database_url
    order_id = uuid.uuid4()
    values: list[bytes] = []
    for payload in (submitted("4"), *route_and_send(TX_A), completed(TX_A, "600")):
        envelope = next_envelope(order_id, values, payload, start=T0, producer="test-router")
        values.append(codec.encode(envelope))
    record = [
        LogRecord(settings.orders_topic, 0, offset, str(order_id).encode(), value)
        for offset, value in enumerate(values)
    ]
    pool = await open_pool(settings.database_url, max_size=2)
    first = Projector(settings, pool, ReadModelStore())
    second = Projector(settings, pool, ReadModelStore())
    try:
        assert await first.apply(record[:2]) == 2  # first caches the order at sequence 2
        assert await second.apply(record[2:4]) == 2  # the partition moved: 3 and 4 elsewhere
        assert await first.apply(record[2:]) == 1  # back: 3 and 4 are below the position
        async with read_model(settings) as db:
            orders = await db.orders([order_id])
            sequences = await db.event_sequences([order_id])
    finally:
        await asyncio.gather(first.stop(), second.stop())  # never started: releases clients
        await pool.close()
    assert sequences == {order_id: [1, 2, 3, 4, 5]}
    assert (orders[order_id]["status"], orders[order_id]["last_sequence"]) == ("completed", 5)
