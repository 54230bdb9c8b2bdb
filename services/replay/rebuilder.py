"""Rebuild the read models from the log into a schema of their own, and swap one in.

The log is read from its beginning with a group-less, read_committed consumer that
owns every partition, up to end offsets fixed when the rebuild starts (or up to
`--until`). Batches go through the live projector's own code: `project` folds them,
`ReadModelStore(schema).write` writes rows and log positions in one transaction. So
a rebuilt schema is exactly what the live projector would have built, positions
included, and the live projector can carry on from it after a switch.

Memory stays flat whatever the length of the log: the orders' states live in the
rebuilt tables, and only a bounded cache of unfinished orders is kept in memory
(a miss is reloaded from the rebuilt `order_events`, as the live projector does).

An order's row is written when it finishes, when it leaves the cache, and for the
orders still cached at the end of each `run_to`, not after every batch that
touches it: in between, its events are in `order_events` and its state is in
memory, and a rebuild is only read once `run_to` returns. That is one insert per
order instead of an upsert per batch, the largest part of PostgreSQL's work.

Writing a batch overlaps folding the next one: PostgreSQL works on batch n on
one core while Python decodes batch n + 1 on the other. Misses are read on a
second connection; an order of the batch still being written is found in that
batch's states, everything older is committed.
"""

from __future__ import annotations

import asyncio
import gc
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from psycopg import AsyncConnection, sql

from services.common import db, kafka
from services.common.db import LIVE_SCHEMA
from services.common.settings import Settings
from services.domain.order import OrderState
from services.projector.cache import StateCache
from services.projector.projection import (
    LogRecord,
    Projection,
    Rejected,
    order_ids_in,
    project,
)
from services.projector.store import ReadModelStore
from services.replay.hashchain import ChainBreak, chain_breaks
from services.replay.reading import read_below_stops

TABLES = ("orders", "order_events", "log_positions")
_OFFSETS = re.compile(r"^\d+:\d+(,\d+:\d+)*$")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# At most this many rejected records are kept for the report; the rest are only counted.
_REJECTS_KEPT = 20

Progress = Callable[[int, int], None]
"""Called after each batch with (records read so far, records to read in all)."""


class RebuildError(RuntimeError):
    """A rebuild that cannot start or finish (an existing schema, a missing template, ...)."""


class Interrupted(Exception):
    """The rebuild was asked to stop (Ctrl-C); it stopped between two batches."""


@dataclass(frozen=True)
class Until:
    """Where a rebuild stops: at a moment of the log, or at explicit next offsets."""

    timestamp: datetime | None = None
    offsets: Mapping[int, int] | None = None

    def describe(self) -> str:
        if self.timestamp is not None:
            return f"the log as it stood at {self.timestamp.isoformat()}"
        offsets = ",".join(f"{p}:{o}" for p, o in sorted((self.offsets or {}).items()))
        return f"the log up to next offsets {offsets}"


def parse_until(text: str) -> Until:
    """Parse `P:OFFSET[,P:OFFSET...]` (next offsets; other partitions not read) or an ISO time.

    A time without a zone is taken as UTC.
    """
    text = text.strip()
    if _OFFSETS.match(text):
        offsets: dict[int, int] = {}
        for part in text.split(","):
            partition, offset = part.split(":")
            offsets[int(partition)] = int(offset)
        return Until(offsets=offsets)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--until {text!r} is neither an ISO 8601 time nor PARTITION:OFFSET[,...]"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return Until(timestamp=moment.astimezone(UTC))


def check_schema_name(name: str) -> str:
    """Refuse names PostgreSQL would fold, quote or truncate, so what we print is what exists."""
    if not _SCHEMA_NAME.match(name):
        raise RebuildError(f"schema name {name!r} must match {_SCHEMA_NAME.pattern}")
    return name


def stamp() -> str:
    """A UTC timestamp fit for a schema name."""
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S")


