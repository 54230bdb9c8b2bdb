"""The router in-process on the real broker and database: orders in, final states out."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from schemas import codec
from schemas.events import OrderCompleted, OrderSubmitted
from services.common.db import connect
from services.common.kafka import durable_producer, ensure_topics, start_producer, topic_specs
from services.common.settings import Settings
from tests.builders import next_envelope, submitted
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
