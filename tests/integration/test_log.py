"""What the system relies on from the real log and database: durability, groups, transactions,
topic settings, idempotent migrations, and one-line errors when either is missing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from infra.kafka.launcher import free_port
from schemas import codec
from schemas.envelope import Envelope, genesis_hash
from schemas.events import OrderSubmitted
from services.common.db import connect, load_migrations, migrate
from services.common.errors import DependencyUnavailable
from services.common.kafka import (
    BUSY_FETCH_MAX_WAIT_MS,
    BUSY_FETCH_MIN_BYTES,
    FetchWait,
    batch_fetches_while_busy,
    durable_producer,
    ensure_topics,
    start_producer,
    topic_specs,
)
from services.common.settings import Settings
from tests.fixtures.settings import MakeSettings, unique


def servers(settings: Settings) -> str:
    assert settings.kafka_bootstrap_servers
    return settings.kafka_bootstrap_servers


def submission(order_id: uuid.UUID, amount: str = "1.5") -> Envelope:
    return Envelope.new(
        order_id=order_id,
        sequence=1,
        producer="test-log",
        prev_hash=genesis_hash(order_id),
        payload=OrderSubmitted(
            token_in="SOL", token_out="USDC", amount=Decimal(amount), slippage=Decimal("0.01")
        ),
        occurred_at=datetime.now(UTC),
    )


async def drain(
    consumer: AIOKafkaConsumer, count: int, timeout: float = 15.0
) -> list[ConsumerRecord[Any, Any]]:
    """Read until `count` records arrived; fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    received: list[ConsumerRecord[Any, Any]] = []
    while len(received) < count:
        assert loop.time() < deadline, f"got {len(received)} of {count} records in {timeout}s"
        for batch in (await consumer.getmany(timeout_ms=200)).values():
            received += batch
    return received


async def read_to_end(
    consumer: AIOKafkaConsumer, tp: TopicPartition, timeout: float = 15.0
) -> list[ConsumerRecord[Any, Any]]:
    """Everything a consumer's isolation level lets it see, from the start to the end offset."""
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    end = (await consumer.end_offsets([tp]))[tp]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    received: list[ConsumerRecord[Any, Any]] = []
    while await consumer.position(tp) < end:
        assert loop.time() < deadline, f"stuck at {await consumer.position(tp)} of {end}"
        for batch in (await consumer.getmany(tp, timeout_ms=200)).values():
            received += batch
    return received


@pytest.fixture
async def topics(make_settings: MakeSettings) -> Settings:
    settings = make_settings()
    await ensure_topics(servers(settings), topic_specs(settings))
    return settings


@pytest.fixture
async def producer(topics: Settings) -> AsyncIterator[AIOKafkaProducer]:
    producer = durable_producer(servers(topics), client_id="test-log")
    await start_producer(producer, servers(topics))
    try:
        yield producer
    finally:
        await producer.stop()


async def test_a_durable_write_reads_back_as_the_same_event(
    topics: Settings, producer: AIOKafkaProducer
) -> None:
    order_id = uuid.uuid4()
    envelope = submission(order_id, "123456789.123456789")
    key = str(order_id).encode()
    sent = await producer.send_and_wait(topics.orders_topic, value=codec.encode(envelope), key=key)

    consumer = AIOKafkaConsumer(bootstrap_servers=servers(topics), enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topics.orders_topic, sent.partition)
        [record] = await read_to_end(consumer, tp)
    finally:
        await consumer.stop()
    assert (record.offset, record.key) == (sent.offset, key)
    decoded = codec.decode(record.value)
    assert decoded == envelope
    assert decoded.payload == envelope.payload
    assert codec.encode(decoded) == record.value


