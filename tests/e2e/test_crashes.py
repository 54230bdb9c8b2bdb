"""SIGKILL the router, the projector and the chain under load: nothing lost, executed or applied
twice.

Ends with `oee replay verify`: read models rebuilt from the log equal the live ones.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from services.common.kafka import log_reader
from tests.e2e.system import System, eventually, order_payload, read_log, wait_all_final
from tests.e2e.test_order_flow import assert_log_matches_read_models
from tests.fixtures.settings import unique
from tests.integration.api.test_conditional_orders import Ticks

KILLS = 1  # each kill costs the node's restart (~3-5 s on 2 shared cores); one proves the point
PAIRS = [
    ("SOL", "USDC", "0.2"),
    ("USDC", "SOL", "20"),
    ("JUP", "SOL", "10"),
    ("BONK", "USDC", "50000"),
]


@pytest.mark.slow
async def test_router_and_projector_killed_mid_load(start_system: Any) -> None:
    # Realistic venue latency keeps orders in flight for ~2-3 s, so kills land mid-swap.
    # A database of its own: replay verify compares every row of the live read models.
    system: System = await start_system(
        venue_latency="realistic", venue_failure_rate="0.1", own_database=True
    )
    rng = random.Random(7)
    order_ids: set[str] = set()

    async with httpx.AsyncClient(timeout=30) as client:

        async def submit_some(count: int) -> None:
            for _ in range(count):
                response = await client.post(
                    f"{system.base_url}/api/orders/execute", json=order_payload(amount="0.2")
                )
                assert response.status_code == 202, response.text
                order_ids.add(response.json()["orderId"])
                await asyncio.sleep(0.01)

        async def a_swap_in_flight() -> bool:
            # 'submitted': the swap is sent and its 2-3 s confirmation not yet heard back.
            with psycopg.connect(str(system.settings.database_url)) as conn:
                row = conn.execute(
                    "SELECT 1 FROM read_model.orders"
                    " WHERE id = ANY(%s::uuid[]) AND status = 'submitted' LIMIT 1",
                    (list(order_ids),),
                ).fetchone()
            return row is not None

        load = asyncio.create_task(submit_some(300))
        for victim in ("router", "projector", "router"):
            await asyncio.sleep(rng.uniform(1.0, 2.5))
            if victim == "router":
                # Kill between sending a swap and recording its result, the case that matters.
                await eventually(
                    a_swap_in_flight, timeout=30, what="a swap in flight", system=system,
                    interval=0.05,
                )  # fmt: skip
            system.kill(victim)
            await asyncio.sleep(rng.uniform(0.1, 1.0))
            system.start(victim)
        await load

    await wait_all_final(system, order_ids, timeout=120, interval=1)
    await assert_log_matches_read_models(system, order_ids)

    # Some orders were submitted to the chain by a router that was then killed, and
    # completed by its successor: the crash-between-send-and-confirm case, one fill each.
    producers: dict[str, dict[str, str]] = defaultdict(dict)
    for _, _, envelope in await read_log(system.settings):
        producers[str(envelope.order_id)][envelope.type] = envelope.producer
    handed_over = [
        o for o in order_ids
        if "OrderCompleted" in producers[o]
        and producers[o]["TransactionSubmitted"] != producers[o]["OrderCompleted"]
    ]  # fmt: skip
    assert handed_over, "no order was resumed by a restarted router after its swap was sent"
    # The projector killed mid-batch applied nothing twice and skipped nothing: a rebuild agrees.
    await system.assert_replay_verifies()


@pytest.mark.slow
async def test_chain_killed_under_steady_load_every_order_ends_once(start_system: Any) -> None:
    """SIGKILL of `oee chain` while orders arrive at a steady rate, then a restart.

    A kill loses the node's queued, unlanded transactions and leaves routers mid-confirmation;
    the restarted node resumes at its last committed block (the state in PostgreSQL) and
    refuses no valid blockhash. Routers wait (`ChainUnreachable`) and re-send the recorded
    bytes. Every 202 ends in exactly one final state, no order's swap lands twice (from the
    node's own `svm.transactions`), and `oee replay verify` finds no difference.
    """
    system: System = await start_system(
        venue_latency="realistic", venue_failure_rate="0.1", own_database=True
    )
    rng = random.Random(17)
    order_ids: set[str] = set()
    outcomes: Counter[int] = Counter()
    stop = asyncio.Event()
    kills: list[tuple[float, float]] = []  # (killed at, answering again at), wall clock

    async with httpx.AsyncClient(timeout=30) as client:

        async def steady(rate: float) -> None:
            """One order every 1/rate seconds, each in its own task, until told to stop."""
            pending: set[asyncio.Task[None]] = set()

            async def one(n: int) -> None:
                token_in, token_out, amount = PAIRS[n % len(PAIRS)]
                response = await client.post(
                    f"{system.base_url}/api/orders/execute",
                    json=order_payload(token_in, token_out, amount),
                )
                outcomes[response.status_code] += 1
                if response.status_code == 202:
                    order_ids.add(response.json()["orderId"])

            n = 0
            while not stop.is_set():
                task = asyncio.create_task(one(n))
                pending.add(task)
                task.add_done_callback(pending.discard)
                n += 1
                await asyncio.sleep(1 / rate)
            await asyncio.gather(*pending)

        async def a_swap_in_flight() -> bool:
            with psycopg.connect(str(system.settings.database_url)) as conn:
                row = conn.execute(
                    "SELECT 1 FROM read_model.orders"
                    " WHERE id = ANY(%s::uuid[]) AND status = 'submitted' LIMIT 1",
                    (list(order_ids),),
                ).fetchone()
            return row is not None

        load = asyncio.create_task(steady(rate=15))
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(2.0, 3.0))
            await eventually(
                a_swap_in_flight, timeout=30, what="a swap in flight", system=system,
                interval=0.05,
            )  # fmt: skip
            killed_at = time.time()
            system.kill("chain")
            await asyncio.sleep(rng.uniform(1.5, 3.0))  # orders keep arriving meanwhile
            system.start("chain")
            await system.wait_chain()
            kills.append((killed_at, time.time()))
        await asyncio.sleep(1.0)
        stop.set()
        await load

    assert set(outcomes) == {202}, outcomes  # the API never needed the chain to accept
    await wait_all_final(system, order_ids, timeout=120, interval=1)
    finals = await assert_log_matches_read_models(system, order_ids)

    # Orders whose signed transaction was recorded before a kill and that completed only after
    # the node came back: confirmed across the chain's crash, by re-sending the same bytes.
    log = [e for _, _, e in await read_log(system.settings) if str(e.order_id) in order_ids]
    submitted_at: dict[str, float] = {}
    completed_at: dict[str, float] = {}
    for envelope in log:
        order_id, at = str(envelope.order_id), envelope.occurred_at.timestamp()
        if envelope.type == "TransactionSubmitted":
            submitted_at[order_id] = at
        elif envelope.type == "OrderCompleted":
            completed_at[order_id] = at
    across = {
        o
        for o, done in completed_at.items()
        for killed, back in kills
        if submitted_at[o] < killed and done > back
    }
    retried = {str(e.order_id) for e in log if e.type == "OrderRetrying"}
    counts = Counter(finals.values())
    print(
        f"\nchain kill: {len(order_ids)} orders, {dict(counts)}, {len(retried)} retried,"
        f" {len(across)} signed before a kill and completed after the restart,"
        f" outages {[round(back - killed, 1) for killed, back in kills]} s"
    )
    assert across, "no order in flight at a chain kill was completed after its restart"
    assert counts["completed"] >= 0.9 * len(order_ids), counts
    await system.assert_replay_verifies()


MASS = 300  # stops crossed by one tick


@pytest.mark.slow
async def test_triggers_and_router_killed_during_a_mass_trigger(start_system: Any) -> None:
    """SIGKILL of `oee triggers` while it appends the triggers of 300 stops one tick crossed,
    then of `oee router` while it executes them, each restarted: every order is triggered once
    and executed once (its history on the log, the chain's own record), and `oee replay
    verify` finds no difference."""
    system: System = await start_system(
        processes=("chain", "projector", "router", "api", "triggers"),
        own_database=True,
        market_ticks_topic=unique("market.ticks"),
        triggers_metrics_port=0,
    )
    triggers_log = system.log_dir / "triggers.log"

    async def engine_recovered(times: int) -> bool:
        return triggers_log.read_text().count("trigger engine recovered") >= times

    await eventually(lambda: engine_recovered(1), what="the trigger engine up", system=system)
    producer = AIOKafkaProducer(bootstrap_servers=system.settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        ticks = Ticks(system.settings, producer)
        async with httpx.AsyncClient(base_url=system.base_url, timeout=30) as client:
            quote = await client.get(
                "/api/quote", params={"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"}
            )
            market = Decimal(quote.json()["amountOut"])
            stop = (market / 2).quantize(Decimal("0.01"))
            await ticks.send(market)  # the engine checks new orders at the last price: no cross
            limits = asyncio.Semaphore(50)

            async def submit() -> str:
                async with limits:
                    response = await client.post(
                        "/api/orders/execute",
                        json=order_payload(amount="0.01", orderType="stop", triggerPrice=str(stop)),
                    )
                assert response.status_code == 202, response.text
                return str(response.json()["orderId"])

            order_ids = set(await asyncio.gather(*(submit() for _ in range(MASS))))

        def count(*statuses: str) -> int:
            with psycopg.connect(str(system.settings.database_url)) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM read_model.orders"
                    " WHERE id = ANY(%s::uuid[]) AND status = ANY(%s)",
                    (list(order_ids), list(statuses)),
                ).fetchone()
            return int(row[0]) if row else 0

        async def all_open() -> bool:
            return count("open") == MASS

        await eventually(all_open, what="all stops open", system=system, timeout=60)
        # The engine folds the log on its own: let it see the last orders before the tick.
        await asyncio.sleep(1.0)
        watcher = log_reader(str(system.settings.kafka_bootstrap_servers), client_id="watch")
        await watcher.start()
        try:
            tps = [TopicPartition(system.settings.orders_topic, p)
                   for p in range(system.settings.orders_topic_partitions)]  # fmt: skip
            watcher.assign(tps)
            await watcher.seek_to_end(*tps)
            for tp in tps:
                await watcher.position(tp)
            crossing = stop / 2
            await ticks.send(crossing)
            # Killed as soon as the first of its triggers is on the log: mid-append or just
            # after, before the router or the projector has done much with them.
            triggered_at_kill = 0
            while not triggered_at_kill:
                batches = await watcher.getmany(timeout_ms=20)
                triggered_at_kill = sum(
                    b'"OrderTriggered"' in (record.value or b"")
                    for batch in batches.values()
                    for record in batch
                )
            system.kill("triggers")
        finally:
            await watcher.stop()
        system.start("triggers")
        await eventually(lambda: engine_recovered(2), what="the engine back", system=system)

        async def a_swap_in_flight() -> bool:
            await ticks.send(crossing)  # the restarted engine reads ticks from their end
            return count("submitted") > 0

        await eventually(a_swap_in_flight, what="a swap in flight", system=system, interval=0.05)
        system.kill("router")
        system.start("router")

        async def all_final() -> bool:
            await ticks.send(crossing)
            return count("completed", "failed") == MASS

        await eventually(all_final, what="every stop final", system=system, timeout=180)
    finally:
        await producer.stop()

    finals = await assert_log_matches_read_models(system, order_ids)  # one swap landed each
    histories: dict[str, dict[int, str]] = defaultdict(dict)
    raw_triggers: Counter[str] = Counter()
    for _, _, envelope in await read_log(system.settings):
        if str(envelope.order_id) in order_ids:
            histories[str(envelope.order_id)].setdefault(envelope.sequence, envelope.type)
            raw_triggers[envelope.type] += envelope.type == "OrderTriggered"
    for order_id in order_ids:
        history = list(histories[order_id].values())
        assert history.count("OrderTriggered") == 1, history
        assert history[:2] == ["OrderSubmitted", "OrderTriggered"], history
    counts = Counter(finals.values())
    print(
        f"\nmass trigger: {MASS} stops, the engine killed when {triggered_at_kill} triggers"
        f" were read off the log, {dict(counts)},"
        f" {raw_triggers['OrderTriggered']} OrderTriggered records on the log"
    )
    assert counts["completed"] >= 0.9 * MASS, counts
    await system.assert_replay_verifies()
