"""Helpers for the API tests: an in-process server on the session's real Kafka and PostgreSQL,
a log writer for hand-made events, and the real projector."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from infra.kafka.launcher import free_port
from schemas import codec
from schemas.envelope import Envelope, record_hash
from schemas.events import OrderEvent
from services.api.main import create_app
from services.api.runtime import ApiRuntime
from services.common.kafka import ensure_topics, topic_specs
from services.common.settings import Settings
from tests.builders import completed, leg, quote, route_plan, routed_and_sent
from tests.fixtures.projector import eventually as eventually  # re-exported for the API tests
from tests.fixtures.projector import projector_running as projector_running
from tests.fixtures.settings import MakeSettings


class _InProcessServer(uvicorn.Server):
    """uvicorn without its signal handlers: the test runner owns Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningApi:
    settings: Settings
    runtime: ApiRuntime
    base_url: str
    ws_url: str
    http: httpx.AsyncClient


@contextlib.asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[RunningApi]:
    """Start the runtime, serve the app with uvicorn, and stop both afterwards."""
    await ensure_topics(str(settings.kafka_bootstrap_servers), topic_specs(settings))
    runtime = await ApiRuntime.start(settings)
    port = free_port()
    server = _InProcessServer(
        uvicorn.Config(
            create_app(settings, runtime),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ws="websockets-sansio",
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "the API server did not start"
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield RunningApi(
                settings, runtime, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", http
            )
    finally:
        server.should_exit = True
        await task
        await runtime.stop()


@pytest.fixture
async def api(make_settings: MakeSettings) -> AsyncIterator[RunningApi]:
    async with running_api(make_settings()) as running:
        yield running


async def read_topic(settings: Settings) -> list[Any]:
    """Every record on the orders topic, from the beginning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        tps = partitions_of(settings)
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records += batch
        return records
    finally:
        await consumer.stop()


def partitions_of(settings: Settings) -> list[TopicPartition]:
    """The topic's partitions, as ensure_topics created them."""
    return [
        TopicPartition(settings.orders_topic, p) for p in range(settings.orders_topic_partitions)
    ]


async def topic_size(settings: Settings) -> int:
    """Sum of the end offsets: how many records were ever written."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        return sum((await consumer.end_offsets(partitions_of(settings))).values())
    finally:
        await consumer.stop()


TX = "4" * 88


def lifecycle() -> list[OrderEvent]:
    """Events 2..5 of a SOL->USDC order of 10 that fills on Raydium."""
    plan = route_plan(
        (leg("RAYDIUM", amount_in=10, amount_out=1500, fee="0.025"),),
        amount_out=1500,
        min_amount_out=1485,
        price_impact="0.001",
        market_slot=1,
        quoted_at=0.0,
    )
    quotes = (quote("RAYDIUM", 1500, "0.025"), quote("METEORA", 1499, "0.03"))
    return [
        *routed_and_sent(plan, quotes, TX, reason="best output"),
        completed(TX, 1500, selected_dex="RAYDIUM", amount_in=10, fee="0.025"),
    ]


@dataclass
class LogWriter:
    """Appends hand-made events to an order, chaining each to the previous record's hash."""

    producer: AIOKafkaProducer
    topic: str
    previous: dict[uuid.UUID, bytes]

    async def append(self, order_id: uuid.UUID, sequence: int, event: OrderEvent) -> Envelope:
        envelope = Envelope.new(
            order_id=order_id,
            sequence=sequence,
            producer="test-router",
            prev_hash=record_hash(self.previous.get(order_id, b"")),
            payload=event,
            occurred_at=datetime.now(UTC),
        )
        value = codec.encode(envelope)
        await self.producer.send_and_wait(self.topic, value=value, key=str(order_id).encode())
        self.previous[order_id] = value
        return envelope


@contextlib.asynccontextmanager
async def log_writer(settings: Settings) -> AsyncIterator[LogWriter]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        yield LogWriter(producer, settings.orders_topic, {})
    finally:
        await producer.stop()