async def test_a_consumer_group_resumes_after_its_committed_offset(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings(orders_topic_partitions=1)
    await ensure_topics(servers(settings), topic_specs(settings))
    topic, group = settings.orders_topic, unique("test-group")
    tp = TopicPartition(topic, 0)
    producer = durable_producer(servers(settings), client_id="test-log")
    await start_producer(producer, servers(settings))

    def member() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=servers(settings),
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    try:
        for i in range(3):
            await producer.send_and_wait(topic, value=f"early-{i}".encode(), key=b"k")
        first = member()
        await first.start()
        try:
            first.subscribe([topic])
            early = await drain(first, 3)
            await first.commit()
            assert await first.committed(tp) == 3
        finally:
            await first.stop()
        assert [r.value for r in early] == [b"early-0", b"early-1", b"early-2"]

        for i in range(2):
            await producer.send_and_wait(topic, value=f"late-{i}".encode(), key=b"k")
        second = member()
        await second.start()
        try:
            second.subscribe([topic])
            late = await drain(second, 2)
            assert await second.getmany(timeout_ms=300) == {}
        finally:
            await second.stop()
    finally:
        await producer.stop()
    assert [(r.offset, r.value) for r in late] == [(3, b"late-0"), (4, b"late-1")]


async def test_read_committed_sees_only_committed_transactions(topics: Settings) -> None:
    topic = topics.orders_topic
    producer = AIOKafkaProducer(
        bootstrap_servers=servers(topics),
        transactional_id=unique("test-tx"),
        enable_idempotence=True,
        acks="all",
    )
    await producer.start()
    try:
        async with producer.transaction():
            sent = await producer.send_and_wait(topic, value=b"committed-1", key=b"k")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, value=b"aborted", key=b"k")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, value=b"committed-2", key=b"k")
    finally:
        await producer.stop()

    tp = TopicPartition(topic, sent.partition)
    seen: dict[str, list[bytes]] = {}
    for isolation in ("read_committed", "read_uncommitted"):
        consumer = AIOKafkaConsumer(
            bootstrap_servers=servers(topics),
            enable_auto_commit=False,
            isolation_level=isolation,
        )
        await consumer.start()
        try:
            seen[isolation] = [r.value for r in await read_to_end(consumer, tp)]
        finally:
            await consumer.stop()
    assert seen["read_committed"] == [b"committed-1", b"committed-2"]
    # The aborted record is on the log; only the isolation level hides it.
    assert seen["read_uncommitted"] == [b"committed-1", b"aborted", b"committed-2"]


async def test_ensure_topics_is_idempotent_and_keeps_the_order_log_forever(
    topics: Settings,
) -> None:
    await ensure_topics(servers(topics), topic_specs(topics))  # the fixture made them already
    admin = AIOKafkaAdminClient(bootstrap_servers=servers(topics))
    await admin.start()
    try:
        described = await admin.describe_topics([topics.orders_topic, topics.dead_letter_topic])
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topics.orders_topic)]
        )
    finally:
        await admin.close()
    partitions = {t["topic"]: len(t["partitions"]) for t in described}
    assert partitions == {topics.orders_topic: 3, topics.dead_letter_topic: 1}
    configs = {
        entry[0]: entry[1]
        for response in responses
        for resource in response.resources
        for entry in resource[4]
    }
    assert configs["retention.ms"] == "-1"
    assert configs["retention.bytes"] == "-1"
    assert configs["cleanup.policy"] == "delete"


async def test_an_unreachable_broker_is_one_clear_line(make_settings: MakeSettings) -> None:
    address = f"127.0.0.1:{free_port()}"
    settings = make_settings(kafka_bootstrap_servers=address)
    with pytest.raises(DependencyUnavailable) as down:
        await ensure_topics(address, topic_specs(settings), timeout=5)
    message = str(down.value)
    assert "\n" not in message
    assert address in message
    assert "KAFKA_BOOTSTRAP_SERVERS" in message


