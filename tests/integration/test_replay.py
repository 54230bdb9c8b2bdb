"""`oee replay` against a real broker and PostgreSQL: rebuild, --until, verify, tampering,
old event versions, switching in under a running projector, one order's timeline.

Each test projects into a live schema of its own (a copy of `read_model`'s tables), so
whole tables can be compared without stepping on other tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from psycopg import sql

import schemas.upcasting
from schemas import codec
from schemas.envelope import record_hash
from schemas.events import (
    FailureCode,
    OrderCompleted,
    OrderEvent,
    OrderFailed,
    OrderRetrying,
    OrderRouted,
    TransactionBuilt,
    TransactionSubmitted,
)
from services.common.kafka import durable_producer, ensure_topics, start_producer, topic_specs
from services.common.settings import Settings
from services.projector.store import ReadModelStore
from services.replay.rebuild import rebuild
from services.replay.rebuilder import TABLES, Interrupted, Until
from services.replay.timeline import read_order
from services.replay.verify import verify
from tests import builders
from tests.builders import next_envelope, submitted
from tests.fixtures.projector import caught_up as positions_caught_up
from tests.fixtures.projector import end_offsets, eventually, projector_running
from tests.fixtures.settings import MakeSettings, unique

T0 = datetime(2025, 6, 1, 9, 30, tzinfo=UTC)

# -- writing a log ----------------------------------------------------------------------

PLAN = builders.route_plan()
QUOTES = (
    builders.quote(),
    builders.quote("RAYDIUM", amount_out=0, fee=0, error="VENUE_TIMEOUT"),
)
REASON = "METEORA alone: RAYDIUM did not quote in time"


def tx(order_id: uuid.UUID) -> str:
    return (order_id.hex * 3)[:88]


def routed(attempt: int = 1) -> OrderRouted:
    return OrderRouted(attempt=attempt, quotes=QUOTES, plan=PLAN, reason=REASON)


def completed(order_id: uuid.UUID, amount_out: str = "599.5") -> OrderCompleted:
    return builders.completed(tx(order_id), amount_out)


def sent(order_id: uuid.UUID, attempt: int = 1) -> list[OrderEvent]:
    return [
        TransactionBuilt(attempt=attempt, min_amount_out=Decimal(597)),
        TransactionSubmitted(attempt=attempt, tx_hash=tx(order_id)),
    ]


def retried(attempt: int = 1) -> OrderRetrying:
    return OrderRetrying(
        attempt=attempt, code=FailureCode.QUOTE_EXPIRED, error="quote older than 2s",
        delay_seconds=Decimal(2),
    )  # fmt: skip


def failed() -> OrderFailed:
    return OrderFailed(
        code=FailureCode.SLIPPAGE_EXCEEDED, error="received 590 < 597", retryable=False,
        attempts=2,
    )  # fmt: skip


@dataclass
class Log:
    """Appends hash-chained events to the test's topic, remembering every value written."""

    producer: AIOKafkaProducer
    topic: str
    written: dict[uuid.UUID, list[bytes]] = field(default_factory=dict)
    where: dict[tuple[uuid.UUID, int], tuple[int, int]] = field(default_factory=dict)

    async def append(self, order_id: uuid.UUID, *payloads: OrderEvent) -> None:
        values = self.written.setdefault(order_id, [])
        for payload in payloads:
            producer = "test-router" if values else "test-api"  # the API writes event 1
            envelope = next_envelope(order_id, values, payload, start=T0, producer=producer)
            await self.append_raw(order_id, codec.encode(envelope))

    async def append_raw(self, order_id: uuid.UUID, value: bytes) -> None:
        """Append bytes as the order's next event (they must carry the right prev_hash)."""
        values = self.written.setdefault(order_id, [])
        values.append(value)
        meta = await self.raw(order_id, value)
        self.where[(order_id, len(values))] = (meta.partition, meta.offset)

    async def raw(self, order_id: uuid.UUID | str, value: bytes) -> Any:
        return await self.producer.send_and_wait(
            self.topic, value=value, key=str(order_id).encode()
        )


@contextlib.asynccontextmanager
async def log_of(settings: Settings) -> AsyncIterator[Log]:
    servers = str(settings.kafka_bootstrap_servers)
    await ensure_topics(servers, topic_specs(settings))
    producer = durable_producer(servers, client_id="test-replay-writer")
    await start_producer(producer, servers)
    try:
        yield Log(producer, settings.orders_topic)
    finally:
        await producer.stop()


