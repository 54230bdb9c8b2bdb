"""The router in-process on the real broker and database: orders in, final states out."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiokafka.partitioner import DefaultPartitioner

from schemas import codec
from schemas.events import OrderCompleted, OrderSubmitted
from services.common.db import connect, migrate
from services.common.kafka import durable_producer, ensure_topics, start_producer, topic_specs
from services.common.settings import Settings
from tests.builders import (
    completed,
    encoded_chain,
    next_envelope,
    quote,
    route_plan,
    routed_and_sent,
    submitted,
)
from tests.e2e.system import read_log
from tests.fixtures.projector import eventually
from tests.fixtures.router import router_running
from tests.fixtures.settings import MakeSettings
from tests.integration.test_chain_rpc import (  # the node fixtures, shared
    SEED,
    Running,
    chain_db,  # noqa: F401 - a fixture
    running_node,
)
from tests.integration.test_projector import read_topic

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
async def chain(chain_db: str) -> AsyncIterator[Running]:  # noqa: F811 - the fixture imported
    """A chain node in-process (the real programs in LiteSVM) for the router to execute on."""
    async with running_node(chain_db) as running:
        yield running


@pytest.fixture
def router_settings(make_settings: MakeSettings, chain: Running) -> Settings:
    return make_settings(solana_rpc_url=chain.url, chain_seed=SEED)


async def submit(settings: Settings, count: int) -> list[uuid.UUID]:
    """Append `count` SOL->USDC orders' first events, as the API does."""
    servers = str(settings.kafka_bootstrap_servers)
    await ensure_topics(servers, topic_specs(settings))
    producer = durable_producer(servers, client_id="test-router-submit")
    await start_producer(producer, servers)
    ids = [uuid.uuid4() for _ in range(count)]
    try:
        for order_id in ids:
            envelope = next_envelope(order_id, [], submitted(amount=1), start=T0)
            await producer.send_and_wait(
                settings.orders_topic, value=codec.encode(envelope), key=str(order_id).encode()
            )
    finally:
        await producer.stop()
    return ids


async def payloads_by_order(settings: Settings) -> dict[uuid.UUID, list[type]]:
    found: dict[uuid.UUID, list[type]] = defaultdict(list)
    for _, _, envelope in await read_log(settings):
        found[envelope.order_id].append(type(envelope.payload))
    return found


async def test_the_router_executes_each_order_once_and_records_where_to_resume(
    router_settings: Settings,
) -> None:
    settings = router_settings
    ids = await submit(settings, 6)

    async with router_running(settings) as runtime:

        async def all_completed() -> dict[uuid.UUID, list[type]] | None:
            events = await payloads_by_order(settings)
            done = all(events[i] and events[i][-1] is OrderCompleted for i in ids)
            return events if done else None

        events = await eventually(all_completed, "every order completed", timeout=60)
        assert runtime.router is not None

    for order_id in ids:
        kinds = events[order_id]
        assert kinds[0] is OrderSubmitted
        assert kinds.count(OrderCompleted) == 1, kinds  # one final state, executed once
    with connect(str(settings.database_url)) as conn:
        rows = conn.execute(
            "SELECT partition, resume_offset FROM router.resume_positions WHERE topic = %s",
            (settings.orders_topic,),
        ).fetchall()
    # Every partition was assigned to this router, and its resume position was saved on stop.
    assert {p for p, _ in rows} == set(range(settings.orders_topic_partitions))


async def test_a_second_router_resumes_without_executing_anything_again(
    router_settings: Settings,
) -> None:
    settings = router_settings
    ids = await submit(settings, 3)
    async with router_running(settings):
        await eventually(
            lambda: _all_final(settings, ids), "the first router's orders final", timeout=60
        )
    before = await payloads_by_order(settings)

    more = await submit(settings, 2)
    async with router_running(settings):
        await eventually(
            lambda: _all_final(settings, more), "the second router's orders final", timeout=60
        )
    after = await payloads_by_order(settings)
    for order_id in ids:
        assert after[order_id] == before[order_id]  # nothing appended to finished orders
    for order_id in more:
        assert after[order_id].count(OrderCompleted) == 1


async def _all_final(settings: Settings, ids: list[uuid.UUID]) -> bool:
    events = await payloads_by_order(settings)
    return all(events[i] and events[i][-1] is OrderCompleted for i in ids)


async def test_a_router_taking_a_partition_over_reads_the_tail_of_an_order_finished_before_it(
    router_settings: Settings,
) -> None:
    """Bug 6, on a real broker: the stored resume position (an unfinished order's
    submission) lies between another order's submission and its later events, as when
    that order's run ended before its router had read its own events back. The router
    taking the partition over must resume the unfinished order and dead-letter nothing."""
    settings = router_settings
    servers = str(settings.kafka_bootstrap_servers)
    await ensure_topics(servers, topic_specs(settings))
    done, pending = _two_orders_of_one_partition(settings.orders_topic_partitions)
    signature = "D" * 88
    attempt = routed_and_sent(route_plan(), [quote()], signature, reason="best single venue")
    done_records = encoded_chain(
        done, [submitted(amount=1), *attempt, completed(signature, 150, amount_in=1)], start=T0
    )
    pending_records = encoded_chain(pending, [submitted(amount=1)], start=T0)
    log = [(done, done_records[0]), (pending, pending_records[0])]
    log += [(done, value) for value in done_records[1:]]
    producer = durable_producer(servers, client_id="test-router-tail")
    await start_producer(producer, servers)
    try:
        written = [
            await producer.send_and_wait(
                settings.orders_topic, value=value, key=str(order_id).encode()
            )
            for order_id, value in log
        ]
    finally:
        await producer.stop()
    migrate(str(settings.database_url))
    with connect(str(settings.database_url)) as conn:  # what the previous owner saved
        conn.execute(
            "INSERT INTO router.resume_positions (topic, partition, resume_offset)"
            " VALUES (%s, %s, %s)",
            (settings.orders_topic, written[1].partition, written[1].offset),
        )

    async with router_running(settings):
        await eventually(
            lambda: _all_final(settings, [pending]), "the unfinished order final", timeout=60
        )

    assert await read_topic(settings, settings.dead_letter_topic) == []
    assert len({metadata.partition for metadata in written}) == 1
    events = await payloads_by_order(settings)
    assert events[done] == [type(codec.decode(value).payload) for value in done_records]
    assert events[pending].count(OrderCompleted) == 1


def _two_orders_of_one_partition(partitions: int) -> tuple[uuid.UUID, uuid.UUID]:
    """Two order ids whose keys the producers' partitioner puts on the same partition."""
    partitioner = DefaultPartitioner()
    every = list(range(partitions))
    first = uuid.uuid4()
    target = partitioner(str(first).encode(), every, every)
    while True:
        second = uuid.uuid4()
        if partitioner(str(second).encode(), every, every) == target:
            return first, second
