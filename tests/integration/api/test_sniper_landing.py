"""Snipers of one launch land in the first block whose clock reaches the pool's open time, in
submission order, each at the price its turn gives; maxPrice makes the late ones fail
SLIPPAGE_EXCEEDED rather than overpay. The real system: API, trigger engine, router, Kafka, a
chain node running the real CPMM program."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from services.chain.launch import launch_and_publish
from services.domain.launch import LaunchSpec, LaunchVenue
from tests.fixtures.settings import MakeSettings, unique
from tests.integration.api.test_conditional_orders import running
from tests.integration.api.test_sniper_orders import snipe

LIQUIDITY = Decimal(4)  # SOL against the whole supply (10^9 LAND): 4e-9 SOL per LAND
AMOUNT = Decimal(2)  # each buy is half the pool's SOL: average prices 1.5, 3, 5, 7.5 x spot
MAX_PRICE = Decimal("0.000000016")  # 4 x spot: the first two fill, the rest would overpay


async def rpc(url: str, method: str, *params: Any) -> Any:
    async with httpx.AsyncClient() as client:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        answer = (await client.post(url, json=body)).json()
    assert "error" not in answer, answer
    return answer["result"]


async def test_snipers_land_in_the_first_open_block_in_submission_order(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings(
        market_ticks_topic=unique("market.ticks"), chain_events_topic=unique("chain.events")
    )
    async with running(settings) as system:
        lenient = {"mintRenounced": False, "freezeRenounced": False}
        # Armed one after another: submission order is this order.
        body: dict[str, Any] = {
            "amount": str(AMOUNT),
            "maxPrice": str(MAX_PRICE),
            "slippage": "0.9",
            "tokenOut": "LAND",  # launched tokens are known per process: one symbol per test
        }
        snipers = [await snipe(system, checks=lenient, **body) for _ in range(5)]
        spec = LaunchSpec(
            symbol="LAND", quote="SOL", liquidity=LIQUIDITY, venue=LaunchVenue.RAYDIUM,
            open_in_seconds=5,
        )  # fmt: skip
        launched = await launch_and_publish(system.api.settings, spec)
        finals = [
            await system.status_becomes(order_id, "completed", "failed", timeout=60)
            for order_id in snipers
        ]
        outcomes = [(o["status"], o.get("errorCode")) for o in finals]
        assert outcomes == [("completed", None)] * 2 + [("failed", "SLIPPAGE_EXCEEDED")] * 3
        # Each at the price its turn gives: the second paid more per LAND than the first, both
        # within maxPrice.
        paid = [Decimal(o["amount"]) / Decimal(o["amountOut"]) for o in finals[:2]]
        assert paid[0] < paid[1] <= MAX_PRICE

        # All five landed (two filled, three refused by the program's min out) in the first
        # block whose clock reached the open time, in submission order.
        url = system.api.settings.solana_rpc_url
        slots = {(await rpc(url, "getTransaction", o["txHash"], {}))["slot"] for o in finals}
        assert len(slots) == 1
        (slot,) = slots
        assert await rpc(url, "getBlockTime", slot) >= launched.open_time
        assert await rpc(url, "getBlockTime", slot - 1) < launched.open_time
        block = await rpc(url, "getBlock", slot, {"transactionDetails": "signatures"})
        ours = [s for s in block["signatures"] if s in {o["txHash"] for o in finals}]
        assert ours == [o["txHash"] for o in finals]
