"""How far each consumer group is behind the order log, and how many records were dead-lettered.

Read from Kafka alone: the end offset of every partition against each group's
committed offsets. Groups that keep their positions elsewhere (the projector
stores them in PostgreSQL, in the same transaction as its rows) commit nothing to
Kafka; `positions` lets a caller supply those. aiokafka's `describe_consumer_groups`
fails to decode Kafka 4's answer, so group membership is not read here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from psycopg import sql

from services.common.kafka import unreachable


@dataclass(frozen=True)
class GroupLag:
    """One consumer group's distance from the end of the order log."""

    group: str
    # Per partition; None when the group has committed no position for the topic.
    lag: Mapping[int, int] | None

    @property
    def total(self) -> int | None:
        return None if self.lag is None else sum(self.lag.values())


@dataclass(frozen=True)
class LogStats:
    end_offsets: Mapping[int, int]
    groups: tuple[GroupLag, ...]
    dead_letters: int

    @property
    def records(self) -> int:
        return sum(self.end_offsets.values())


def lag_of(end_offsets: Mapping[int, int], committed: Mapping[int, int]) -> dict[int, int]:
    """Records not yet consumed per partition; a partition without a position counts from 0."""
    return {p: max(0, end - committed.get(p, 0)) for p, end in sorted(end_offsets.items())}


async def _end_offsets(consumer: AIOKafkaConsumer, topic: str) -> dict[int, int]:
    await consumer.topics()  # loads the cluster's metadata, so partitions_for_topic answers
    partitions = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    ends = await consumer.end_offsets(tps) if tps else {}
    return {tp.partition: offset for tp, offset in ends.items()}


async def read_log_stats(
    servers: str,
    orders_topic: str,
    dead_letter_topic: str,
    group_prefix: str,
    *,
    positions: Mapping[str, Mapping[int, int]] | None = None,
    timeout: float = 5.0,
) -> LogStats:
    """End offsets, each `<group_prefix>-*` group's lag, and the dead-letter topic's size."""
    admin = AIOKafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=int(timeout * 1000))
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=None, enable_auto_commit=False)
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            await consumer.start()
            ends = await _end_offsets(consumer, orders_topic)
            dead = await _end_offsets(consumer, dead_letter_topic)
            listed = sorted(
                str(g[0])
                for g in await admin.list_consumer_groups()
                if str(g[0]).startswith(f"{group_prefix}-")
            )
            stored = dict(positions or {})
            groups = []
            for group in sorted({*listed, *stored}):
                if group in stored:
                    committed: Mapping[int, int] = stored[group]
                else:
                    offsets = await admin.list_consumer_group_offsets(group)
                    committed = {
                        tp.partition: meta.offset
                        for tp, meta in offsets.items()
                        if tp.topic == orders_topic and meta.offset >= 0
                    }
                lag = lag_of(ends, committed) if committed else None
                groups.append(GroupLag(group, lag))
    except (KafkaError, OSError, TimeoutError) as exc:
        raise unreachable(servers, exc) from None
    finally:
        await consumer.stop()
        await admin.close()
    return LogStats(ends, tuple(groups), sum(dead.values()))


async def stored_positions(
    conn: psycopg.AsyncConnection[Any], topic: str, schema: str = "read_model"
) -> dict[int, int]:
    """The projector's next offset per partition, as it committed them with its rows."""
    query = sql.SQL("SELECT partition, next_offset FROM {} WHERE topic = %s").format(
        sql.Identifier(schema, "log_positions")
    )
    cursor = await conn.execute(query, (topic,))
    return {int(row[0]): int(row[1]) for row in await cursor.fetchall()}
