"""Reading the newest records of a topic in one API process: what both socket feeds share.

The order feed (`feed.py`) and the market feed (`market_feed.py`) each read their topic
with no group (every API process sees every record) and committed records only, from a
position of their choosing near the end. Each hands every record's value to its own
fan-out, which never waits on a socket. The reading loop outlives a broker outage:
aiokafka reconnects by itself, so the loop logs the failure and reads on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.common.kafka import unreachable

log = logging.getLogger(__name__)


class TopicTail(ABC):
    """A group-less reader of a topic's partitions that hands each record's value to `take`."""

    def __init__(self, servers: str, topic: str, *, name: str) -> None:
        self.servers = servers
        self.topic = topic
        self.name = name  # the consumer's client id, its task's name and its log lines
        self._consumer: AIOKafkaConsumer | None = None  # made by start()
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def position(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        """Where reading starts: called once the partitions are assigned, before any read."""

    @abstractmethod
    def take(self, value: bytes | None) -> None:
        """One record's value, in partition order; never awaits."""

    async def start(self, partitions: Iterable[int]) -> None:
        """Assign the partitions and position them; a broker that cannot be reached is a
        `DependencyUnavailable` naming it."""
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer = self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.servers,
            client_id=self.name,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        try:
            await consumer.start()
            consumer.assign(tps)
            await self.position(consumer, tps)
        except (KafkaError, OSError) as exc:
            await consumer.stop()
            raise unreachable(self.servers, exc) from None
        except BaseException:
            await consumer.stop()
            raise
        self._task = asyncio.create_task(self._read(consumer), name=self.name)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            except KafkaError as exc:
                log.warning("%s read failed (%s); retrying", self.name, exc)
                await asyncio.sleep(1)
                continue
            for records in batches.values():
                for record in records:
                    self.take(record.value)