async def write_mixed_orders(log: Log) -> dict[str, uuid.UUID]:
    """Completed, retried then completed, failed, in flight; redeliveries; one poison record."""
    orders = {name: uuid.uuid4() for name in ("done", "retried", "failed", "midway")}
    done, again, lost, midway = orders.values()
    await log.append(done, submitted(), routed(), *sent(done))
    await log.append(again, submitted("2.5"), routed(), retried())
    await log.append(lost, submitted("7"), routed())
    await log.raw(done, log.written[done][1])  # a redelivery, byte for byte
    await log.raw(uuid.uuid4(), b"\x00 not an event")  # poison: dead-lettered, never applied
    await log.append(done, completed(done))
    await log.append(again, routed(2), *sent(again, 2), completed(again, "370"))
    await log.append(lost, retried(), routed(2), failed())
    await log.append(midway, submitted("1.25"), routed())
    await log.raw(lost, log.written[lost][0])
    return orders


# -- live schemas and the projector ------------------------------------------------------


async def connect(settings: Settings) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(str(settings.database_url), autocommit=True)


@contextlib.asynccontextmanager
async def live_schema(settings: Settings) -> AsyncIterator[str]:
    """A schema of the test's own with `read_model`'s tables; dropped after, renamed copies too."""
    name = unique("rm_live").replace("-", "_")
    conn = await connect(settings)
    try:
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        for table in TABLES:
            await conn.execute(
                sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                    sql.Identifier(name, table), sql.Identifier("read_model", table)
                )
            )
        yield name
    finally:
        cursor = await conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"{name}%",)
        )
        for (schema,) in await cursor.fetchall():
            await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        await conn.close()


async def positions(settings: Settings, schema: str) -> dict[int, int]:
    conn = await connect(settings)
    try:
        return await ReadModelStore(schema).positions(conn, settings.orders_topic)
    finally:
        await conn.close()


async def caught_up(settings: Settings, schema: str) -> dict[int, int]:
    """Wait until `schema`'s positions reach the topic's end."""
    return await positions_caught_up(
        settings,
        lambda: positions(settings, schema),
        f"{schema} at {{expected}}",
        read_committed=True,
        interval=0.05,
    )


async def project_into(settings: Settings, schema: str) -> None:
    async with projector_running(settings, ReadModelStore(schema)):
        await caught_up(settings, schema)


async def dump(settings: Settings, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the schema's tables, in key order."""
    conn = await connect(settings)
    try:
        tables: dict[str, list[tuple[Any, ...]]] = {}
        for table, order in (
            ("orders", "id"),
            ("order_events", "order_id, sequence"),
            ("log_positions", "topic, partition"),
        ):
            cursor = await conn.execute(
                sql.SQL("SELECT * FROM {} ORDER BY {}").format(
                    sql.Identifier(schema, table), sql.SQL(order)
                )
            )
            tables[table] = list(await cursor.fetchall())
        return tables
    finally:
        await conn.close()


def replay_settings(make_settings: MakeSettings, **overrides: Any) -> Settings:
    # A consumer group of its own: a shared group across topics would rebalance between tests.
    return make_settings(consumer_group_prefix=unique("replay"), **overrides)


# -- tests --------------------------------------------------------------------------------


async def test_a_rebuild_equals_the_live_read_model_every_time(
    make_settings: MakeSettings,
) -> None:
    settings = replay_settings(make_settings)
    async with log_of(settings) as log, live_schema(settings) as live:
        orders = await write_mixed_orders(log)
        await project_into(settings, live)
        # Small batches and a one-order cache: states are evicted and reloaded, and rows
        # are written at eviction, at the end and when orders finish.
        first = await rebuild(settings, into=f"{live}_a", live=live, batch_size=7, cache_size=1)
        # Two processes, each folding a share of the partitions into the same schema.
        second = await rebuild(settings, into=f"{live}_b", live=live, workers=2)
        expected = await dump(settings, live)
        assert await dump(settings, f"{live}_a") == expected
        assert await dump(settings, f"{live}_b") == expected
        checked = await verify(settings, live=live, workers=2)

    assert len(expected["orders"]) == 4
    statuses = {row[0]: row[7] for row in expected["orders"]}
    assert statuses == {
        orders["done"]: "completed",
        orders["retried"]: "completed",
        orders["failed"]: "failed",
        orders["midway"]: "routing",
    }
    for report in (first.report, second.report):
        assert (report.records, report.events, report.duplicates, report.rejected) == (
            22, 19, 2, 1,
        )  # fmt: skip
        assert report.chain_breaks == 0
        assert "not JSON" in report.rejects[0].reason
    assert (first.replaced, first.schema) == (None, f"{live}_a")
    assert checked.ok
    assert checked.differing == {"orders": 0, "order_events": 0}


async def test_a_stopped_parallel_rebuild_leaves_nothing_behind(
    make_settings: MakeSettings,
) -> None:
    """Ctrl-C while worker processes rebuild: they stop, the partial schema is dropped,
    the live read model is untouched."""
    settings = replay_settings(make_settings)
    async with log_of(settings) as log, live_schema(settings) as live:
        await write_mixed_orders(log)
        await project_into(settings, live)
        before = await dump(settings, live)
        stop = asyncio.Event()
        stop.set()  # as the CLI's SIGINT handler does
        with pytest.raises(Interrupted):
            await rebuild(settings, live=live, workers=2, stop=stop)
        conn = await connect(settings)
        try:
            cursor = await conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"{live}_rebuild%",)
            )
            left = await cursor.fetchall()
        finally:
            await conn.close()
        assert left == []
        assert await dump(settings, live) == before