@dataclass
class RebuildReport:
    """What a rebuild read, applied, and found along the way."""

    schema: str
    topic: str
    positions: dict[int, int] = field(default_factory=dict)  # next offset reached per partition
    records: int = 0
    events: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejects: list[Rejected] = field(default_factory=list)  # the first few, with their reasons
    chain_breaks: int = 0
    first_break: ChainBreak | None = None
    # Partitions the log ends on before the offset asked for (e.g. positions a read model
    # claims to have reached): partition -> (offset asked for, end of the log).
    short: dict[int, tuple[int, int]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def add(self, other: RebuildReport) -> None:
        """Count in what another rebuild of other partitions into the same schema found."""
        self.positions.update(other.positions)
        self.records += other.records
        self.events += other.events
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.rejects.extend(other.rejects[: _REJECTS_KEPT - len(self.rejects)])
        self.chain_breaks += other.chain_breaks
        self.first_break = self.first_break or other.first_break
        self.short.update(other.short)


class Rebuilder:
    """Reads the log into one schema's read-model tables, batch by batch, resumable in-process.

    `run_to(stops)` can be called again with later offsets: the consumer continues
    where it is, which is how a rebuild catches up with the live read model before a
    switch. Use as an async context manager.
    """

    def __init__(
        self,
        settings: Settings,
        schema: str,
        *,
        batch_size: int = 10_000,
        cache_size: int = 20_000,
        on_progress: Progress | None = None,
        stop: asyncio.Event | None = None,
        partitions: Iterable[int] | None = None,
    ) -> None:
        assert settings.kafka_bootstrap_servers
        assert settings.database_url
        self.settings = settings
        self.only = None if partitions is None else set(partitions)  # None: all of them
        self.topic = settings.orders_topic
        self.schema = check_schema_name(schema)
        self.store = ReadModelStore(schema)
        self.batch_size = batch_size
        self.cache = StateCache(cache_size)
        self.on_progress = on_progress
        self.stop = stop
        self.report = RebuildReport(schema=schema, topic=self.topic)
        self._total = 0
        self._gc_threshold = gc.get_threshold()
        self._begin: dict[int, int] = {}
        self._partitions: list[TopicPartition] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._conn: AsyncConnection[Any] | None = None
        self._reader: AsyncConnection[Any] | None = None
        # The batch being written, and the states it writes (for misses meanwhile).
        self._writing: asyncio.Task[None] | None = None
        self._writing_states: Mapping[uuid.UUID, OrderState] = {}

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        # A rebuild allocates millions of short-lived objects, freed by reference counting;
        # CPython's default thresholds run a cyclic collection every 700 allocations, which
        # cost a third of the fold's time. Collections still run, just less often, so
        # memory stays bounded. Restored on exit.
        self._gc_threshold = gc.get_threshold()
        gc.set_threshold(100_000, 50, 100)
        servers = str(self.settings.kafka_bootstrap_servers)
        url = str(self.settings.database_url)
        try:
            self._conn = await AsyncConnection.connect(url, autocommit=True, connect_timeout=5)
            self._reader = await AsyncConnection.connect(url, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            if self._conn is not None:
                await self._conn.close()
            raise db.unreachable(url, exc) from None
        consumer = kafka.log_reader(
            servers,
            client_id="oee-replay",
            # Large fetches keep the broker round trips few; memory stays bounded by them.
            fetch_max_bytes=32 * 1024 * 1024,
            # A partition seen without a leader just after its topic was created must not
            # stay unreadable for the default 5 minutes.
            metadata_max_age_ms=5_000,
        )
        try:
            await asyncio.wait_for(consumer.start(), 15)
        except (KafkaError, OSError, TimeoutError) as exc:
            await consumer.stop()
            await self._close_connections()
            raise kafka.unreachable(servers, exc) from None
        self._consumer = consumer
        partitions = await topic_partitions(servers, self.topic)
        if not partitions:
            await self.__aexit__(None, None, None)
            raise RebuildError(f"topic {self.topic!r} does not exist")
        if self.only is not None:
            partitions = [p for p in partitions if p in self.only]
        self._partitions = [TopicPartition(self.topic, p) for p in partitions]
        consumer.assign(self._partitions)
        begin = await consumer.beginning_offsets(self._partitions)
        self._begin = {tp.partition: offset for tp, offset in begin.items()}
        for tp in self._partitions:
            consumer.seek(tp, self._begin[tp.partition])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        gc.set_threshold(*self._gc_threshold)
        await self._abandon_write()
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        await self._close_connections()

    async def _close_connections(self) -> None:
        for conn in (self._conn, self._reader):
            if conn is not None:
                await conn.close()
        self._conn = self._reader = None

    @property
    def partitions(self) -> list[int]:
        return [tp.partition for tp in self._partitions]

    async def positions(self) -> dict[int, int]:
        """The next offset this rebuild reads, per partition."""
        return {tp.partition: await self.consumer.position(tp) for tp in self._partitions}

    def seek(self, offsets: Mapping[int, int]) -> None:
        """Continue from these next offsets (those another process reached, say)."""
        for tp in self._partitions:
            if tp.partition in offsets:
                self.consumer.seek(tp, offsets[tp.partition])

    @property
    def conn(self) -> AsyncConnection[Any]:
        assert self._conn is not None, "use the Rebuilder as an async context manager"
        return self._conn

    @property
    def consumer(self) -> AIOKafkaConsumer:
        assert self._consumer is not None, "use the Rebuilder as an async context manager"
        return self._consumer

    # -- the schema ----------------------------------------------------------------------

    async def create_schema(self, template: str = LIVE_SCHEMA) -> None:
        """Create the empty target schema with the template's tables, indexes and defaults."""
        await create_schema_like(self.conn, self.schema, template, TABLES)

    async def drop_schema(self) -> None:
        await drop_schema(self.conn, self.schema)

    # -- where to stop -------------------------------------------------------------------

    async def end_offsets(self) -> dict[int, int]:
        """The log's end now (last stable offsets, since we read committed only)."""
        ends = await self.consumer.end_offsets(self._partitions)
        return {tp.partition: offset for tp, offset in ends.items()}

    async def stops_for(self, until: Until | None) -> dict[int, int]:
        """Next offset to stop at per partition: the end now, or `until` (never past the end)."""
        ends = await self.end_offsets()
        if until is None:
            return ends
        if until.offsets is not None:
            return {p: min(until.offsets.get(p, 0), end) for p, end in ends.items()}
        assert until.timestamp is not None
        # Records with a log timestamp <= T: stop at the first one after T.
        after = int(until.timestamp.timestamp() * 1000) + 1
        found = await self.consumer.offsets_for_times(dict.fromkeys(self._partitions, after))
        return {
            tp.partition: ends[tp.partition] if hit is None else min(hit.offset, ends[tp.partition])
            for tp, hit in found.items()
        }

    # -- reading and applying ------------------------------------------------------------

    async def run_to(self, stops: Mapping[int, int]) -> RebuildReport:
        """Apply the log from where the consumer is up to `stops` (next offsets per partition)."""
        started = time.perf_counter()
        pending: dict[TopicPartition, int] = {}
        for tp in self._partitions:
            stop = stops.get(tp.partition, 0)
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
            await self._written()
            await self._write_cached_orders()
        finally:
            await self._abandon_write()  # only left over when the loop failed or was stopped
            self.report.seconds += time.perf_counter() - started
        return self.report

    async def _next_batch(self, pending: dict[TopicPartition, int]) -> list[LogRecord]:
        """Up to `batch_size` records below the stops, in log order per partition."""
        batch, polled_empty = await read_below_stops(self.consumer, pending, self.batch_size)
        if polled_empty:
            await self._stop_at_the_end(pending)
        return batch

    async def _stop_at_the_end(self, pending: dict[TopicPartition, int]) -> None:
        """A poll gave nothing: stops beyond the log's end are unreachable, so end there.

        Without this, a stop past the end (a log shorter than a read model says it
        is, or one truncated) would be waited for forever.
        """
        ends = await self.end_offsets()
        for tp, stop in list(pending.items()):
            end = ends.get(tp.partition, 0)
            if end < stop and await self.consumer.position(tp) >= end:
                self.report.short[tp.partition] = (stop, end)
                del pending[tp]

    async def _apply(self, batch: list[LogRecord]) -> None:
        """Fold a batch while the previous one is written, then start writing it."""
        assert self._reader is not None
        prior, missing = self.cache.lookup(order_ids_in(batch))
        for order_id in missing & self._writing_states.keys():
            prior[order_id] = self._writing_states[order_id]
        missing -= self._writing_states.keys()
        if missing:
            prior.update(await self.store.load_states(self._reader, missing))
        projection = project(batch, prior)
        evicted = self.cache.remember(projection.states)
        finished = [state for state in projection.states.values() if state.is_final]
        report = self.report
        report.records += len(batch)
        report.events += len(projection.events)
        report.duplicates += projection.duplicates
        report.rejected += len(projection.rejected)
        report.rejects.extend(projection.rejected[: _REJECTS_KEPT - len(report.rejects)])
        breaks = chain_breaks(projection.events, prior)
        if breaks:
            report.chain_breaks += len(breaks)
            report.first_break = report.first_break or breaks[0]
        await self._written()
        self._writing_states = projection.states
        self._writing = asyncio.create_task(self._write(projection, [*finished, *evicted]))

    async def _write(self, projection: Projection, orders: list[OrderState]) -> None:
        async with self.conn.transaction():
            await self.store.write(self.conn, self.topic, projection, orders)
        self.report.positions.update(projection.positions)

    async def _write_cached_orders(self) -> None:
        """The rows of orders still in flight, so the schema is complete when `run_to` returns."""
        async with self.conn.transaction():
            await self.store.write_orders(self.conn, self.cache.states())

    async def _abandon_write(self) -> None:
        """Let a batch still being written end (one batch: bounded) and ignore its outcome.

        Only after a failure or a stop, when the schema is about to be dropped; waiting
        leaves the connection usable for that, where cancelling mid-COPY might not.
        """
        if self._writing is not None:
            writing, self._writing = self._writing, None
            await asyncio.gather(writing, return_exceptions=True)
        self._writing_states = {}

    async def _written(self) -> None:
        """Wait for the batch being written; its failure is the rebuild's failure."""
        if self._writing is not None:
            writing, self._writing = self._writing, None
            await writing
        self._writing_states = {}


async def topic_partitions(servers: str, topic: str) -> list[int]:
    """The topic's partitions as the broker has them now (none if the topic does not exist)."""
    # A consumer knows only the metadata it was asked for before; the admin client asks.
    admin = AIOKafkaAdminClient(bootstrap_servers=servers, client_id="oee-replay-admin")
    try:
        await asyncio.wait_for(admin.start(), 15)
        described = await admin.describe_topics([topic])
    except (KafkaError, OSError, TimeoutError) as exc:
        raise kafka.unreachable(servers, exc) from None
    finally:
        await admin.close()
    return sorted(
        p["partition"] for t in described if t["error_code"] == 0 for p in t["partitions"]
    )


async def schema_exists(conn: AsyncConnection[Any], name: str) -> bool:
    cursor = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,))
    return await cursor.fetchone() is not None


