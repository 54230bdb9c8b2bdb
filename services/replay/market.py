"""Rebuild and verify the market tables (`market_data.*`) from `market.trades` and `market.ticks`.

As for the order read models: a group-less, read_committed reader folds both topics
from their beginning through the market projector's own `project_market` and
`MarketStore` into a fresh schema, which is then switched in with one rename (the
live `log_positions` locked meanwhile, so the live market projector pauses between
two batches and carries on in the new schema), or compared row by row with the live
one (`verify`). The candle upsert merges partial candles associatively, so batches
cut differently from the live projector's still give equal rows.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from psycopg import AsyncConnection, sql

from services.common import db, kafka
from services.common.settings import Settings
from services.projector.market_projection import project_market
from services.projector.market_store import MARKET_SCHEMA, MARKET_TABLES, MarketStore
from services.projector.projection import LogRecord, Rejected
from services.replay.reading import read_below_stops
from services.replay.rebuilder import (
    Interrupted,
    Progress,
    check_schema_name,
    create_schema_like,
    drop_schema,
    stamp,
    topic_partitions,
)
from services.replay.verify import RowDifference, compare

Positions = dict[tuple[str, int], int]
# The tables compared, with their keys (log_positions are equal by construction).
MARKET_COMPARED: dict[str, tuple[str, ...]] = {
    "trades": ("pair", "sequence"),
    "candles": ("pair", "interval", "bucket_start"),
    "latest_ticks": ("pair",),
    "sequences": ("topic", "pair"),
}
_REJECTS_KEPT = 20


@dataclass
class MarketReport:
    schema: str
    positions: Positions = field(default_factory=dict)
    records: int = 0
    trades: int = 0
    ticks: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejects: list[Rejected] = field(default_factory=list)
    seconds: float = 0.0


class MarketRebuilder:
    """Reads both market topics into one schema's market tables, batch by batch."""

    def __init__(
        self,
        settings: Settings,
        schema: str,
        *,
        batch_size: int = 10_000,
        on_progress: Progress | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        assert settings.kafka_bootstrap_servers
        assert settings.database_url
        self.settings = settings
        self.schema = check_schema_name(schema)
        self.store = MarketStore(schema)
        self.topics = (settings.market_ticks_topic, settings.market_trades_topic)
        self.batch_size = batch_size
        self.on_progress = on_progress
        self.stop = stop
        self.report = MarketReport(schema)
        self._total = 0
        self._partitions: list[TopicPartition] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._conn: AsyncConnection[Any] | None = None

    async def __aenter__(self) -> Self:
        servers = str(self.settings.kafka_bootstrap_servers)
        url = str(self.settings.database_url)
        try:
            self._conn = await AsyncConnection.connect(url, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            raise db.unreachable(url, exc) from None
        consumer = kafka.log_reader(servers, client_id="oee-replay-market")
        try:
            await asyncio.wait_for(consumer.start(), 15)
        except (KafkaError, OSError, TimeoutError) as exc:
            await consumer.stop()
            await self._conn.close()
            raise kafka.unreachable(servers, exc) from None
        self._consumer = consumer
        for topic in self.topics:
            for partition in await topic_partitions(servers, topic):
                self._partitions.append(TopicPartition(topic, partition))
        if self._partitions:
            consumer.assign(self._partitions)
            await consumer.seek_to_beginning(*self._partitions)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._conn is not None:
            await self._conn.close()

    @property
    def conn(self) -> AsyncConnection[Any]:
        assert self._conn is not None, "use the MarketRebuilder as an async context manager"
        return self._conn

    @property
    def consumer(self) -> AIOKafkaConsumer:
        assert self._consumer is not None, "use the MarketRebuilder as an async context manager"
        return self._consumer

    @property
    def has_topics(self) -> bool:
        return bool(self._partitions)

    async def create_schema(self, template: str = MARKET_SCHEMA) -> None:
        await create_schema_like(self.conn, self.schema, template, MARKET_TABLES)

    async def drop_schema(self) -> None:
        await drop_schema(self.conn, self.schema)

    async def end_offsets(self) -> Positions:
        if not self._partitions:
            return {}
        ends = await self.consumer.end_offsets(self._partitions)
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    async def run_to(self, stops: Mapping[tuple[str, int], int]) -> MarketReport:
        """Apply both topics from where the reader is up to `stops` (next offsets)."""
        started = time.perf_counter()
        pending: dict[TopicPartition, int] = {}
        for tp in self._partitions:
            stop = stops.get((tp.topic, tp.partition), 0)
            position = await self.consumer.position(tp)
            if position < stop:
                pending[tp] = stop
                self._total += stop - position
        try:
            while pending:
                if self.stop is not None and self.stop.is_set():
                    raise Interrupted
                batch = await self._next_batch(pending)
                if batch:
                    await self._apply(batch)
                if self.on_progress is not None:
                    self.on_progress(self.report.records, self._total)
        finally:
            self.report.seconds += time.perf_counter() - started
        return self.report

    async def _next_batch(self, pending: dict[TopicPartition, int]) -> list[LogRecord]:
        batch, polled_empty = await read_below_stops(self.consumer, pending, self.batch_size)
        if polled_empty:
            ends = await self.end_offsets()
            for tp in list(pending):
                if await self.consumer.position(tp) >= ends.get((tp.topic, tp.partition), 0):
                    del pending[tp]  # a stop past the log's end: end there
        return batch

    async def _apply(self, batch: list[LogRecord]) -> None:
        async with self.conn.transaction():
            projection = project_market(
                batch,
                await self.store.last_sequences(self.conn),
                ticks_topic=self.settings.market_ticks_topic,
                trades_topic=self.settings.market_trades_topic,
            )
            await self.store.write(self.conn, projection)
        report = self.report
        report.positions.update(projection.positions)
        report.records += len(batch)
        report.trades += len(projection.trades)
        report.ticks += sum(1 for r in batch if r.topic == self.settings.market_ticks_topic)
        report.duplicates += projection.duplicates
        report.rejected += len(projection.rejected)
        report.rejects.extend(projection.rejected[: _REJECTS_KEPT - len(report.rejects)])


async def _live_positions(
    conn: AsyncConnection[Any], schema: str, topics: tuple[str, ...]
) -> Positions:
    return await MarketStore(schema).positions(conn, topics)


def _ahead_of(reached: Mapping[tuple[str, int], int], target: Positions) -> Positions:
    return {k: max(reached.get(k, 0), target.get(k, 0)) for k in {*reached, *target}}


@dataclass(frozen=True)
class MarketRebuildResult:
    report: MarketReport
    schema: str
    replaced: str | None
    skipped: str | None = None  # why nothing was rebuilt (no market topics yet)


async def rebuild_market(
    settings: Settings,
    *,
    into: str | None = None,
    live: str = MARKET_SCHEMA,
    batch_size: int = 10_000,
    on_progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> MarketRebuildResult:
    """Rebuild the market tables from both topics; switch them in unless `into` is given."""
    schema = into or f"{live}_rebuild_{stamp()}"
    async with MarketRebuilder(
        settings, schema, batch_size=batch_size, on_progress=on_progress, stop=stop
    ) as rebuilder:
        if not rebuilder.has_topics:
            why = f"topics {', '.join(rebuilder.topics)} do not exist yet"
            return MarketRebuildResult(rebuilder.report, live, None, why)
        await rebuilder.create_schema(template=live)
        try:
            await rebuilder.run_to(await rebuilder.end_offsets())
            replaced = None if into else await _switch_in(rebuilder, live)
        except BaseException:
            await rebuilder.drop_schema()
            raise
        return MarketRebuildResult(rebuilder.report, schema if into else live, replaced)


async def _switch_in(rebuilder: MarketRebuilder, live: str) -> str:
    """Catch up with the live positions, then swap the schemas under the live positions' lock."""
    conn, topics = rebuilder.conn, rebuilder.topics
    for _ in range(3):
        target = await _live_positions(conn, live, topics)
        if all(rebuilder.report.positions.get(k, 0) >= o for k, o in target.items()):
            break
        await rebuilder.run_to(_ahead_of(rebuilder.report.positions, target))
    old = check_schema_name(f"{live}_old_{stamp()}")
    url = str(rebuilder.settings.database_url)
    async with await AsyncConnection.connect(url, connect_timeout=5) as lock, lock.transaction():
        await lock.execute(
            sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(live, "log_positions"))
        )
        target = await _live_positions(lock, live, topics)
        await rebuilder.run_to(_ahead_of(rebuilder.report.positions, target))
        for source, name in ((live, old), (rebuilder.schema, live)):
            await lock.execute(
                sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                    sql.Identifier(source), sql.Identifier(name)
                )
            )
    return old


@dataclass
class MarketVerifyResult:
    report: MarketReport
    compared_at: Positions
    differences: list[RowDifference] = field(default_factory=list)
    differing: dict[str, int] = field(default_factory=dict)
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return not any(self.differing.values())


async def verify_market(
    settings: Settings,
    *,
    live: str = MARKET_SCHEMA,
    limit: int = 20,
    keep: bool = False,
    on_progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> MarketVerifyResult:
    """Rebuild into a scratch schema up to the live positions and compare row by row."""
    scratch = check_schema_name(f"{live}_verify_{uuid.uuid4().hex[:8]}")
    async with MarketRebuilder(settings, scratch, on_progress=on_progress, stop=stop) as rebuilder:
        if not rebuilder.has_topics:
            why = f"topics {', '.join(rebuilder.topics)} do not exist yet"
            return MarketVerifyResult(rebuilder.report, {}, skipped=why)
        await rebuilder.create_schema(template=live)
        try:
            topics = rebuilder.topics
            await rebuilder.run_to(await _live_positions(rebuilder.conn, live, topics))
            url = str(settings.database_url)
            async with (
                await AsyncConnection.connect(url, connect_timeout=5) as lock,
                lock.transaction(),
            ):
                await lock.execute(
                    sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(
                        sql.Identifier(live, "log_positions")
                    )
                )
                compared_at = await _live_positions(lock, live, topics)
                await rebuilder.run_to(_ahead_of(rebuilder.report.positions, compared_at))
                differences, counts = await compare(
                    lock, live, scratch, limit=limit, tables=MARKET_COMPARED
                )
        finally:
            if not keep:
                await rebuilder.drop_schema()
        return MarketVerifyResult(rebuilder.report, compared_at, differences, counts)
