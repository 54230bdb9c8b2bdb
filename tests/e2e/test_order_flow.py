"""The product's main path, through real processes, a real broker and a real database."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from typing import Any

import httpx
import orjson
import psycopg
import websockets

from tests.e2e.system import (
    System,
    assert_no_swap_landed_twice,
    eventually,
    new_port,
    order_payload,
    read_log,
    wait_all_final,
)

FINAL = {"completed", "failed"}
LIFECYCLE = ["pending", "routing", "building", "submitted", "completed"]


async def watch(
    system: System, order_id: str, timeout: float = 30
) -> tuple[list[dict[str, Any]], int | None]:
    """Every message a socket on /ws/{order_id} receives until the server closes it."""
    url = f"ws://127.0.0.1:{system.settings.api_port}/ws/{order_id}"
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout), websockets.connect(url) as socket:
        try:
            async for raw in socket:
                messages.append(orjson.loads(raw))
        except websockets.ConnectionClosed:
            pass
        return messages, socket.close_code


def statuses(messages: list[dict[str, Any]]) -> list[str]:
    return [m["status"] for m in messages if "sequence" in m]


async def submit(client: httpx.AsyncClient, system: System, **payload: Any) -> str:
    response = await client.post(
        f"{system.base_url}/api/orders/execute", json=order_payload(**payload)
    )
    assert response.status_code == 202, response.text
    return str(response.json()["orderId"])


async def test_one_order_seen_the_same_everywhere(start_system: Any) -> None:
    system: System = await start_system()
    async with httpx.AsyncClient() as client:
        order_id = await submit(client, system)
        early = asyncio.create_task(watch(system, order_id))
        await asyncio.sleep(0.05)
        during = asyncio.create_task(watch(system, order_id))
        (early_msgs, early_code), (during_msgs, during_code) = await asyncio.gather(early, during)
        late_msgs, late_code = await watch(system, order_id)

        for messages, code in (
            (early_msgs, early_code),
            (during_msgs, during_code),
            (late_msgs, late_code),
        ):
            assert statuses(messages) == LIFECYCLE
            assert [m["sequence"] for m in messages if "sequence" in m] == [1, 2, 3, 4, 5]
            assert code == 1000
        completed = early_msgs[-1]
        assert completed["txHash"]
        assert completed["executedPrice"]

        async def projected() -> bool:
            response = await client.get(f"{system.base_url}/api/orders/{order_id}")
            return response.status_code == 200 and response.json()["status"] == "completed"

        await eventually(projected, timeout=20, what="order projected as completed", system=system)
        order = (await client.get(f"{system.base_url}/api/orders/{order_id}")).json()
        assert order["txHash"] == completed["txHash"]
        assert order["selectedDex"] in {"RAYDIUM", "METEORA", "METEORA+RAYDIUM"}
        events = (await client.get(f"{system.base_url}/api/orders/{order_id}/events")).json()[
            "events"
        ]
        assert [e["sequence"] for e in events] == [1, 2, 3, 4, 5]
        assert [e["status"] for e in events] == LIFECYCLE


async def assert_log_matches_read_models(system: System, order_ids: set[str]) -> dict[str, str]:
    """Every order has exactly one final event on the log; the read models hold exactly the log;
    the chain landed each order's swap at most once (`assert_no_swap_landed_twice`)."""
    log = [(p, o, e) for p, o, e in await read_log(system.settings) if str(e.order_id) in order_ids]
    by_order: dict[str, list[int]] = defaultdict(list)
    finals: dict[str, str] = {}
    for _, _, envelope in log:
        by_order[str(envelope.order_id)].append(envelope.sequence)
        if envelope.status.is_final:
            assert str(envelope.order_id) not in finals, f"two final events for {envelope.order_id}"
            finals[str(envelope.order_id)] = envelope.status.value
    assert set(finals) == order_ids
    for order_id, sequences in by_order.items():
        assert sorted(set(sequences)) == list(range(1, max(sequences) + 1)), order_id
    with psycopg.connect(str(system.settings.database_url)) as conn:
        rows = conn.execute(
            "SELECT id::text, status, last_sequence FROM read_model.orders"
            " WHERE id = ANY(%s::uuid[])",
            (list(order_ids),),
        ).fetchall()
        event_counts: dict[str, int] = dict(
            conn.execute(
                "SELECT order_id::text, count(*) FROM read_model.order_events"
                " WHERE order_id = ANY(%s::uuid[]) GROUP BY 1",
                (list(order_ids),),
            ).fetchall()
        )
    assert {r[0]: r[1] for r in rows} == finals
    for order_id, _, last_sequence in rows:
        assert last_sequence == max(by_order[order_id]) == event_counts[order_id]
    # The chain's own record: no order's swap landed twice, each completed order's did, once.
    filled = await assert_no_swap_landed_twice(system.settings, [e for _, _, e in log], order_ids)
    assert set(filled) == {o for o, s in finals.items() if s == "completed"}
    return finals