async def test_until_rebuilds_the_state_at_a_chosen_moment(make_settings: MakeSettings) -> None:
    settings = replay_settings(make_settings)
    async with log_of(settings) as log, live_schema(settings) as live:
        done, later = uuid.uuid4(), uuid.uuid4()
        await log.append(done, submitted(), routed())
        await project_into(settings, live)
        then = await dump(settings, live)
        then_offsets = await end_offsets(settings, read_committed=True)
        await asyncio.sleep(0.05)  # record timestamps are in ms: keep "then" between writes
        moment = datetime.now(UTC)
        await asyncio.sleep(0.05)
        await log.append(done, *sent(done), completed(done))
        await log.append(later, submitted("9"))

        by_time = await rebuild(settings, until=Until(timestamp=moment), live=live)
        await rebuild(settings, into=f"{live}_at", until=Until(offsets=then_offsets), live=live)
        await rebuild(settings, into=f"{live}_now", live=live)
        assert by_time.replaced is None  # a past state is never switched in
        assert by_time.schema.startswith(f"{live}_at_")
        at_time = await dump(settings, by_time.schema)
        at_offsets = await dump(settings, f"{live}_at")
        latest = await dump(settings, f"{live}_now")

    assert at_time == then
    assert at_offsets == then
    assert by_time.report.events == 2
    assert {row[0]: row[7] for row in latest["orders"]} == {done: "completed", later: "pending"}


async def test_verify_names_rows_that_the_log_does_not_justify(
    make_settings: MakeSettings,
) -> None:
    settings = replay_settings(make_settings)
    async with log_of(settings) as log, live_schema(settings) as live:
        orders = await write_mixed_orders(log)
        await project_into(settings, live)
        conn = await connect(settings)
        try:
            await conn.execute(
                sql.SQL("UPDATE {} SET amount_out = 600 WHERE id = %s").format(
                    sql.Identifier(live, "orders")
                ),
                (orders["done"],),
            )
            await conn.execute(
                sql.SQL("DELETE FROM {} WHERE order_id = %s AND sequence = 2").format(
                    sql.Identifier(live, "order_events")
                ),
                (orders["failed"],),
            )
        finally:
            await conn.close()
        result = await verify(settings, live=live)
        cli = run_cli(settings, "verify", "--schema", live)

    assert not result.ok
    assert result.report.chain_breaks == 0
    assert result.differing == {"orders": 1, "order_events": 1}
    changed, missing = result.differences
    assert (changed.table, changed.key, changed.columns) == (
        "orders",
        (orders["done"],),
        ["amount_out"],
    )
    assert changed.rebuilt is not None
    assert changed.rebuilt["amount_out"] == Decimal("599.5")
    assert (missing.table, missing.key, missing.live) == (
        "order_events", (orders["failed"], 2), None,
    )  # fmt: skip
    assert cli.returncode == 1, cli.stderr
    assert "read models differ" in cli.stderr
    assert f"orders ({orders['done']}): amount_out: live Decimal('600')" in cli.stderr


