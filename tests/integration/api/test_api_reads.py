"""Reads come from the read model the real projector builds from what the API wrote."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from typing import Any

from infra.kafka.launcher import free_port
from tests.fixtures.settings import MakeSettings
from tests.integration.api.support import (
    RunningApi,
    eventually,
    lifecycle,
    log_writer,
    projector_running,
    running_api,
)


async def submit(api: RunningApi, token_in: str, token_out: str, amount: str) -> uuid.UUID:
    response = await api.http.post(
        "/api/orders/execute", json={"tokenIn": token_in, "tokenOut": token_out, "amount": amount}
    )
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["orderId"])


async def test_get_list_and_events_serve_the_projected_orders(api: RunningApi) -> None:
    # The read model is shared by every test of the session: list only what this test made.
    since = {"from": datetime.now(UTC).isoformat()}
    sol = [await submit(api, "SOL", "USDC", str(n)) for n in (1, 2, 3)]
    usdc = await submit(api, "USDC", "SOL", "0.5")
    async with log_writer(api.settings) as writer:
        for sequence, event in enumerate(lifecycle(), start=2):
            await writer.append(sol[0], sequence, event)

    async with projector_running(api.settings):

        async def completed() -> dict[str, Any] | None:
            response = await api.http.get(f"/api/orders/{sol[0]}")
            if response.status_code == 200 and response.json()["status"] == "completed":
                return dict(response.json())
            return None

        order = await eventually(completed)
        await eventually(lambda: _listed(api, since, 4))

    assert order["id"] == str(sol[0])
    assert (order["tokenIn"], order["tokenOut"], order["amount"]) == ("SOL", "USDC", "1")
    assert order["slippage"] == "0.01"
    assert order["selectedDex"] == "RAYDIUM"
    assert (order["executedPrice"], order["amountOut"], order["fee"]) == ("150", "1500", "0.025")
    assert order["txHash"] == "4" * 88
    assert [q["venue"] for q in order["quotes"]] == ["RAYDIUM", "METEORA"]
    assert order["route"]["legs"][0]["amountOut"] == "1500"
    assert (order["error"], order["errorCode"], order["attempts"], order["clientOrderId"]) == (
        None,
        None,
        1,
        None,
    )
    assert order["createdAt"].endswith("Z")
    assert order["updatedAt"] >= order["createdAt"]

    pending = (await api.http.get(f"/api/orders/{sol[1]}")).json()
    assert pending["status"] == "pending"
    assert pending["selectedDex"] is None
    assert pending["quotes"] == []

    # Newest first, two per page, through the cursor.
    first = (await api.http.get("/api/orders", params={**since, "limit": "2"})).json()
    assert first["total"] == 4
    assert [o["id"] for o in first["orders"]] == [str(usdc), str(sol[2])]
    second = (
        await api.http.get(
            "/api/orders", params={**since, "limit": "2", "cursor": first["nextCursor"]}
        )
    ).json()
    assert [o["id"] for o in second["orders"]] == [str(sol[1]), str(sol[0])]
    assert second["nextCursor"] is None

    by_pair = (
        await api.http.get("/api/orders", params={**since, "tokenIn": "USDC", "tokenOut": "SOL"})
    ).json()
    assert [o["id"] for o in by_pair["orders"]] == [str(usdc)]
    done = (await api.http.get("/api/orders", params={**since, "status": "completed"})).json()
    assert [o["id"] for o in done["orders"]] == [str(sol[0])]
    future = (await api.http.get("/api/orders", params={"from": "2999-01-01T00:00:00Z"})).json()
    assert future == {"orders": [], "total": 0, "nextCursor": None}
    bad = await api.http.get("/api/orders", params={"limit": "500"})
    assert (bad.status_code, bad.json()["code"]) == (400, "ERR_106")

    events = (await api.http.get(f"/api/orders/{sol[0]}/events")).json()
    assert events["orderId"] == str(sol[0])
    history = events["events"]
    assert [e["sequence"] for e in history] == [1, 2, 3, 4, 5]
    assert [e["type"] for e in history] == [
        "OrderSubmitted",
        "OrderRouted",
        "TransactionBuilt",
        "TransactionSubmitted",
        "OrderCompleted",
    ]
    assert [e["status"] for e in history] == [
        "pending",
        "routing",
        "building",
        "submitted",
        "completed",
    ]
    assert history[0]["producer"] == "api"
    assert history[0]["payload"]["tokenIn"] == "SOL"
    assert all(
        later["prevHash"] == earlier["hash"] for earlier, later in itertools.pairwise(history[1:])
    )


async def _listed(api: RunningApi, since: dict[str, str], count: int) -> bool:
    response = await api.http.get("/api/orders", params=since)
    return response.status_code == 200 and response.json()["total"] == count


async def test_unknown_and_malformed_ids_are_not_found(api: RunningApi) -> None:
    for path in (
        f"/api/orders/{uuid.uuid4()}",
        "/api/orders/not-a-uuid",
        f"/api/orders/{uuid.uuid4()}/events",
    ):
        response = await api.http.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "ORDER_NOT_FOUND"


async def test_health_is_ok_when_both_dependencies_answer(api: RunningApi) -> None:
    response = await api.http.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["dependencies"]["kafka"]["status"] == "up"
    assert body["dependencies"]["postgres"]["status"] == "up"
    assert isinstance(body["uptime"], int)
    assert body["auth"] == "disabled"  # this API takes no key: the dashboard asks for none


async def test_without_postgres_orders_are_still_accepted_and_reads_are_503(
    make_settings: MakeSettings,
) -> None:
    """Nothing listens on the port: the API starts anyway; only reads and health suffer."""
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    async with running_api(make_settings(database_url=dead)) as api:
        order_id = await submit(api, "SOL", "USDC", "1")
        for path in (f"/api/orders/{order_id}", "/api/orders", f"/api/orders/{order_id}/events"):
            response = await api.http.get(path)
            assert response.status_code == 503, path
            assert response.json()["error"] == "READ_MODEL_UNAVAILABLE"
            assert response.headers["retry-after"].isdecimal()
        health = await api.http.get("/health")
        assert health.status_code == 503
        body = health.json()
        assert body["status"] == "degraded"
        assert body["dependencies"]["postgres"]["status"] == "down"
        assert body["dependencies"]["kafka"]["status"] == "up"
