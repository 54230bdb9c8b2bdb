"""The market endpoints and socket against the real broker, PostgreSQL and projector:
summaries, the depth ladder, candles, trades, their errors, and ticks live in sequence."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import websockets

from services.common.settings import Settings
from services.domain.market import bucket_start
from tests.fixtures.market import (
    MarketWriter,
    empty_market_tables,
    market_caught_up,
    market_overrides,
    market_projector_running,
    market_writer,
)
from tests.fixtures.settings import MakeSettings
from tests.integration.api.support import RunningApi, running_api
from tests.integration.test_chain_rpc import (  # the node fixtures, shared
    chain_db,  # noqa: F401 - a fixture
    running_node,
)
from tests.market_builders import tick, trade

D = Decimal
# Trades of the last minutes, so they count in the 24 h figures.
NOW = datetime.now(UTC)
START = bucket_start(NOW - timedelta(minutes=10), "1m")


@pytest.fixture
def settings(make_settings: MakeSettings, database_url: str) -> Settings:
    empty_market_tables(database_url)
    return make_settings(**market_overrides())


async def write_market(market: MarketWriter) -> None:
    minute = timedelta(minutes=1)
    await market.send(trade(1, "150", "2", at=START))
    await market.send(trade(2, "153", "1", at=START + timedelta(seconds=30), source="engine"))
    await market.send(trade(3, "151.5", "4", at=START + minute))
    for slot in (1, 2, 3):
        await market.send(tick(slot, at=START + timedelta(seconds=slot)))


@pytest.fixture
async def api(settings: Settings, chain_db: str) -> AsyncIterator[RunningApi]:  # noqa: F811
    """The API over the test's market tables, quoting its ladders from a chain node."""
    async with market_writer(settings) as market:
        await write_market(market)
    async with market_projector_running(settings):
        await market_caught_up(settings)
    async with (
        running_node(chain_db) as node,
        running_api(settings.model_copy(update={"solana_rpc_url": node.url})) as running,
    ):
        yield running


async def test_markets_lists_every_pair_with_mids_best_venue_change_and_volume(
    api: RunningApi,
) -> None:
    response = await api.http.get("/api/markets")
    assert response.status_code == 200, response.text
    markets = {m["pair"]: m for m in response.json()["markets"]}
    assert set(markets) == {
        "SOL-USDC",
        "SOL-USDT",
        "USDT-USDC",
        "JUP-USDC",
        "RAY-USDC",
        "BONK-USDC",
    }
    sol = markets["SOL-USDC"]
    assert {v["venue"]: v["mid"] for v in sol["venues"]} == {"RAYDIUM": "150", "METEORA": "150.1"}
    assert sol["tick"]["sequence"] == 3
    assert sol["bestVenue"]["sell"] in {"RAYDIUM", "METEORA"}
    assert sol["bestVenue"]["buy"] in {"RAYDIUM", "METEORA"}
    assert D(sol["change24h"]) == (D("151.5") - 150) / 150  # first open to last close
    assert sol["volume24h"] == {"base": "7", "quote": "1059"}
    assert sol["trades24h"] == 3
    assert sol["display"]["change24h"] == "+1 %"
    assert sol["display"]["volume24h"] == "1,059 USDC"
    assert markets["JUP-USDC"]["tick"] is None
    assert markets["JUP-USDC"]["change24h"] is None


async def test_one_market_has_a_depth_ladder_per_venue_and_routed(api: RunningApi) -> None:
    response = await api.http.get("/api/markets/sol-usdc")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pair"] == "SOL-USDC"
    ladder = body["ladder"]
    assert [rung["size"] for rung in ladder] == ["1", "10", "100", "1000", "10000"]
    impacts = []
    for rung in ladder:
        sell, buy = rung["sell"], rung["buy"]
        assert D(sell["routed"]["amountIn"]) == D(rung["size"])
        assert D(sell["routed"]["amountOut"]) > 0
        assert set(sell["venues"]) == {"RAYDIUM", "METEORA"}
        assert D(buy["routed"]["amountOut"]) > 0  # base bought for about size x mid of USDC
        assert sell["routed"]["feeToken"] == "SOL"
        assert buy["routed"]["feeToken"] == "USDC"
        assert sell["routed"]["display"]["priceImpact"].endswith(("bps", "%"))
        impacts.append(D(sell["routed"]["priceImpactBps"]))
    assert impacts == sorted(impacts)
    assert impacts[-1] > impacts[0]
    # Routed is never worse than the best single venue.
    for rung in ladder:
        venues = [v for v in rung["sell"]["venues"].values() if "amountOut" in v]
        best = max(D(v["amountOut"]) for v in venues)
        assert D(rung["sell"]["routed"]["amountOut"]) >= best


