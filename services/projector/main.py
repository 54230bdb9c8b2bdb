"""The projector process: log -> `project` -> PostgreSQL, one transaction per batch."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from aiokafka import TopicPartition
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from services.common.db import migrate, open_pool
from services.common.kafka import batch_fetches_while_busy, ensure_topics, topic_specs
from services.common.logging import configure_logging
from services.common.metrics import PROJECT, observe_stage, start_metrics_server
from services.common.process import stop_event_on_signals
from services.common.settings import Settings
from services.domain.order import OrderState
from services.projector.batching import BatchProjector
from services.projector.cache import StateCache
from services.projector.market import MarketProjector
from services.projector.market_store import MarketStore
from services.projector.projection import LogRecord, order_ids_in, project
from services.projector.store import ReadModelStore

log = logging.getLogger(__name__)

# Unfinished orders whose state is kept between batches: well above the orders in
# flight at 1,000 orders/s, and a few MB at most.
_CACHED_ORDERS = 20_000


class Projector(BatchProjector):
    """Consumes the order log and applies it to one read-model schema, exactly once."""

    def __init__(
        self, settings: Settings, pool: AsyncConnectionPool, store: ReadModelStore
    ) -> None:
        super().__init__(
            settings,
            (settings.orders_topic,),
            group=settings.projector_group,
            client_id="oee-projector",
        )
        self.topic = settings.orders_topic
        self.pool = pool
        self.store = store
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
        await super().start()
        # It waits BATCH_LINGER_SECONDS for more records anyway: fewer, fuller fetches.
        batch_fetches_while_busy(self.consumer)

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
                await self.dead_letter(rejected)
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
