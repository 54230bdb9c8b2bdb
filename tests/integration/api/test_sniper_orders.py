"""Snipers through the real system (API, projector, trigger engine, Kafka, a chain node): armed
before the launch, decided when the launch's events arrive (a failed rug check ends one failed
with its code; a passing one is triggered on the launch), armed after the launch (decided at
once), cancelled or expired while armed."""

from __future__ import annotations

import secrets
import string
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from services.chain.launch import launch_and_publish
from services.domain.launch import LaunchSpec, LaunchVenue
from services.router.execution import auto_sell_id
from tests.fixtures.projector import eventually
from tests.fixtures.settings import MakeSettings, unique
from tests.integration.api.test_conditional_orders import System, running

# A symbol of this module's own: the token registry is per process, and other tests in this
# process may have launched a MEME of another mint.
SYMBOL = "S" + "".join(secrets.choice(string.ascii_uppercase) for _ in range(6))


async def snipe(system: System, *, armed: bool = True, **body: Any) -> str:
    response = await system.api.http.post(
        "/api/orders/execute",
        json={"orderType": "sniper", "tokenIn": "SOL", "tokenOut": SYMBOL, "amount": "0.5",
              "maxPrice": "0.01", **body},
    )  # fmt: skip
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "open"
    order_id: str = response.json()["orderId"]
    if armed:  # else its launch is known: it may be decided before it is seen open
        await system.status_becomes(order_id, "open")
    return order_id


async def test_snipers_are_decided_by_the_launch_on_the_chain(make_settings: MakeSettings) -> None:
    settings = make_settings(
        market_ticks_topic=unique("market.ticks"), chain_events_topic=unique("chain.events")
    )
    async with running(settings) as system:
        strict = await snipe(system)  # default checks: mint and freeze renounced
        lenient = await snipe(
            system,
            checks={"mintRenounced": False, "lpBurned": True},
            autoSell={"takeProfitPct": "100", "stopLossPct": "30"},
        )
        cancelled = await snipe(system)
        soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
        expiring = await snipe(system, expiresAt=soon)
        response = await system.api.http.delete(f"/api/orders/{cancelled}")
        assert response.status_code == 200, response.text
        await system.status_becomes(expiring, "expired")

        spec = LaunchSpec(
            symbol=SYMBOL, quote="SOL", liquidity=Decimal(200), venue=LaunchVenue.RAYDIUM,
            open_in_seconds=5, renounce_mint_authority=False,
        )  # fmt: skip
        launched = await launch_and_publish(system.api.settings, spec)

        failed = await system.status_becomes(strict, "failed")
        assert failed["errorCode"] == "RUG_CHECK_MINT_AUTHORITY"
        assert launched.facts.mint_authority is not None
        assert launched.facts.mint_authority in failed["error"]
        bought = await system.status_becomes(lenient, "completed", "failed", timeout=60)
        assert bought["status"] == "completed", (bought.get("errorCode"), bought.get("error"))
        events = await system.events(lenient)
        trigger = events[1]
        assert (trigger["type"], trigger["payload"]["leg"]) == ("OrderTriggered", "launch")
        assert trigger["payload"]["pair"] == f"{SYMBOL}-SOL"
        assert trigger["payload"]["launch"]["pool"] == launched.pool
        # Bought at or under its max price, on the launched pool (whose program refuses any
        # swap before the open time, so a landed buy is one after it).
        assert Decimal(bought["amountOut"]) >= Decimal("0.5") / Decimal("0.01")
        assert bought["selectedDex"] == "RAYDIUM"
        # autoSell: a linked OCO selling what was bought rests open.
        link = f"autosell:{lenient}"
        oco = await system.status_becomes(str(auto_sell_id(uuid.UUID(lenient))), "open")
        assert (oco["orderType"], oco["clientOrderId"]) == ("oco", link)
        assert (oco["tokenIn"], oco["tokenOut"]) == (SYMBOL, "SOL")
        assert Decimal(oco["amount"]) == Decimal(bought["amountOut"])
        fill = Decimal(bought["amount"]) / Decimal(bought["amountOut"])
        assert Decimal(oco["takeProfitPrice"]) >= fill * 2 > fill > Decimal(oco["stopLossPrice"])
        # Armed after the launch: decided on arrival.
        late = await system.api.http.post(
            "/api/orders/execute",
            json={"orderType": "sniper", "tokenIn": "SOL", "tokenOut": SYMBOL, "amount": "0.5",
                  "maxPrice": "0.01"},
        )  # fmt: skip
        assert late.status_code == 202
        late_failed = await system.status_becomes(late.json()["orderId"], "failed")
        assert late_failed["errorCode"] == "RUG_CHECK_MINT_AUTHORITY"
        # Once the pool is open (PoolOpened, published by the engine from the chain's clock), an
        # onlyAtLaunch sniper arriving is refused; another one buys at once.
        lenient_checks = {"mintRenounced": False}

        async def only_at_launch_refused() -> dict[str, Any] | None:
            order_id = await snipe(system, armed=False, checks=lenient_checks, onlyAtLaunch=True)
            order = await system.status_becomes(order_id, "failed", "completed")
            return order if order["errorCode"] == "POOL_ALREADY_OPEN" else None

        refused = await eventually(only_at_launch_refused, "PoolOpened folded", timeout=30)
        assert refused["status"] == "failed"
        at_once = await snipe(system, armed=False, checks=lenient_checks)
        assert (await system.status_becomes(at_once, "completed", "failed"))["status"] == (
            "completed"
        )
        for order_id, types in (
            (cancelled, ["OrderSubmitted", "OrderCancelled"]),
            (expiring, ["OrderSubmitted", "OrderExpired"]),
            (strict, ["OrderSubmitted", "OrderFailed"]),
        ):
            assert [e["type"] for e in await system.events(order_id)] == types
