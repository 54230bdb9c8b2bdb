"""Kafka edge: the topics, producers that only report success once a write is durable,
and the dead-letter path every consumer shares.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from services.common.errors import DependencyUnavailable
from services.common.metrics import DEAD_LETTERS
from services.common.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    """A topic as the system needs it; created at start-up if missing."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> tuple[TopicSpec, ...]:
    """Every topic the system writes. The order log is kept forever: it is the source of truth."""
    forever = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
    return (
        TopicSpec(settings.orders_topic, settings.orders_topic_partitions, forever),
        TopicSpec(settings.dead_letter_topic, 1, forever),
    )


def bootstrap_servers(settings: Settings) -> str:
    return settings.kafka_bootstrap_servers or f"127.0.0.1:{settings.kafka_port}"


def unreachable(servers: str, exc: BaseException | None = None) -> DependencyUnavailable:
    reason = f" ({exc})" if exc and str(exc) else ""
    return DependencyUnavailable(
        f"Kafka is not reachable at {servers}{reason};"
        " set KAFKA_BOOTSTRAP_SERVERS to a running broker"
    )


async def ensure_topics(servers: str, specs: Iterable[TopicSpec], timeout: float = 15.0) -> None:
    """Create the missing topics; existing ones are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
    except (KafkaError, OSError, TimeoutError) as exc:
        await admin.close()
        raise unreachable(servers, exc) from None
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                s.name, num_partitions=s.partitions, replication_factor=1, topic_configs=s.config
            )
            for s in specs
            if s.name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process created it first
    finally:
        await admin.close()


def durable_producer(servers: str, *, client_id: str, linger_ms: int = 2) -> AIOKafkaProducer:
    """acks=all and idempotence: a send that returns is on the log, once."""
    return AIOKafkaProducer(
        bootstrap_servers=servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        request_timeout_ms=10_000,
    )


async def start_producer(producer: AIOKafkaProducer, servers: str, timeout: float = 15.0) -> None:
    try:
        await asyncio.wait_for(producer.start(), timeout)
    except (KafkaConnectionError, KafkaError, OSError, TimeoutError) as exc:
        await producer.stop()
        raise unreachable(servers, exc) from None


@dataclass(frozen=True)
class DeadLetter:
    """Where a record came from and why it could not be handled."""

    topic: str
    partition: int
    offset: int
    reason: str
    consumer: str


async def send_to_dead_letter(
    producer: AIOKafkaProducer,
    dead_letter_topic: str,
    letter: DeadLetter,
    key: bytes | None,
    value: bytes | None,
) -> None:
    """Park an unreadable record, with its provenance in headers, and move on."""
    headers = [
        ("dlq.reason", letter.reason.encode()),
        ("dlq.source", f"{letter.topic}/{letter.partition}/{letter.offset}".encode()),
        ("dlq.consumer", letter.consumer.encode()),
    ]
    await producer.send_and_wait(dead_letter_topic, value=value, key=key, headers=headers)
    DEAD_LETTERS.labels(letter.consumer).inc()
    log.warning(
        "dead-lettered %s/%s/%s: %s", letter.topic, letter.partition, letter.offset, letter.reason
    )


def dead_letter_summary(headers: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    """The provenance headers of a dead letter, decoded (for tools and tests)."""
    return {k: v.decode(errors="replace") for k, v in headers if k.startswith("dlq.")}
