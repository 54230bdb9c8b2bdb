"""Postman collections against the real processes: the original system's, unchanged, and ours.

The original collection lives beside the repository (`../shared/seed-contract/`);
it is run with authentication disabled, as the original system had none. Both run
through tests/e2e/postman.py rather than newman: deterministic, no Node, no
network beyond loopback.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.settings import Settings
from tests.e2e import postman
from tests.e2e.system import System, eventually

REPO = Path(__file__).resolve().parents[2]
ORIGINAL = REPO.parent / "shared" / "seed-contract" / "postman_collection.json"
OURS = REPO / "docs" / "postman" / "oee.postman_collection.json"

# The original collection has no test scripts: what each of its requests must answer.
ORIGINAL_EXPECTED = {
    "Health Check": {200},
    "Create Market Order": {202},
    "Get Order by ID": {200, 404},  # 404 until the projector has stored the new order
    "List All Orders": {200},
    "Test Invalid Order": {400},
}


@pytest.fixture
async def system(start_system: Any, monkeypatch: pytest.MonkeyPatch) -> System:
    overrides: dict[str, Any] = {}
    if "auth" in Settings.model_fields:
        monkeypatch.setenv("OEE_AUTH", "disabled")
        overrides["auth"] = "disabled"
    started: System = await start_system(**overrides)
    return started


async def _run(collection: dict[str, Any], variables: dict[str, str]) -> list[postman.Exchange]:
    def send() -> list[postman.Exchange]:
        with httpx.Client(timeout=15) as client:
            return postman.run(collection, variables, client)

    return await asyncio.to_thread(send)


def _report(exchanges: list[postman.Exchange]) -> str:
    return "\n".join(f"{e.method} {e.url} -> {e.status} {e.body}" for e in exchanges)


async def _completes(system: System, order_id: str) -> None:
    async with httpx.AsyncClient(base_url=system.base_url) as client:

        async def completed() -> bool:
            response = await client.get(f"/api/orders/{order_id}")
            return response.status_code == 200 and response.json()["status"] == "completed"

        await eventually(completed, timeout=30, what=f"order {order_id} completed", system=system)


async def test_the_original_collection_runs_unchanged(system: System) -> None:
    if not ORIGINAL.exists():
        pytest.skip(f"the original Postman collection is not at {ORIGINAL}")
    collection = postman.load(ORIGINAL)
    variables = {"baseUrl": system.base_url}
    exchanges = await _run(collection, variables)

    assert [e.name for e in exchanges] == list(ORIGINAL_EXPECTED), _report(exchanges)
    for exchange in exchanges:
        assert exchange.status < 500, _report(exchanges)
        assert exchange.status in ORIGINAL_EXPECTED[exchange.name], _report(exchanges)
    created = exchanges[1].body
    assert created["status"] == "pending"
    assert created["websocketUrl"] == f"/ws/{created['orderId']}"
    invalid = exchanges[-1].body
    assert invalid["error"] == "INVALID_AMOUNT", invalid
    # The order the collection created is executed, whatever its GET answered at the time.
    await _completes(system, variables["orderId"])


async def test_our_collection_covers_every_route_and_passes_its_own_checks(system: System) -> None:
    collection = postman.load(OURS)
    # A key of this test's own: ids derived from it never meet another test's.
    variables = {"baseUrl": system.base_url, "clientOrderId": f"postman-{uuid.uuid4().hex}"}
    exchanges = await _run(collection, variables)

    for exchange in exchanges:
        assert exchange.expected, f"{exchange.name} has no status check in its script"
        assert exchange.status in exchange.expected, _report(exchanges)
    routes = {
        (e.method, e.url.split("?")[0].replace(variables["orderId"], "{id}")) for e in exchanges
    }
    base = system.base_url
    assert {
        ("GET", f"{base}/health"),
        ("POST", f"{base}/api/orders/execute"),
        ("GET", f"{base}/api/orders/{{id}}"),
        ("GET", f"{base}/api/orders/{{id}}/events"),
        ("GET", f"{base}/api/orders"),
        ("GET", f"{base}/api/quote"),
    } <= routes
    quote = next(e.body for e in exchanges if e.name == "Quote")
    assert {q["venue"] for q in quote["quotes"]} == {"RAYDIUM", "METEORA"}
    await _completes(system, variables["orderId"])

    # Once stored, the read requests answer 200 (not the 404 they may give right after the 202).
    again = await _run(
        {**collection, "item": [i for i in collection["item"] if "{{orderId}}" in str(i)]},
        variables,
    )
    assert [e.status for e in again] == [200, 200], _report(again)
    events = again[1].body["events"]
    routed = next(e for e in events if e["type"] == "OrderRouted")
    assert {q["venue"] for q in routed["payload"]["quotes"]} == {"RAYDIUM", "METEORA"}
