"""The API's view of the launches: `chain.events` folded from its start, then live.

One group-less consumer per API process, like the market feed; `GET /api/launches` reads the
fold (`services/domain/launches.py`, the same one the trigger engine keeps), so the dashboard
sees a pool created, its open time, its authorities and LP, and its opening. A record it cannot
read is skipped here: the trigger engine dead-letters it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from schemas.chain import UndecodableChainRecord, decode_chain
from services.common.kafka import unreachable
from services.domain.launches import NO_LAUNCHES, Launches, fold_chain

log = logging.getLogger(__name__)


class LaunchFeed:
    """Keeps the fold of `chain.events` (one partition) current."""

    def __init__(self, servers: str, topic: str) -> None:
        self.servers = servers
        self.topic = topic
        self.launches: Launches = NO_LAUNCHES
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        partition = TopicPartition(self.topic, 0)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.servers,
            client_id="oee-api-launch-feed",
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        try:
            await consumer.start()
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
        except (KafkaError, OSError) as exc:
            await consumer.stop()
            raise unreachable(self.servers, exc) from None
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer), name="api-launch-feed")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    def fold(self, value: bytes | None) -> None:
        """Fold one record's value; an unreadable one changes nothing."""
        try:
            event = decode_chain(value)
        except UndecodableChainRecord as exc:
            log.warning("unreadable chain event skipped (%s)", exc)
            return
        self.launches = fold_chain(self.launches, event)

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
            except KafkaError as exc:
                log.warning("chain event read failed (%s); retrying", exc)
                await asyncio.sleep(1)
                continue
            for records in batches.values():
                for record in records:
                    self.fold(record.value)