async def test_verify_names_the_event_a_rewritten_log_breaks_the_chain_at(
    make_settings: MakeSettings,
) -> None:
    original = replay_settings(make_settings)
    copy = original.model_copy(update={"orders_topic": unique("orders.events-copy")})
    await ensure_topics(str(copy.kafka_bootstrap_servers), topic_specs(copy))
    async with log_of(original) as log, live_schema(original) as live:
        orders = await write_mixed_orders(log)
        await project_into(original, live)
        # Copy the log record by record into the same partitions (so the same offsets), with
        # the retried order's TransactionBuilt (its 5th event) rewritten, prev_hash kept.
        victim, sequence = orders["retried"], 5
        changed_at = log.where[(victim, sequence)]
        await copy_log(original, copy, changed_at, rewrite_min_out)
        await adopt_positions(original, live, copy.orders_topic)
        result = await verify(copy, live=live)
        timeline = await read_order(copy, victim, live=live)
        intact = await verify(original, live=live)

    assert intact.ok
    assert not result.ok
    assert result.report.short == {}
    assert result.report.chain_breaks == 1
    broken = result.report.first_break
    assert broken is not None
    # The rewritten event still points at its predecessor correctly; the link that breaks
    # is its successor's, which carries the hash of the original bytes.
    assert (broken.order_id, broken.sequence) == (victim, sequence + 1)
    assert (broken.partition, broken.offset) == log.where[(victim, sequence + 1)]
    assert broken.expected != broken.found == record_hash(log.written[victim][sequence - 1])
    # The live rows were built from the original log, so the rewritten row differs too.
    assert [(d.table, d.key) for d in result.differences] == [("order_events", (victim, 5))]
    assert set(result.differences[0].columns) == {"hash", "payload"}
    assert [e.chain_ok for e in timeline.entries] == [True] * 5 + [False, True]


async def adopt_positions(settings: Settings, schema: str, topic: str) -> None:
    """Let `schema` claim it reached on `topic` what it reached on the original topic.

    So verifying the copy compares the same prefix: as if the log had been rewritten in place.
    """
    conn = await connect(settings)
    try:
        await conn.execute(
            sql.SQL(
                "INSERT INTO {table} (topic, partition, next_offset)"
                " SELECT %s, partition, next_offset FROM {table} WHERE topic = %s"
            ).format(table=sql.Identifier(schema, "log_positions")),
            (topic, settings.orders_topic),
        )
    finally:
        await conn.close()


def rewrite_min_out(value: bytes) -> bytes:
    event = orjson.loads(value)
    assert event["type"] == "TransactionBuilt"
    event["payload"]["min_amount_out"] = "1"
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)


async def copy_log(
    source: Settings,
    target: Settings,
    at: tuple[int, int],
    rewrite: Callable[[bytes], bytes],
) -> None:
    """Copy every record of `source` into `target`, same partition, rewriting the one at `at`."""
    servers = str(source.kafka_bootstrap_servers)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    producer = durable_producer(servers, client_id="test-replay-copy")
    await consumer.start()
    await start_producer(producer, servers)
    try:
        tps = [
            TopicPartition(source.orders_topic, p) for p in range(source.orders_topic_partitions)
        ]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        # An explicit seek: seek_to_beginning can lose a race with the reset that assign()
        # starts, and the partition then looks read to its end already.
        for tp, begin in (await consumer.beginning_offsets(tps)).items():
            consumer.seek(tp, begin)
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                    value = record.value
                    if (record.partition, record.offset) == at:
                        value = rewrite(value)
                    meta = await producer.send_and_wait(
                        target.orders_topic, value=value, key=record.key, partition=tp.partition
                    )
                    assert meta.offset == record.offset
    finally:
        await producer.stop()
        await consumer.stop()

    async def copied() -> bool:
        return await end_offsets(target, read_committed=True) == {
            tp.partition: end for tp, end in ends.items()
        }

    await eventually(copied, f"{target.orders_topic} readable to its end", interval=0.05)