def test_an_unreachable_database_is_one_clear_line() -> None:
    port = free_port()
    with pytest.raises(DependencyUnavailable) as down:
        connect(f"postgresql://postgres@127.0.0.1:{port}/oee", timeout=2)
    message = str(down.value)
    assert "\n" not in message
    assert f"127.0.0.1:{port}/oee" in message
    assert "DATABASE_URL" in message


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    """A database of its own on the session's server, dropped afterwards."""
    name = f"migrate_{uuid.uuid4().hex[:10]}"
    with connect(database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield psycopg.conninfo.make_conninfo(database_url, dbname=name)
    finally:
        with connect(database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migration_rows(url: str) -> list[tuple[Any, ...]]:
    with connect(url) as conn:
        return conn.execute(
            "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
        ).fetchall()


def test_migrating_twice_applies_nothing_the_second_time(empty_database: str) -> None:
    expected = [(m.version, m.name) for m in load_migrations()]
    first = migrate(empty_database)
    assert [(m.version, m.name) for m in first] == expected
    rows = migration_rows(empty_database)
    assert [(v, n) for v, n, _ in rows] == expected

    assert migrate(empty_database) == []
    assert migration_rows(empty_database) == rows  # applied_at untouched too
    with connect(empty_database) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables"
            " WHERE table_schema = 'read_model'"
            " AND table_name IN ('orders', 'order_events', 'log_positions')"
        ).fetchone()
    assert tables == (3,)


def test_the_session_database_is_fully_migrated(database_url: str) -> None:
    assert migrate(database_url) == []
    assert [r[0] for r in migration_rows(database_url)] == [m.version for m in load_migrations()]


def record_fetch_waits(consumer: AIOKafkaConsumer) -> list[FetchWait]:
    """What each fetch of a started consumer waits for, from now on (one in flight at once)."""
    fetcher = consumer._fetcher
    asked: list[FetchWait] = []
    fetch = fetcher._proc_fetch_request

    async def recording(assignment: Any, node_id: int, request: Any) -> bool:
        # The request was built from these.
        asked.append(FetchWait(fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms))
        return bool(await fetch(assignment, node_id, request))

    fetcher._proc_fetch_request = recording
    return asked


async def test_the_projectors_reader_batches_its_fetches_only_while_records_flow(
    topics: Settings, producer: AIOKafkaProducer
) -> None:
    topic = topics.orders_topic
    tps = [TopicPartition(topic, p) for p in range(topics.orders_topic_partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=servers(topics), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        batch_fetches_while_busy(consumer)
        asked = record_fetch_waits(consumer)
        idle = FetchWait(1, 500)  # aiokafka's defaults, which this consumer keeps

        await asyncio.sleep(1.2)
        assert 1 <= len(asked) <= 4, "an idle reader polls as rarely as before"
        assert set(asked) == {idle}

        sent = [
            await producer.send(topic, value=f"{i}".encode(), key=f"k{i % 7}".encode())
            for i in range(300)
        ]
        await producer.flush()
        metadata = [await s for s in sent]
        before_records = len(asked)
        received = await drain(consumer, 300)
        await asyncio.sleep(1.2)
        after = asked[before_records:]
        busy = FetchWait(BUSY_FETCH_MIN_BYTES, BUSY_FETCH_MAX_WAIT_MS)
        # The fetch in flight when records came had the idle wait (the first record after a
        # quiet spell is not held back); the next one waited for more; an empty one ended it.
        assert after[0] == busy, "records flowing make the next fetch wait for more"
        assert after[-1] == idle
        assert len(after) <= 6, f"back to idle polling, not {len(after)} fetches in 1.2 s"
    finally:
        await consumer.stop()
    by_partition: dict[int, list[int]] = {}
    for record in received:
        by_partition.setdefault(record.partition, []).append(record.offset)
    assert sorted((m.partition, m.offset) for m in metadata) == sorted(
        (p, o) for p, offsets in by_partition.items() for o in offsets
    )
    assert all(offsets == sorted(offsets) for offsets in by_partition.values())
