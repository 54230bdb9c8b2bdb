"""What both projectors (orders and market) share: a group consumer that resumes where
PostgreSQL says, reads in batches, dead-letters what it cannot read and waits out outages.

Each projector says which topics it reads (`subscribe`), where each assigned partition
resumes (`seek_to_stored_positions`) and how a batch is applied (`apply`, one PostgreSQL
transaction); the loop around them is here once.
"""

from __future__ import annotations

import asyncio
import functools
from abc import ABC, abstractmethod
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from psycopg_pool import PoolTimeout

from services.common.kafka import DeadLetter, RenewingProducer, send_to_dead_letter, unreachable
from services.common.metrics import dead_letters_start_at_zero
from services.common.process import retry_while_down
from services.common.settings import Settings
from services.projector.projection import LogRecord, Rejected

MAX_BATCH = 2000
# Once records arrive, wait this long for more: a batch costs about the same whatever its size.
BATCH_LINGER_SECONDS = 0.02


def is_outage(exc: BaseException) -> bool:
    """PostgreSQL down, or Kafka refusing a dead letter: wait and apply the batch again."""
    return isinstance(exc, psycopg.OperationalError | PoolTimeout | KafkaError)


class _SeekToStoredPositions(ConsumerRebalanceListener):  # type: ignore[misc]
    """Resume each assigned partition where PostgreSQL says, not where Kafka's group offset says."""

    def __init__(self, projector: BatchProjector) -> None:
        self._projector = projector

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._projector.seek_to_stored_positions(assigned)


class BatchProjector(ABC):
    """A consumer group's member that applies the log to PostgreSQL a batch at a time."""

    def __init__(
        self,
        settings: Settings,
        topics: tuple[str, ...],
        *,
        group: str,
        client_id: str,
        **consumer_options: Any,
    ) -> None:
        assert settings.kafka_bootstrap_servers
        self.settings = settings
        self.servers = settings.kafka_bootstrap_servers
        self.topics = topics
        self.group = group
        dead_letters_start_at_zero(group)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.servers,
            group_id=group,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=MAX_BATCH,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            **consumer_options,
        )
        self.producer = RenewingProducer(self.servers, client_id=f"{client_id}-dlq")
        self.applied = 0

    @abstractmethod
    async def seek_to_stored_positions(self, assigned: list[TopicPartition]) -> None:
        """On assignment: seek each partition to the position PostgreSQL holds for it."""

    @abstractmethod
    async def apply(self, records: list[LogRecord]) -> int:
        """Apply one batch in one PostgreSQL transaction; how many records it applied."""

    async def start(self) -> None:
        await self.producer.start()
        self.consumer.subscribe(list(self.topics), listener=_SeekToStoredPositions(self))
        try:
            await self.consumer.start()
        except (KafkaError, OSError) as exc:
            await self.producer.stop()
            raise unreachable(self.servers, exc) from None

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.producer.stop()

    async def dead_letter(self, rejected: Rejected) -> None:
        """Park a record the projection could not apply, with why, and go on."""
        record = rejected.record
        await send_to_dead_letter(
            self.producer,
            self.settings.dead_letter_topic,
            DeadLetter(record.topic, record.partition, record.offset, rejected.reason, self.group),
            record.key,
            record.value,
        )

    async def _fetch(self, timeout_ms: int, max_records: int) -> list[LogRecord]:
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return [
            LogRecord(m.topic, m.partition, m.offset, m.key, m.value)
            for messages in batches.values()
            for m in messages
        ]

    async def next_batch(self) -> list[LogRecord]:
        """The next records to apply: whatever arrived, plus what arrives in the next moment.

        A batch costs about the same whatever its size (one transaction, a few statements),
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