async def test_two_hundred_concurrent_orders_with_venue_failures(start_system: Any) -> None:
    system: System = await start_system(venue_failure_rate="0.3")
    pairs = [
        ("SOL", "USDC", "0.5"),
        ("USDC", "SOL", "20"),
        ("JUP", "SOL", "10"),
        ("BONK", "USDC", "50000"),
    ]
    async with httpx.AsyncClient(timeout=30) as client:
        order_ids = set(
            await asyncio.gather(
                *(
                    submit(client, system, token_in=a, token_out=b, amount=amt)
                    for a, b, amt in pairs * 50
                )
            )
        )
        assert len(order_ids) == 200

        await wait_all_final(system, order_ids, timeout=60)
    finals = await assert_log_matches_read_models(system, order_ids)
    log = await read_log(system.settings)
    retried = {
        str(e.order_id)
        for _, _, e in log
        if e.type == "OrderRetrying" and str(e.order_id) in order_ids
    }
    assert retried, "a 30% failure rate must cause retries"
    assert Counter(finals.values())["completed"] > 100


async def test_duplicate_client_order_id_race_gives_one_order(start_system: Any) -> None:
    system: System = await start_system()
    key = uuid.uuid4().hex
    async with httpx.AsyncClient() as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    f"{system.base_url}/api/orders/execute", json=order_payload(clientOrderId=key)
                )
                for _ in range(5)
            )
        )
        assert {r.status_code for r in responses} == {202}
        order_ids = {r.json()["orderId"] for r in responses}
        assert len(order_ids) == 1
        (order_id,) = order_ids
        messages, code = await watch(system, order_id)
        assert statuses(messages) == LIFECYCLE
        assert code == 1000
    await assert_log_matches_read_models(system, {order_id})


async def test_socket_on_one_api_sees_orders_submitted_through_another(start_system: Any) -> None:
    system: System = await start_system()
    other_port = new_port()
    system.start("api", api_port=other_port)
    await system.wait_healthy(f"http://127.0.0.1:{other_port}")
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"http://127.0.0.1:{other_port}/api/orders/execute", json=order_payload()
        )
        assert response.status_code == 202
        messages, code = await watch(system, response.json()["orderId"])
    assert statuses(messages) == LIFECYCLE
    assert code == 1000


async def test_two_routers_share_the_orders_through_their_group(start_system: Any) -> None:
    system: System = await start_system()
    system.start("router", instance="second")
    second_log = system.log_dir / "router-second.log"

    async def second_router_owns_partitions() -> bool:
        # The group rebalances when the second member joins; wait until it owns some.
        text = second_log.read_text() if second_log.exists() else ""
        assignments = [line for line in text.splitlines() if "router assigned partitions" in line]
        return bool(assignments) and "partitions []" not in assignments[-1]

    await eventually(
        second_router_owns_partitions, timeout=30, what="second router assigned", system=system
    )
    async with httpx.AsyncClient(timeout=30) as client:
        order_ids = set(
            await asyncio.gather(*(submit(client, system, amount="0.1") for _ in range(60)))
        )

        await wait_all_final(system, order_ids, timeout=60)
    await assert_log_matches_read_models(system, order_ids)
    routers = {
        e.producer
        for _, _, e in await read_log(system.settings)
        if str(e.order_id) in order_ids and e.producer.startswith("router:")
    }
    assert len(routers) == 2, f"orders were routed by {routers}, not by both routers"
