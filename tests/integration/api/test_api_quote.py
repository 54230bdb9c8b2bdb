"""GET /api/quote: the router's routing over the chain's pools, placing nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.chain.ledger import Ledger
from services.common.db import open_pool
from services.venues.market import Market
from tests.integration.api.support import RunningApi, topic_size


@pytest.fixture
async def chain_open(database_url: str) -> None:
    pool = await open_pool(database_url)
    try:
        await Ledger(pool, Market(seed=42)).genesis()
    finally:
        await pool.close()


@pytest.mark.usefixtures("chain_open")
async def test_quote_returns_the_route_plan_and_places_nothing(api: RunningApi) -> None:
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


@pytest.mark.usefixtures("chain_open")
async def test_quote_restricted_to_one_dex_and_two_hops(api: RunningApi) -> None:
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
