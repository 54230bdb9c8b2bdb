"""Writes survive aiokafka's broken-sequence state after a broker restart.

aiokafka fails a batch that expires while its partition has no leader only after
giving it a sequence number; the broker never sees that number, so every later
write of that idempotent producer to the partition is refused with
OutOfOrderSequenceNumber. The outage test hits this only in some runs (it needs a
write pending while the broker shuts down), so here the gap is made on purpose,
on a real broker, the way aiokafka makes it: the sequence counter moves on
without a batch being sent.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import OutOfOrderSequenceNumber

from services.common.kafka import RenewingProducer, ensure_topics, topic_specs
from tests.fixtures.settings import MakeSettings


@contextlib.asynccontextmanager
async def started_producer(
    make_settings: MakeSettings, linger_ms: int
) -> AsyncIterator[tuple[RenewingProducer, str, str]]:
    """(a started producer, the broker, the orders topic), stopped afterwards."""
    settings = make_settings()
    servers = settings.kafka_bootstrap_servers
    assert servers is not None
    await ensure_topics(servers, topic_specs(settings))
    producer = RenewingProducer(servers, client_id="oee-test-renewal", linger_ms=linger_ms)
    await producer.start()
    try:
        yield producer, servers, settings.orders_topic
    finally:
        await producer.stop()


def skip_a_sequence_number(producer: RenewingProducer, tp: TopicPartition) -> AIOKafkaProducer:
    """Break the current producer's sequence on `tp` as aiokafka does to a batch it fails
    unsent (the number moves on regardless); the broken producer."""
    broken = producer.current
    assert broken._txn_manager is not None
    broken._txn_manager.increment_sequence_number(tp, 1)
    return broken


async def test_a_producer_whose_sequence_numbers_broke_is_replaced_and_nothing_is_doubled(
    make_settings: MakeSettings,
) -> None:
    async with started_producer(make_settings, linger_ms=0) as (producer, servers, topic):
        first = await producer.send_and_wait(topic, value=b"first", key=b"order")
        tp = TopicPartition(topic, first.partition)
        broken = skip_a_sequence_number(producer, tp)

        with pytest.raises(OutOfOrderSequenceNumber):
            await producer.send_and_wait(topic, value=b"second", key=b"order")
        assert producer.current is not broken  # replaced, by the failed write itself
        await producer.send_and_wait(topic, value=b"second", key=b"order")  # the retry lands
        await producer.send_and_wait(topic, value=b"third", key=b"order")

    assert await values_on(servers, tp) == [b"first", b"second", b"third"]


async def values_on(servers: str, tp: TopicPartition) -> list[bytes | None]:
    """Every record value of one partition, from its start to its current end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        values: list[bytes | None] = []
        while await consumer.position(tp) < end:
            for message in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                values.append(message.value)
        return values
    finally:
        await consumer.stop()


async def test_records_sent_together_land_in_order_and_a_broken_sequence_renews_them_too(
    make_settings: MakeSettings,
) -> None:
    # The router appends an order's routed and built events together (send_all_and_wait).
    async with started_producer(make_settings, linger_ms=5) as (producer, servers, topic):
        written = await producer.send_all_and_wait(topic, values=[b"a", b"b", b"c"], key=b"o")
        tp = TopicPartition(topic, written[0].partition)
        assert [w.offset for w in written] == [written[0].offset + i for i in range(3)]
        broken = skip_a_sequence_number(producer, tp)

        with pytest.raises(OutOfOrderSequenceNumber):
            await producer.send_all_and_wait(topic, values=[b"d", b"e"], key=b"o")
        assert producer.current is not broken
        await producer.send_all_and_wait(topic, values=[b"d", b"e"], key=b"o")  # the retry

    assert await values_on(servers, tp) == [b"a", b"b", b"c", b"d", b"e"]