async def test_a_log_written_with_an_older_event_version_replays_to_the_same_read_model(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pretend TransactionBuilt is at v2, whose v1 called the guard `minimum_out`.
    monkeypatch.setattr(schemas.upcasting, "UPCASTERS", {})
    monkeypatch.setattr(TransactionBuilt, "VERSION", 2)

    @schemas.upcasting.upcaster("TransactionBuilt", 1)
    def _v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
        fields = dict(payload)
        fields["min_amount_out"] = fields.pop("minimum_out")
        return fields

    current = replay_settings(make_settings)
    old = current.model_copy(update={"orders_topic": unique("orders.events-v1")})
    orders = [uuid.uuid4() for _ in range(3)]
    async with log_of(current) as now, log_of(old) as then, live_schema(current) as live:
        for order_id in orders:
            await now.append(order_id, submitted(), routed(), *sent(order_id), completed(order_id))
            await then.append(order_id, submitted(), routed())
            built = orjson.loads(now.written[order_id][2])
            assert built["version"] == 2
            v1 = {
                **built,
                "version": 1,
                "prev_hash": record_hash(then.written[order_id][-1]),
                "payload": {"attempt": 1, "minimum_out": "597"},
            }
            await then.append_raw(order_id, orjson.dumps(v1, option=orjson.OPT_SORT_KEYS))
            await then.append(order_id, TransactionSubmitted(attempt=1, tx_hash=tx(order_id)))
            await then.append(order_id, completed(order_id))
        from_current = await rebuild(current, into=f"{live}_v2", live=live)
        from_old = await rebuild(old, into=f"{live}_v1", live=live)
        rows_current = await dump(current, f"{live}_v2")
        rows_old = await dump(current, f"{live}_v1")

    assert from_old.report.chain_breaks == from_current.report.chain_breaks == 0
    assert from_old.report.events == from_current.report.events == 15
    assert rows_old["orders"] == rows_current["orders"]

    def without_hashes(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        # prev_hash (8) and hash (9) are over the bytes on each log, which differ.
        return [row[:8] + row[10:] for row in rows]

    assert without_hashes(rows_old["order_events"]) == without_hashes(rows_current["order_events"])
    versions = {(row[3], row[4]) for row in rows_old["order_events"]}
    assert ("TransactionBuilt", 2) in versions  # read as the current version


async def test_a_rebuild_switches_in_under_a_running_projector(
    make_settings: MakeSettings,
) -> None:
    settings = replay_settings(make_settings)
    async with log_of(settings) as log, live_schema(settings) as live:
        first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        async with projector_running(settings, ReadModelStore(live)):
            # Several batches first, so the projector's statements are prepared server-side.
            for payload in (submitted(), routed(), *sent(first)):
                await log.append(first, payload)
                await caught_up(settings, live)
            await log.append(second, submitted(), routed())
            await caught_up(settings, live)

            result = await rebuild(settings, live=live)
            assert result.schema == live
            assert result.replaced is not None
            assert result.replaced.startswith(f"{live}_old_")

            await log.append(first, completed(first))
            await log.append(third, submitted("3"))
            await caught_up(settings, live)  # the projector carries on in the new schema
            after = await dump(settings, live)
            old = await dump(settings, result.replaced)
        checked = await verify(settings, live=live)

    assert {row[0]: row[7] for row in after["orders"]} == {
        first: "completed", second: "routing", third: "pending",
    }  # fmt: skip
    assert {row[0]: row[7] for row in old["orders"]} == {first: "submitted", second: "routing"}
    assert checked.ok


async def test_an_orders_timeline_comes_from_the_log(make_settings: MakeSettings) -> None:
    settings = replay_settings(make_settings)
    async with log_of(settings) as log, live_schema(settings) as live:
        orders = await write_mixed_orders(log)
        lost = orders["failed"]
        timeline = await read_order(settings, lost, live=live)  # no read model: found by key
        await project_into(settings, live)
        hinted = await read_order(settings, lost, live=live)
        cli = run_cli(settings, "order", str(lost), "--json", "--schema", live)
        human = run_cli(settings, "order", str(lost), "--schema", live)
        missing = run_cli(settings, "order", str(uuid.uuid4()), "--schema", live)

    assert hinted == timeline
    sequences = [e.envelope.sequence if e.envelope else None for e in timeline.entries]
    assert sequences == [1, 2, 3, 4, 5, 1]
    assert [e.applied for e in timeline.entries] == [True] * 5 + [False]
    assert timeline.state is not None
    assert (timeline.state.status, timeline.state.error_code) == ("failed", "SLIPPAGE_EXCEEDED")
    assert [(e.partition, e.offset) for e in timeline.entries[:5]] == [
        log.where[(lost, n)] for n in range(1, 6)
    ]

    assert cli.returncode == 0, cli.stderr
    document = json.loads(cli.stdout)
    assert document["state"]["status"] == "failed"
    routed_event = document["events"][1]["event"]
    assert routed_event["payload"]["reason"] == REASON
    assert [q["venue"] for q in routed_event["payload"]["quotes"]] == ["METEORA", "RAYDIUM"]
    assert routed_event["producer"] == "test-router"
    assert human.returncode == 0, human.stderr
    for seen in (REASON, "RAYDIUM: error VENUE_TIMEOUT", "SLIPPAGE_EXCEEDED", "duplicate"):
        assert seen in human.stdout
    assert missing.returncode == 1


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`oee replay ...` in its own process, pointed at the test's broker, database and topic."""
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": str(settings.kafka_bootstrap_servers),
        "DATABASE_URL": str(settings.database_url),
        "OEE_ORDERS_TOPIC": settings.orders_topic,
        "COLUMNS": "300",
    }
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "replay", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
