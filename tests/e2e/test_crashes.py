"""SIGKILL the router and the projector under load: nothing lost, executed or applied twice.

Ends with `oee replay verify`: read models rebuilt from the log equal the live ones.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.system import System, eventually, order_payload, read_log, wait_all_final
from tests.e2e.test_order_flow import assert_log_matches_read_models


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
