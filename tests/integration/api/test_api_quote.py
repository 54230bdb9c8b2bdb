"""GET /api/quote: the router's routing over the chain's pool accounts (read over JSON-RPC from
a chain node running the real programs), placing nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from tests.fixtures.settings import MakeSettings
from tests.integration.api.support import RunningApi, running_api, topic_size
from tests.integration.test_chain_rpc import (  # the node fixtures, shared
    chain_db,  # noqa: F401 - a fixture
    running_node,
)


@pytest.fixture
async def api_on_chain(chain_db: str, make_settings: MakeSettings) -> AsyncIterator[RunningApi]:  # noqa: F811
    """The API quoting from a chain node of the test's own."""
    async with (
        running_node(chain_db) as node,
        running_api(make_settings(solana_rpc_url=node.url)) as running,
    ):
        yield running


async def test_quote_returns_the_route_plan_and_places_nothing(api_on_chain: RunningApi) -> None:
    api = api_on_chain
    # Reads first: pooled connections they used must not change how the quote reads pools.
    for _ in range(3):
        assert (await api.http.get("/api/orders")).status_code == 200
    response = await api.http.get(
        "/api/quote",
        params={"tokenIn": "SOL", "tokenOut": "USDC", "amount": "10", "slippage": "0.01"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    out, minimum = Decimal(body["amountOut"]), Decimal(body["minAmountOut"])
    assert out > 0
    assert minimum <= out * Decimal("0.99")
    assert body["route"]["kind"] in {"single", "split"}
    legs = body["route"]["legs"]
    assert sum(Decimal(leg["share"]) for leg in legs) == 1
    assert {q["venue"] for q in body["quotes"]} == {"RAYDIUM", "METEORA"}
    assert body["marketSlot"] >= 0
    assert await topic_size(api.settings) == 0


async def test_quote_restricted_to_one_dex_and_two_hops(api_on_chain: RunningApi) -> None:
    api = api_on_chain
    only = await api.http.get(
        "/api/quote",
        params={"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "dexes": "meteora"},
    )
    assert only.status_code == 200, only.text
    assert {leg["venue"] for leg in only.json()["route"]["legs"]} == {"METEORA"}
    hops = await api.http.get(
        "/api/quote", params={"tokenIn": "JUP", "tokenOut": "SOL", "amount": "100"}
    )
    assert hops.status_code == 200, hops.text
    assert hops.json()["route"]["kind"] == "multihop"


async def test_quote_rejects_bad_input_with_the_order_codes(api: RunningApi) -> None:
    same = await api.http.get(
        "/api/quote", params={"tokenIn": "SOL", "tokenOut": "SOL", "amount": "1"}
    )
    assert same.status_code == 400
    assert same.json()["error"] == "SAME_TOKEN_SWAP"
    dex = await api.http.get(
        "/api/quote", params={"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "dexes": "orca"}
    )
    assert dex.status_code == 400
    assert dex.json()["error"] == "INVALID_DEX"


async def test_without_the_chain_a_quote_is_a_clear_503_and_health_names_the_chain(
    api: RunningApi,
) -> None:
    """Nothing answers at the API's chain RPC URL: quotes are 503 CHAIN_UNAVAILABLE naming
    it; `/health` reports the chain down, yet stays 200 (orders are still accepted)."""
    response = await api.http.get(
        "/api/quote", params={"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"}
    )
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "CHAIN_UNAVAILABLE"
    assert api.settings.solana_rpc_url in body["message"]
    assert response.headers["retry-after"].isdigit()
    health = await api.http.get("/health")
    assert health.status_code == 200
    chain = health.json()["dependencies"]["chain"]
    assert chain["status"] == "down"
    assert chain["url"] == api.settings.solana_rpc_url


async def test_health_names_the_chain_and_its_slot(api_on_chain: RunningApi) -> None:
    health = (await api_on_chain.http.get("/health")).json()
    chain = health["dependencies"]["chain"]
    assert chain["status"] == "up"
    assert chain["url"] == api_on_chain.settings.solana_rpc_url
    assert chain["slot"] >= 0
