"""The market projector: `market.trades` and `market.ticks` -> `market_data.*`, exactly once.

A second consumer inside `oee projector` (its own consumer group,
`<prefix>-market-projector`), built like the order projector: records are folded by
the pure `project_market`, and the rows, per-pair sequences and log positions of a
batch are written in one PostgreSQL transaction; on assignment each partition
resumes where PostgreSQL says. Unreadable records go to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from psycopg_pool import AsyncConnectionPool

from services.common.kafka import DeadLetter, RenewingProducer, send_to_dead_letter, unreachable
from services.common.metrics import dead_letters_start_at_zero
from services.common.process import retry_while_down
from services.common.settings import Settings
from services.projector.batching import BATCH_LINGER_SECONDS, MAX_BATCH, is_outage
from services.projector.market_projection import project_market
from services.projector.market_store import MarketStore
from services.projector.projection import LogRecord

log = logging.getLogger(__name__)


class _SeekToStoredPositions(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, projector: MarketProjector) -> None:
        self._projector = projector

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._projector.seek_to_stored_positions(assigned)


class MarketProjector:
    """Consumes both market topics and applies them to one schema's market tables."""

    def __init__(self, settings: Settings, pool: AsyncConnectionPool, store: MarketStore) -> None:
        assert settings.kafka_bootstrap_servers
        self.settings = settings
        self.ticks_topic = settings.market_ticks_topic
        self.trades_topic = settings.market_trades_topic
        self.topics = (self.ticks_topic, self.trades_topic)
        self.pool = pool
        self.store = store
        self.group = settings.market_projector_group
        dead_letters_start_at_zero(self.group)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=self.group,
            client_id="oee-market-projector",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=MAX_BATCH,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            metadata_max_age_ms=5000,
        )
        self.producer = RenewingProducer(
            settings.kafka_bootstrap_servers, client_id="oee-market-projector-dlq"
        )
        self.applied = 0

    async def seek_to_stored_positions(self, assigned: list[TopicPartition]) -> None:
        async with self.pool.connection() as conn:
            positions = await self.store.positions(conn, self.topics)
        for tp in assigned:
            if (tp.topic, tp.partition) in positions:
                self.consumer.seek(tp, positions[(tp.topic, tp.partition)])
            else:
                await self.consumer.seek_to_beginning(tp)

    async def start(self) -> None:
        servers = str(self.settings.kafka_bootstrap_servers)
        await self.producer.start()
        self.consumer.subscribe(list(self.topics), listener=_SeekToStoredPositions(self))
        try:
            await self.consumer.start()
        except (KafkaError, OSError) as exc:
            await self.producer.stop()
            raise unreachable(servers, exc) from None

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.producer.stop()

    async def apply(self, records: list[LogRecord]) -> int:
        """Project one batch: rows, dead letters, sequences and positions, atomically."""
        async with self.pool.connection() as conn, conn.transaction():
            positions = await self.store.positions(conn, self.topics, lock=True)
            records = [r for r in records if r.offset >= positions.get((r.topic, r.partition), 0)]
            if not records:
                return 0
            projection = project_market(
                records,
                await self.store.last_sequences(conn),
                ticks_topic=self.ticks_topic,
                trades_topic=self.trades_topic,
            )
            for rejected in projection.rejected:
                record = rejected.record
                await send_to_dead_letter(
                    self.producer,
                    self.settings.dead_letter_topic,
                    DeadLetter(
                        record.topic, record.partition, record.offset, rejected.reason, self.group
                    ),
                    record.key,
                    record.value,
                )
            await self.store.write(conn, projection)
        if projection.gaps:
            log.warning("market records skipped %d sequence number(s)", projection.gaps)
        applied = len(projection.trades) + len(projection.ticks)
        self.applied += applied
        return applied

    async def _fetch(self, timeout_ms: int, max_records: int) -> list[LogRecord]:
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return [
            LogRecord(m.topic, m.partition, m.offset, m.key, m.value)
            for messages in batches.values()
            for m in messages
        ]

    async def next_batch(self) -> list[LogRecord]:
        records = await self._fetch(200, MAX_BATCH)
        if records and len(records) < MAX_BATCH:
            await asyncio.sleep(BATCH_LINGER_SECONDS)
            records += await self._fetch(0, MAX_BATCH - len(records))
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
                return