async def test_unknown_pairs_are_404_with_the_valid_ones_and_bad_queries_400(
    api: RunningApi,
) -> None:
    for path in ("/api/markets/BTC-USDC", "/api/markets/BTC-USDC/candles", "/api/markets/x/trades"):
        response = await api.http.get(path)
        assert response.status_code == 404, path
        body = response.json()
        assert body["error"] == "UNKNOWN_PAIR"
        assert "SOL-USDC" in body["validPairs"]
    checks: list[tuple[dict[str, str], str]] = [
        ({"interval": "5m"}, "INVALID_INTERVAL"),
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "INVALID_RANGE"),
        ({"from": "yesterday"}, "INVALID_RANGE"),
        ({"interval": "1s", "from": "2020-01-01T00:00:00Z"}, "INVALID_RANGE"),
    ]
    for params, error in checks:
        response = await api.http.get("/api/markets/SOL-USDC/candles", params=params)
        assert response.status_code == 400, params
        body = response.json()
        assert body["error"] == error
        assert body["message"]
    assert (await api.http.get("/api/markets/SOL-USDC/trades?limit=0")).status_code == 400


async def test_candles_and_trades_hold_the_engine_and_background_trades(api: RunningApi) -> None:
    response = await api.http.get(
        "/api/markets/SOL-USDC/candles",
        params={"interval": "1m", "from": (START - timedelta(hours=1)).isoformat()},
    )
    assert response.status_code == 200, response.text
    candles = response.json()["candles"]
    assert [(c["open"], c["high"], c["low"], c["close"], c["trades"]) for c in candles] == [
        ("150", "153", "150", "153", 2),
        ("151.5", "151.5", "151.5", "151.5", 1),
    ]
    assert candles[0]["start"] == START.isoformat().replace("+00:00", "Z")
    assert candles[0]["volumeQuote"] == "453"
    response = await api.http.get("/api/markets/SOL-USDC/trades", params={"limit": 2})
    body = response.json()
    assert [t["sequence"] for t in body["trades"]] == [3, 2]
    assert body["trades"][1]["source"] == "engine"
    assert body["trades"][1]["message"] == "sell 1 SOL at 153 USDC/SOL on Raydium"
    assert body["nextBefore"] == 2
    older = await api.http.get("/api/markets/SOL-USDC/trades", params={"before": 2})
    assert [t["source"] for t in older.json()["trades"]] == ["background"]


async def receive(socket: Any, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(20):
        return [json.loads(await socket.recv()) for _ in range(count)]


async def test_socket_sends_the_latest_tick_then_every_live_tick_in_sequence(
    api: RunningApi, settings: Settings
) -> None:
    url = f"{api.ws_url}/ws/markets/SOL-USDC"
    async with websockets.connect(url) as first:
        connected, latest = await receive(first, 2)
        assert connected["status"] == "connected"
        assert (latest["type"], latest["sequence"], latest["slot"]) == ("tick", 3, 3)
        assert latest["message"] == "SOL-USDC 150.05 USDC/SOL (Raydium 150, Meteora 150.1)"
        # Ticks the projector has not stored (it is not running): the feed fills them in,
        # and a redelivered tick is not sent twice.
        async with market_writer(settings) as market:
            market.sequences[(settings.market_ticks_topic, "SOL-USDC")] = 3
            await market.send(tick(4, raydium="151"))
            assert [m["sequence"] for m in await receive(first, 1)] == [4]
            async with websockets.connect(url) as second:
                _, start = await receive(second, 2)
                assert start["sequence"] == 4  # the feed's, newer than the stored tick 3
                await market.send(tick(5))
                await market.send(tick(5), sequence=5)
                await market.send(tick(6))
                await market.send(tick(7, pair="JUP-USDC"))  # another pair's socket only
                assert [m["sequence"] for m in await receive(second, 2)] == [5, 6]
            assert [m["sequence"] for m in await receive(first, 2)] == [5, 6]
            await market.send(tick(8))
            (eight,) = await receive(first, 1)
            assert (eight["sequence"], eight["slot"]) == (7, 8)
    async with websockets.connect(f"{api.ws_url}/ws/markets/BTC-USDC") as unknown:
        (refused,) = await receive(unknown, 1)
        assert refused["error"] == "UNKNOWN_PAIR"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await unknown.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4404
