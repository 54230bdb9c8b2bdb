"""Poison written straight to the order log, between real orders, with the whole system running."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import RecordMetadata

from schemas import codec
from schemas.envelope import Envelope, genesis_hash
from schemas.events import OrderCompleted, OrderSubmitted
from services.common.kafka import dead_letter_summary, durable_producer, start_producer
from services.common.settings import Settings
from tests.e2e.system import System
from tests.reliability.support import (
    Load,
    assert_exactly_once_despite_poison,
    router_ready,
    wait_all_final,
)


def poison_records() -> list[tuple[bytes, bytes, str]]:
    """(key, value, part of the reason) for each kind of record no consumer may apply."""
    first = uuid.uuid4()
    submitted = OrderSubmitted(
        token_in="SOL", token_out="USDC", amount=Decimal(1), slippage=Decimal("0.01")
    )
    good = orjson.loads(codec.encode(Envelope.new(
        order_id=first, sequence=1, producer="test", prev_hash=genesis_hash(first),
        payload=submitted,
    )))  # fmt: skip
    negative = {**good, "payload": {**good["payload"], "amount": "-5"}}
    early = uuid.uuid4()
    completed = codec.encode(Envelope.new(
        order_id=early, sequence=1, producer="test", prev_hash=genesis_hash(early),
        payload=OrderCompleted(
            tx_hash="T" * 88, selected_dex="RAYDIUM", amount_in=Decimal(1), amount_out=Decimal(150),
            executed_price=Decimal(150), fee=Decimal("0.0025"),
        ),
    ))  # fmt: skip
    return [
        (str(uuid.uuid4()).encode(), b"\xff\xfe garbage \x00", "not JSON"),
        (
            str(first).encode(),
            orjson.dumps({**good, "type": "OrderTeleported"}),
            "unknown event type",
        ),
        (str(first).encode(), orjson.dumps({**good, "version": 99}), "v99 is newer"),
        (str(first).encode(), orjson.dumps(negative), "amount"),
        (str(early).encode(), completed, "first event is OrderCompleted"),
    ]


async def dead_letters(settings: Settings) -> list[Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(settings.dead_letter_topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        letters: list[Any] = []
        while await consumer.position(tp) < end:
            for batch in (await consumer.getmany(tp, timeout_ms=500)).values():
                letters += batch
        return letters
    finally:
        await consumer.stop()


async def test_poison_is_dead_lettered_by_router_and_projector_and_orders_around_it_complete(
    start_system: Any,
) -> None:
    system: System = await start_system()
    await router_ready(system)
    settings = system.settings
    load = Load([system.base_url])
    servers = str(settings.kafka_bootstrap_servers)
    producer = durable_producer(servers, client_id="test-poisoner")
    await start_producer(producer, servers)
    written: dict[str, tuple[bytes, bytes, str]] = {}
    try:
        for key, value, reason in poison_records():
            await load.run(20, concurrency=4, pause=0)
            where: RecordMetadata = await producer.send_and_wait(
                settings.orders_topic, value=value, key=key
            )
            written[f"{settings.orders_topic}/{where.partition}/{where.offset}"] = (
                key,
                value,
                reason,
            )
        await load.run(20, concurrency=4, pause=0)
    finally:
        await producer.stop()

    # The orders written before, between and after the poison all finish, once.
    assert len(load.accepted) == 120, load.outcomes
    await wait_all_final(system, load.accepted, timeout=60)
    await assert_exactly_once_despite_poison(system, load.accepted)

    # Each poison record is parked by both consumer groups, byte for byte, with its reason.
    consumers = {settings.router_group, settings.projector_group}

    async def parked() -> dict[str, list[dict[str, str]]]:
        found: dict[str, list[dict[str, str]]] = {}
        for letter in await dead_letters(settings):
            headers = dead_letter_summary(letter.headers)
            key, value, _ = written.get(headers["dlq.source"], (None, None, ""))
            assert (letter.key, letter.value) == (key, value), headers
            found.setdefault(headers["dlq.source"], []).append(headers)
        return found

    for _ in range(100):
        letters = await parked()
        if all({h["dlq.consumer"] for h in letters.get(s, [])} == consumers for s in written):
            break
        await asyncio.sleep(0.2)
    assert letters.keys() == written.keys()
    for source, (_, _, reason) in written.items():
        assert {h["dlq.consumer"] for h in letters[source]} == consumers, letters[source]
        assert len(letters[source]) == 2, letters[source]  # parked once per consumer, not per retry
        assert all(reason in h["dlq.reason"] for h in letters[source]), letters[source]
