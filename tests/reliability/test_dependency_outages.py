"""Kafka or PostgreSQL stopped for ten seconds under load, then started again.

These stop the session's shared broker or database, so they restart it in a
`finally` and wait until it answers before anything else runs. The processes run
supervised, as under `oee up`; each test ends by checking that none needed a restart.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.kafka.launcher import KafkaBroker
from infra.postgres.launcher import EmbeddedPostgres
from services.common.settings import Settings
from tests.e2e.system import System, eventually, order_payload
from tests.e2e.test_order_flow import assert_log_matches_read_models
from tests.reliability.support import (
    Load,
    kafka_answers,
    orders_on_log,
    router_ready,
    wait_all_final,
)

OUTAGE_SECONDS = 10.0
# The API waits at most produce_timeout_seconds for the log; "a few seconds" on top is the bound.
ANSWER_WITHIN = Settings().produce_timeout_seconds + 2.0
READ_ANSWER_WITHIN = 5.0


async def timed_post(
    client: httpx.AsyncClient, url: str, **payload: Any
) -> tuple[httpx.Response, float]:
    began = time.monotonic()
    response = await client.post(f"{url}/api/orders/execute", json=order_payload(**payload))
    return response, time.monotonic() - began


@pytest.mark.slow
async def test_kafka_down_ten_seconds_is_503_then_everything_accepted_completes(
    start_system: Any, broker: KafkaBroker
) -> None:
    # Supervised as under `oee up`, so a restart would be seen (and counted), not fatal.
    system: System = await start_system(venue_latency="realistic", supervise=True)
    ready = await router_ready(system)
    load = Load([system.base_url])
    await load.run(150, concurrency=10)  # accepted, and mostly still in flight when Kafka goes
    accepted_before = set(load.accepted)
    assert len(accepted_before) == 150, load.outcomes

    tag = uuid.uuid4().hex[:8]
    answers: list[tuple[str, int, str | None, float]] = []
    await asyncio.to_thread(broker.stop)
    try:
        down_since = time.monotonic()
        async with httpx.AsyncClient(timeout=30) as client:

            async def keep_trying(worker: int) -> None:
                attempt = 0
                while time.monotonic() - down_since < OUTAGE_SECONDS:
                    key = f"outage-{tag}-{worker}-{attempt}"
                    response, took = await timed_post(client, system.base_url, clientOrderId=key)
                    answers.append(
                        (key, response.status_code, response.headers.get("retry-after"), took)
                    )
                    attempt += 1

            await asyncio.gather(*(keep_trying(w) for w in range(4)))
            health = await client.get(f"{system.base_url}/health", timeout=10)
    finally:
        broker.start()
    await eventually(lambda: kafka_answers(broker.bootstrap_servers), timeout=60, what="Kafka back")

    # During the outage: refused, promptly, with a hint when to come back; never a 202.
    assert answers
    assert {status for _, status, _, _ in answers} == {503}, answers
    assert all(retry_after and retry_after.isdigit() for _, _, retry_after, _ in answers), answers
    slowest = max(took for *_, took in answers)
    assert slowest < ANSWER_WITHIN, f"a refusal took {slowest:.1f}s"
    assert health.status_code == 503
    assert health.json()["dependencies"]["kafka"]["status"] == "down"

    # After: a client retrying with the same key gets the order, once per key.
    refused_keys = [key for key, *_ in answers]
    async with httpx.AsyncClient(timeout=30) as client:
        retried: dict[str, str] = {}

        async def retry(key: str) -> None:
            async def accepted() -> bool:
                response = await client.post(
                    f"{system.base_url}/api/orders/execute", json=order_payload(clientOrderId=key)
                )
                if response.status_code == 202:
                    retried[key] = response.json()["orderId"]
                    return True
                assert response.status_code == 503, response.text
                return False

            await eventually(
                accepted, timeout=60, what=f"{key} accepted after Kafka came back", system=system
            )

        await asyncio.gather(*(retry(key) for key in refused_keys))
    await load.run(60, concurrency=6)
    assert len(load.accepted) == 210, load.outcomes

    # The router and projector resumed by themselves: every order final, once, nothing lost.
    on_log = await orders_on_log(system)
    assert load.accepted | set(retried.values()) <= on_log
    # A refused write may still reach the log once Kafka is back (the API had handed it to
    # its producer); with a key, the retry is that same order, never a second one.
    assert on_log - load.accepted - ready <= set(retried.values())
    await eventually(
        lambda: projector_caught_up(system.settings),
        timeout=60,
        what="projector caught up",
        system=system,
    )
    await wait_all_final(system, on_log, timeout=90)
    await assert_log_matches_read_models(system, on_log)
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(f"{system.base_url}/health")).status_code == 200
    assert_resumed_in_process(system)


@pytest.mark.slow
async def test_postgres_down_ten_seconds_reads_are_503_writes_go_on_projector_catches_up(
    start_system: Any, pg_server: EmbeddedPostgres
) -> None:
    system: System = await start_system(venue_latency="realistic", supervise=True)
    ready = await router_ready(system)
    load = Load([system.base_url])
    await load.run(150, concurrency=10)
    known = next(iter(load.accepted))

    reads: list[tuple[int, str | None, float]] = []
    await asyncio.to_thread(pg_server.stop)
    try:
        down_since = time.monotonic()
        async with httpx.AsyncClient(timeout=30) as client:

            async def keep_reading() -> None:
                while time.monotonic() - down_since < OUTAGE_SECONDS:
                    began = time.monotonic()
                    response = await client.get(f"{system.base_url}/api/orders/{known}")
                    error = response.json().get("error") if response.status_code != 200 else None
                    reads.append((response.status_code, error, time.monotonic() - began))
                    await asyncio.sleep(0.2)

            during = Load([system.base_url])
            submitting = asyncio.create_task(during.run(80, concurrency=4, pause=0.1))
            await keep_reading()
            await submitting
    finally:
        await asyncio.to_thread(pg_server.start)

    # The log does not need PostgreSQL: every submission during the outage was accepted.
    assert during.outcomes == {"202": 80}, during.outcomes
    assert {(status, error) for status, error, _ in reads} == {(503, "READ_MODEL_UNAVAILABLE")}, (
        reads
    )
    assert max(took for *_, took in reads) < READ_ANSWER_WITHIN, reads

    # The projector waited and caught up by itself, whatever the router does.
    await eventually(
        lambda: projector_caught_up(system.settings),
        timeout=60,
        what="projector caught up",
        system=system,
    )
    everything = ready | load.accepted | during.accepted
    assert await orders_on_log(system) == everything
    await wait_all_final(system, everything, timeout=60)
    await assert_log_matches_read_models(system, everything)
    assert_resumed_in_process(system)


def assert_resumed_in_process(system: System) -> None:
    """No process had to be restarted: each waited out the outage and carried on by itself."""
    assert not system.restarts, f"restarted by the supervisor: {dict(system.restarts)}\n" + (
        system.logs()
    )


async def projector_caught_up(settings: Settings) -> bool:
    """The projector's stored positions equal the log's end offsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        tps = [
            TopicPartition(settings.orders_topic, p)
            for p in range(settings.orders_topic_partitions)
        ]
        ends = {tp.partition: end for tp, end in (await consumer.end_offsets(tps)).items() if end}
    finally:
        await consumer.stop()
    try:
        async with await psycopg.AsyncConnection.connect(str(settings.database_url)) as conn:
            cursor = await conn.execute(
                "SELECT partition, next_offset FROM read_model.log_positions WHERE topic = %s",
                (settings.orders_topic,),
            )
            return dict(await cursor.fetchall()) == ends
    except psycopg.OperationalError:
        return False
