"""SIGKILL of the trigger engine and of the router between a launch and its snipers' buys: each
sniper ends once, completed or failed, and no swap of one lands twice."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from services.chain.launch import launch_and_publish
from services.domain.launch import LaunchSpec, LaunchVenue
from tests.e2e.system import (
    System,
    assert_no_swap_landed_twice,
    eventually,
    read_log,
    wait_all_final,
)
from tests.fixtures.settings import unique

SNIPERS = 12


@pytest.mark.slow
async def test_snipers_end_once_across_kills_of_the_trigger_engine_and_the_router(
    start_system: Any,
) -> None:
    system: System = await start_system(
        processes=("chain", "projector", "router", "triggers", "api"),
        own_database=True,
        chain_events_topic=unique("chain.events"),
        triggers_metrics_port=0,
    )
    order_ids: list[str] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(SNIPERS):
            response = await client.post(
                f"{system.base_url}/api/orders/execute",
                json={"orderType": "sniper", "tokenIn": "SOL", "tokenOut": "MEME",
                      "amount": "0.05", "maxPrice": "0.01"},
            )  # fmt: skip
            assert response.status_code == 202, response.text
            order_ids.append(response.json()["orderId"])

    def count(status: str) -> int:
        with psycopg.connect(str(system.settings.database_url)) as conn:
            row = conn.execute(
                "SELECT count(*) FROM read_model.orders WHERE id = ANY(%s::uuid[]) AND status = %s",
                (order_ids, status),
            ).fetchone()
        return 0 if row is None else int(row[0])

    async def all_armed() -> bool:
        return count("open") == SNIPERS

    await eventually(all_armed, timeout=30, what="snipers armed", system=system)
    # The trigger engine dies; the launch happens while it is down; it recovers from the log
    # and chain.events, and decides the snipers then.
    system.kill("triggers")
    spec = LaunchSpec(
        symbol="MEME", quote="SOL", liquidity=Decimal(200), venue=LaunchVenue.RAYDIUM,
        open_in_seconds=8,
    )  # fmt: skip
    await launch_and_publish(system.settings, spec)
    system.start("triggers")

    async def some_decided() -> bool:
        return sum(count(s) for s in ("triggered", "routing", "building", "submitted")) > 0

    # The router quotes, builds and signs triggered snipers ahead and holds them until the
    # pool opens (their last status before the send is `submitted`): killed then, its
    # successor takes them over from the log and sends the same signed bytes at the open.
    await eventually(some_decided, timeout=60, what="a sniper decided", system=system)
    system.kill("router")
    await asyncio.sleep(0.5)
    system.start("router")

    await wait_all_final(system, set(order_ids), timeout=120, interval=1)
    envelopes = [envelope for _, _, envelope in await read_log(system.settings)]
    finals: dict[str, list[str]] = {o: [] for o in order_ids}
    for envelope in envelopes:
        if str(envelope.order_id) in finals and envelope.status.is_final:
            finals[str(envelope.order_id)].append(envelope.type)
    assert all(len(types) == 1 for types in finals.values()), finals
    filled = await assert_no_swap_landed_twice(system.settings, envelopes, set(order_ids))
    assert filled, "no sniper bought after the kills"
