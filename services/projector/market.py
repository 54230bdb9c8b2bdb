"""The market projector: `market.trades` and `market.ticks` -> `market_data.*`, exactly once.

A second consumer inside `oee projector` (its own consumer group,
`<prefix>-market-projector`), built like the order projector: records are folded by
the pure `project_market`, and the rows, per-pair sequences and log positions of a
batch are written in one PostgreSQL transaction; on assignment each partition
resumes where PostgreSQL says. Unreadable records go to the dead-letter topic.
"""

from __future__ import annotations

import logging

from aiokafka import TopicPartition
from psycopg_pool import AsyncConnectionPool

from services.common.settings import Settings
from services.projector.batching import BatchProjector
from services.projector.market_projection import project_market
from services.projector.market_store import MarketStore
from services.projector.projection import LogRecord

log = logging.getLogger(__name__)


class MarketProjector(BatchProjector):
    """Consumes both market topics and applies them to one schema's market tables."""

    def __init__(self, settings: Settings, pool: AsyncConnectionPool, store: MarketStore) -> None:
        super().__init__(
            settings,
            (settings.market_ticks_topic, settings.market_trades_topic),
            group=settings.market_projector_group,
            client_id="oee-market-projector",
            metadata_max_age_ms=5000,
        )
        self.ticks_topic = settings.market_ticks_topic
        self.trades_topic = settings.market_trades_topic
        self.pool = pool
        self.store = store

    async def seek_to_stored_positions(self, assigned: list[TopicPartition]) -> None:
        async with self.pool.connection() as conn:
            positions = await self.store.positions(conn, self.topics)
        for tp in assigned:
            if (tp.topic, tp.partition) in positions:
                self.consumer.seek(tp, positions[(tp.topic, tp.partition)])
            else:
                await self.consumer.seek_to_beginning(tp)

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
                await self.dead_letter(rejected)
            await self.store.write(conn, projection)
        if projection.gaps:
            log.warning("market records skipped %d sequence number(s)", projection.gaps)
        applied = len(projection.trades) + len(projection.ticks)
        self.applied += applied
        return applied
