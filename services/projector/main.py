"""The projector process: log -> `project` -> PostgreSQL, one transaction per batch."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from services.common.db import migrate, open_pool
from services.common.kafka import (
    DeadLetter,
    RenewingProducer,
    batch_fetches_while_busy,
    ensure_topics,
    send_to_dead_letter,
    topic_specs,
    unreachable,
)
from services.common.logging import configure_logging
from services.common.metrics import (
    PROJECT,
    dead_letters_start_at_zero,
    observe_stage,
    start_metrics_server,
)
from services.common.process import retry_while_down, stop_event_on_signals
from services.common.settings import Settings
from services.domain.order import OrderState
from services.projector.batching import BATCH_LINGER_SECONDS, MAX_BATCH, is_outage
from services.projector.cache import StateCache
from services.projector.market import MarketProjector
from services.projector.market_store import MarketStore
from services.projector.projection import LogRecord, order_ids_in, project
from services.projector.store import ReadModelStore

log = logging.getLogger(__name__)

# Unfinished orders whose state is kept between batches: well above the orders in
# flight at 1,000 orders/s, and a few MB at most.
_CACHED_ORDERS = 20_000


class _SeekToStoredPositions(ConsumerRebalanceListener):  # type: ignore[misc]
    """Resume each assigned partition where PostgreSQL says, not where Kafka's group offset says."""

    def __init__(self, projector: Projector) -> None:
        self._projector = projector

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._projector.seek_to_stored_positions(assigned)


class Projector:
    """Consumes the order log and applies it to one read-model schema, exactly once."""

    def __init__(
        self, settings: Settings, pool: AsyncConnectionPool, store: ReadModelStore
    ) -> None:
        assert settings.kafka_bootstrap_servers
        self.settings = settings
        self.topic = settings.orders_topic
        self.pool = pool
        self.store = store
        dead_letters_start_at_zero(settings.projector_group)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.projector_group,
            client_id="oee-projector",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=2000,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        )
        self.producer = RenewingProducer(
            settings.kafka_bootstrap_servers, client_id="oee-projector-dlq"
        )
        self.applied = 0
        self.cache = StateCache(_CACHED_ORDERS)

    async def seek_to_stored_positions(self, assigned: list[TopicPartition]) -> None:
        async with self.pool.connection() as conn:
            positions = await self.store.positions(conn, self.topic)
        for tp in assigned:
            if tp.partition in positions:
                self.consumer.seek(tp, positions[tp.partition])
            else:
                await self.consumer.seek_to_beginning(tp)

    async def start(self) -> None:
        servers = str(self.settings.kafka_bootstrap_servers)
        await self.producer.start()
        self.consumer.subscribe([self.topic], listener=_SeekToStoredPositions(self))
        try:
            await self.consumer.start()
        except (KafkaError, OSError) as exc:
            await self.producer.stop()
            raise unreachable(servers, exc) from None
        # It waits BATCH_LINGER_SECONDS for more records anyway: fewer, fuller fetches.
        batch_fetches_while_busy(self.consumer)

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.producer.stop()

    async def apply(self, records: list[LogRecord]) -> int:
        """Project one batch: rows, dead letters and positions, atomically in PostgreSQL."""
        async with self.pool.connection() as conn, conn.transaction():
            # Records below the stored positions were applied already: a consumer may fetch
            # from an older offset (e.g. before the seek on assignment has taken effect).
            positions, stored = await self.store.locked_positions_and_last_sequences(
                conn, self.topic, order_ids_in(records)
            )
            records = [r for r in records if r.offset >= positions.get(r.partition, 0)]
            if not records:
                return 0
            prior = await self._prior_states(conn, stored, order_ids_in(records))
            projection = project(records, prior)
            for rejected in projection.rejected:
                record = rejected.record
                await send_to_dead_letter(
                    self.producer,
                    self.settings.dead_letter_topic,
                    DeadLetter(
                        record.topic,
                        record.partition,
                        record.offset,
                        rejected.reason,
                        self.settings.projector_group,
                    ),
                    record.key,
                    record.value,
                )
            await self.store.write(conn, self.topic, projection)
        self.cache.remember(projection.states)  # only once committed
        committed = time.time()
        for row in projection.events:
            observe_stage(PROJECT, committed - row.envelope.occurred_at.timestamp())
        self.applied += len(projection.events)
        return len(projection.events)

    async def _prior_states(
        self, conn: AsyncConnection, last_sequences: dict[uuid.UUID, int], order_ids: set[uuid.UUID]
    ) -> dict[uuid.UUID, OrderState]:
        """The orders' states as stored: from the cache when it holds the stored sequence.

        The stored `last_sequence` is the truth (another projector may have applied
        events since, after a rebalance, or a rebuild been switched in); a cached
        state that does not match it, or a missing one, is folded from `order_events`.
        """
        stored = {i: last_sequences[i] for i in order_ids if i in last_sequences}
        cached, _ = self.cache.lookup(stored)
        prior = {
            order_id: state
            for order_id, state in cached.items()
            if state is not None and state.sequence == stored[order_id]
        }
        prior.update(await self.store.load_states(conn, stored.keys() - prior.keys()))
        return prior

    async def _fetch(self, timeout_ms: int, max_records: int) -> list[LogRecord]:
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return [
            LogRecord(m.topic, m.partition, m.offset, m.key, m.value)
            for messages in batches.values()
            for m in messages
        ]

    async def next_batch(self) -> list[LogRecord]:
        """The next records to apply: whatever arrived, plus what arrives in the next moment.

        A batch costs about the same whatever its size (one transaction, six statements),
        so once records come in, waiting BATCH_LINGER_SECONDS for more applies them in
        fewer, larger batches. An idle log costs nothing extra: the first fetch blocks.
        """
        records = await self._fetch(200, MAX_BATCH)
        if records and len(records) < MAX_BATCH:
            await asyncio.sleep(BATCH_LINGER_SECONDS)
            records += await self._fetch(0, MAX_BATCH - len(records))  # partition order kept
        return records

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            records = await self.next_batch()
            if not records:
                continue
            applied = await retry_while_down(
                functools.partial(self.apply, records),
                is_outage=is_outage,
                what="PostgreSQL or Kafka",
                stop=stop,
            )
            if applied is None:
                return  # asked to stop while PostgreSQL was down: read again at the next start


async def _main(settings: Settings) -> None:
    assert settings.database_url is not None
    assert settings.kafka_bootstrap_servers is not None
    stop = stop_event_on_signals()
    await asyncio.to_thread(migrate, settings.database_url)
    await ensure_topics(settings.kafka_bootstrap_servers, topic_specs(settings))
    pool = await open_pool(settings.database_url, max_size=4)
    projector = Projector(settings, pool, ReadModelStore())
    # The market's read side runs beside the orders' in the same process (its own group).
    market = MarketProjector(settings, pool, MarketStore())
    try:
        await projector.start()
        await market.start()
        log.info(
            "projector consuming %s, %s and %s",
            settings.orders_topic,
            settings.market_trades_topic,
            settings.market_ticks_topic,
        )
        await asyncio.gather(projector.run(stop), market.run(stop))
    finally:
        await market.stop()
        await projector.stop()
        await pool.close()


def serve(settings: Settings) -> None:
    """Run the projector until SIGTERM/SIGINT."""
    configure_logging(settings, "projector")
    start_metrics_server(settings.metrics_host, settings.projector_metrics_port)
    asyncio.run(_main(settings))
