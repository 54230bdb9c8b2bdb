"""A launched token is a market like any once its pool opens (real API, router, projector,
trigger engine, market process, Kafka and a chain node): it is listed in `/api/markets` from its
creation (with when it opens), the background market trades it and ticks it, a plain market
order and a limit order on it complete, and a sniper's autoSell OCO is triggered by its ticks.

About 10 s: one chain node (20 ms slots), one launch, two market moves, four orders.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import string
import uuid
from collections.abc import AsyncIterator, Awaitable
from decimal import Decimal
from typing import Any

from services.chain.launch import launch_and_publish
from services.domain.launch import LaunchSpec, LaunchVenue
from services.market.process import MarketProcess
from services.router.execution import auto_sell_id
from tests.fixtures.market import market_projector_running
from tests.fixtures.projector import eventually
from tests.fixtures.settings import MakeSettings, unique
from tests.integration.api.test_conditional_orders import System, running


@contextlib.asynccontextmanager
async def market_running(system: System) -> AsyncIterator[MarketProcess]:
    """The background market over the system's chain and topics, stepping every slot."""
    market = MarketProcess(system.api.settings)
    await market.start()
    stop = asyncio.Event()
    task = asyncio.create_task(market.run(stop))
    try:
        yield market
    except BaseException:
        if task.done() and task.exception() is not None:
            raise AssertionError("the market process failed") from task.exception()
        raise
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await market.stop()


async def listed(system: System, pair: str) -> dict[str, Any] | None:
    response = await system.api.http.get("/api/markets")
    assert response.status_code == 200, response.text
    return next((m for m in response.json()["markets"] if m["pair"] == pair), None)


async def mid(system: System, pair: str) -> Decimal:
    """The pair's latest ticked mid (quote per base), once it has one."""

    async def ticked() -> Decimal | None:
        found = await listed(system, pair)
        return Decimal(found["venues"][0]["mid"]) if found and found["venues"] else None

    return await eventually(ticked, f"{pair} ticked", timeout=30)


async def _above(value: Awaitable[Decimal], floor: Decimal) -> Decimal | None:
    found = await value
    return found if found > floor else None


async def move(system: System, pair: str, to: Decimal) -> None:
    response = await system.api.http.post(
        f"/api/markets/{pair}/move", json={"to": str(to.quantize(Decimal("1e-12"))), "over": "2s"}
    )
    assert response.status_code == 202, response.text


async def test_a_launched_token_trades_like_any_market(make_settings: MakeSettings) -> None:
    # A symbol of its own: the registry of this test process may know an earlier test's MEME.
    symbol = "L" + "".join(secrets.choice(string.ascii_uppercase) for _ in range(6))
    pair = f"{symbol}-SOL"
    settings = make_settings(
        market_ticks_topic=unique("market.ticks"),
        market_trades_topic=unique("market.trades"),
        market_commands_topic=unique("market.commands"),
        chain_events_topic=unique("chain.events"),
    )
    async with (
        running(settings) as system,
        market_projector_running(system.api.settings),
        market_running(system) as market,
    ):
        # Unknown before its launch: a plain order on it is a 400, not a NO_ROUTE later.
        early = await system.api.http.post(
            "/api/orders/execute", json={"tokenIn": "SOL", "tokenOut": symbol, "amount": "0.5"}
        )
        assert early.status_code == 400, early.text
        sniper = await system.api.http.post(
            "/api/orders/execute",
            json={"orderType": "sniper", "tokenIn": "SOL", "tokenOut": symbol, "amount": "0.5",
                  "maxPrice": "0.01", "priority": "normal",
                  "autoSell": {"takeProfitPct": "20", "stopLossPct": "90"}},
        )  # fmt: skip
        assert sniper.status_code == 202, sniper.text
        sniper_id = sniper.json()["orderId"]
        spec = LaunchSpec(
            symbol=symbol, quote="SOL", liquidity=Decimal(200), venue=LaunchVenue.RAYDIUM,
            open_in_seconds=3,
        )  # fmt: skip
        launched = await launch_and_publish(system.api.settings, spec)

        # Listed once created, with when it opens.
        found = await eventually(lambda: listed(system, pair), f"{pair} listed", timeout=15)
        assert (found["base"], found["quote"]) == (symbol, "SOL")
        assert found["launch"]["pool"] == launched.pool
        assert found["launch"]["opensAt"].endswith("Z")

        # The sniper buys at the open; GET shows what it asked for (read model, migration 0011).
        bought = await system.status_becomes(sniper_id, "completed", "failed", timeout=60)
        assert bought["status"] == "completed", (bought.get("errorCode"), bought.get("error"))
        assert (bought["orderType"], Decimal(bought["maxPrice"])) == ("sniper", Decimal("0.01"))
        assert bought["checks"]["mintRenounced"] is True
        assert bought["autoSell"] == {"takeProfitPct": "20", "stopLossPct": "90"}
        assert (bought["onlyAtLaunch"], bought["priority"]) == (False, "normal")
        oco_id = str(auto_sell_id(uuid.UUID(sniper_id)))
        await system.status_becomes(oco_id, "open")

        # The background market ticks the new pair; a plain market order routes on its pool.
        price = await mid(system, pair)
        assert pair in market.references
        plain = await system.api.http.post(
            "/api/orders/execute",
            json={"tokenIn": "SOL", "tokenOut": symbol, "amount": "0.5", "slippage": "0.2"},
        )
        assert plain.status_code == 202, plain.text
        done = await system.status_becomes(plain.json()["orderId"], "completed", "failed")
        assert done["status"] == "completed", (done.get("errorCode"), done.get("error"))
        assert done["selectedDex"] == "RAYDIUM"

        # The market moves the pair up: the autoSell take-profit fires on its ticks and sells.
        await move(system, pair, price * Decimal("1.6"))
        sold = await system.status_becomes(oco_id, "completed", "failed", timeout=60)
        assert sold["status"] == "completed", (sold.get("errorCode"), sold.get("error"))
        assert sold["triggeredLeg"] == "takeProfit"
        assert (sold["tokenIn"], sold["tokenOut"]) == (symbol, "SOL")

        # A limit buy 10 % under the top rests; the market moving back down fills it at or
        # above its limit (tokenOut per tokenIn).
        top = await eventually(
            lambda: _above(mid(system, pair), price * Decimal("1.4")), "the top", timeout=30
        )
        limit_id = await system.submit(
            orderType="limit", tokenOut=symbol, amount="0.5", slippage="0.2",
            limitPrice=str((Decimal("1.1") / top).quantize(Decimal("1e-6"))),
        )  # fmt: skip
        await move(system, pair, price)
        filled = await system.status_becomes(limit_id, "completed", "failed", timeout=60)
        assert filled["status"] == "completed", (filled.get("errorCode"), filled.get("error"))
        assert Decimal(filled["amountOut"]) >= Decimal("0.5") * Decimal(filled["limitPrice"])

        # Its trades are on the market's read side: candles for the new pair.
        async def candles() -> list[dict[str, Any]] | None:
            response = await system.api.http.get(f"/api/markets/{pair}/candles?interval=1s")
            assert response.status_code == 200, response.text
            rows: list[dict[str, Any]] = response.json()["candles"]
            return rows or None

        assert await eventually(candles, f"{pair} candles", timeout=15)
