"""The router's writes survive aiokafka's broken-sequence state after a broker restart.

aiokafka fails a batch that expires while its partition has no leader only after
giving it a sequence number; the broker never sees that number, so every later
write of that idempotent producer to the partition is refused with
OutOfOrderSequenceNumber. The outage test hits this only in some runs (it needs a
write pending while the broker shuts down), so here the gap is made on purpose,
on a real broker, the way aiokafka makes it: the sequence counter moves on
without a batch being sent.
"""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import OutOfOrderSequenceNumber

from services.common.kafka import durable_producer, ensure_topics, start_producer, topic_specs
from services.router.main import RouterRuntime
from tests.fixtures.settings import MakeSettings


async def test_a_producer_whose_sequence_numbers_broke_is_replaced_and_nothing_is_doubled(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    servers = settings.kafka_bootstrap_servers
    assert servers is not None
    topic = settings.orders_topic
    await ensure_topics(servers, topic_specs(settings))
    runtime = RouterRuntime(settings)
    broken = durable_producer(servers, client_id="oee-router-test", linger_ms=0)
    await start_producer(broken, servers)
    runtime.producer = broken
    try:
        first = await broken.send_and_wait(topic, value=b"first", key=b"order")
        tp = TopicPartition(topic, first.partition)
        # What aiokafka does to a batch it fails unsent: the sequence moves on regardless.
        assert broken._txn_manager is not None
        broken._txn_manager.increment_sequence_number(tp, 1)

        with pytest.raises(OutOfOrderSequenceNumber):
            await runtime.write(topic, b"second", b"order")
        assert runtime.producer is not broken  # replaced, by the failed write itself
        await runtime.write(topic, b"second", b"order")  # the caller's retry lands
        await runtime.write(topic, b"third", b"order")
    finally:
        await runtime.stop()

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
