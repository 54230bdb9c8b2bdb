"""Snipers of one launch land in the first block whose clock reaches the pool's open time, in
submission order, each at the price its turn gives; maxPrice makes the late ones fail
SLIPPAGE_EXCEEDED rather than overpay. The real system: API, trigger engine, router, Kafka, a
chain node running the real CPMM program."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from services.chain.launch import launch_and_publish
from services.common.settings import Settings
from services.domain.launch import LaunchSpec, LaunchVenue
from services.router.runtime import RouterRuntime
from tests.e2e.system import read_log
from tests.fixtures.projector import eventually, projector_running
from tests.fixtures.router import router_running
from tests.fixtures.settings import MakeSettings, unique
from tests.integration.api.support import running_api
from tests.integration.api.test_conditional_orders import (
    System,
    Ticks,
    chain_node,
    running,
    triggers_running,
)
from tests.integration.api.test_sniper_orders import snipe
from tests.integration.test_chain_rpc import GENESIS

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


@contextlib.asynccontextmanager
async def two_routers_running(
    settings: Settings,
) -> AsyncIterator[tuple[System, tuple[RouterRuntime, RouterRuntime]]]:
    """The system of `running` with two routers in the group, each owning some partitions."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        async with chain_node(settings) as node:
            settings = settings.model_copy(
                update={"solana_rpc_url": node.url, "chain_seed": GENESIS.seed}
            )
            async with (
                router_running(settings) as first,
                router_running(settings) as second,
                projector_running(settings),
                running_api(settings) as api,
                triggers_running(settings) as engine,
            ):
                routers = (first, second)
                every = set(range(settings.orders_topic_partitions))

                async def split() -> bool:
                    owned = [owned_partitions(r) for r in routers]
                    return all(owned) and owned[0] | owned[1] == every

                await eventually(split, "the two routers sharing the partitions", timeout=30)
                yield System(api, Ticks(settings, producer), engine), routers
    finally:
        await producer.stop()


def owned_partitions(runtime: RouterRuntime) -> set[int]:
    return set() if runtime.router is None else set(runtime.router.resume_offsets())


def interleaved(owners: list[int]) -> bool:
    """Whether a router's snipers are not contiguous in submission order (A, B, A): then
    arrival order by router batches cannot be submission order."""
    return any(
        owners[i] == owners[k] != owners[j]
        for i in range(len(owners))
        for j in range(i + 1, len(owners))
        for k in range(j + 1, len(owners))
    )


async def test_snipers_sent_by_two_routers_land_in_submission_order(
    make_settings: MakeSettings,
) -> None:
    """Each router sends its own snipers at S - 1; their priority fees (by rank in the launch)
    order the open block, so the union lands in submission order, not batch by batch."""
    settings = make_settings(
        market_ticks_topic=unique("market.ticks"), chain_events_topic=unique("chain.events")
    )
    async with two_routers_running(settings) as (system, routers):
        lenient = {"mintRenounced": False, "freezeRenounced": False}
        body: dict[str, Any] = {
            "amount": str(AMOUNT),
            "maxPrice": str(MAX_PRICE),
            "slippage": "0.9",
            "tokenOut": "TWIN",  # launched tokens are known per process: one symbol per test
        }
        owner_of = [owned_partitions(r) for r in routers]
        snipers: list[str] = []
        owners: list[int] = []
        # Orders go to partitions by id: arm snipers until both routers hold some, interleaved.
        while not (interleaved(owners) and min(owners.count(0), owners.count(1)) >= 2):
            assert len(snipers) < 24, f"24 snipers did not spread over both routers: {owners}"
            snipers.append(await snipe(system, checks=lenient, **body))
            partition_of = {
                str(envelope.order_id): partition
                for partition, _, envelope in await read_log(system.api.settings)
            }
            owners = [0 if partition_of[s] in owner_of[0] else 1 for s in snipers]
        spec = LaunchSpec(
            symbol="TWIN", quote="SOL", liquidity=LIQUIDITY, venue=LaunchVenue.RAYDIUM,
            open_in_seconds=5,
        )  # fmt: skip
        await launch_and_publish(system.api.settings, spec)
        finals = [
            await system.status_becomes(order_id, "completed", "failed", timeout=60)
            for order_id in snipers
        ]
        # Nobody took over another's partitions meanwhile: each router sent its own snipers.
        assert [owned_partitions(r) for r in routers] == owner_of
        outcomes = [(o["status"], o.get("errorCode")) for o in finals]
        late = len(snipers) - 2
        assert outcomes == [("completed", None)] * 2 + [("failed", "SLIPPAGE_EXCEEDED")] * late

        url = system.api.settings.solana_rpc_url
        slots = {(await rpc(url, "getTransaction", o["txHash"], {}))["slot"] for o in finals}
        assert len(slots) == 1, slots  # the first open block, both routers' batches
        block = await rpc(url, "getBlock", slots.pop(), {"transactionDetails": "signatures"})
        ours = [s for s in block["signatures"] if s in {o["txHash"] for o in finals}]
        assert ours == [o["txHash"] for o in finals]