async def create_schema_like(
    conn: AsyncConnection[Any], schema: str, template: str, tables: Iterable[str]
) -> None:
    """A new schema holding empty copies of the template's `tables` (indexes and defaults
    included), in one transaction; refused if it exists or the template does not."""
    if await schema_exists(conn, schema):
        raise RebuildError(f"schema {schema!r} exists already; name another one")
    if not await schema_exists(conn, template):
        raise RebuildError(f"template schema {template!r} is missing; run `oee migrate`")
    async with conn.transaction():
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for table in tables:
            await conn.execute(
                sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                    sql.Identifier(schema, table), sql.Identifier(template, table)
                )
            )


async def drop_schema(conn: AsyncConnection[Any], schema: str) -> None:
    await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def live_positions(conn: AsyncConnection[Any], schema: str, topic: str) -> dict[int, int]:
    """The positions a read-model schema has reached on `topic`."""
    return await ReadModelStore(schema).positions(conn, topic)


def ahead_of(reached: Mapping[int, int], target: Mapping[int, int]) -> dict[int, int]:
    """Per partition, the later of what was reached and `target`: where to continue to."""
    return {p: max(reached.get(p, 0), target.get(p, 0)) for p in {*reached, *target}}


async def switch_in(rebuilder: Rebuilder, live: str = LIVE_SCHEMA) -> str:
    """Make the rebuilt schema the live one, atomically; return the name the old one now has.

    The live projector keeps running through this. The rebuilt schema must not be
    behind the live one on any partition when they swap, or the projector (whose
    consumer is past those records) would never apply the gap. So: catch up with the
    live positions without a lock, then lock the live `log_positions` (EXCLUSIVE: the
    projector's per-batch `SELECT ... FOR UPDATE` waits, API reads do not), catch up
    to the final positions, and rename both schemas in that same transaction. The
    projector's waiting statement then resolves `read_model.log_positions` by name
    again and continues in the new schema from positions equal to (or past) its own.
    """
    conn = rebuilder.conn
    for _ in range(3):
        target = await live_positions(conn, live, rebuilder.topic)
        if all(rebuilder.report.positions.get(p, 0) >= o for p, o in target.items()):
            break
        await rebuilder.run_to(ahead_of(rebuilder.report.positions, target))
    old = check_schema_name(f"{live}_old_{stamp()}")
    url = str(rebuilder.settings.database_url)
    async with await AsyncConnection.connect(url, connect_timeout=5) as lock, lock.transaction():
        await lock.execute(
            sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(live, "log_positions"))
        )
        target = await live_positions(lock, live, rebuilder.topic)
        await rebuilder.run_to(ahead_of(rebuilder.report.positions, target))
        await lock.execute(
            sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                sql.Identifier(live), sql.Identifier(old)
            )
        )
        await lock.execute(
            sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                sql.Identifier(rebuilder.schema), sql.Identifier(live)
            )
        )
    return old
