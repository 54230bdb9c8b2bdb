"""Snipers on one launch while market orders arrive: `python -m bench.snipe`.

The whole system as real processes (chain node, projector, router, trigger engine, API; Kafka
and PostgreSQL through the project's launchers unless the environment names running ones):

1. `--snipers` sniper orders for MEME are armed through the API (before the launch);
2. market orders start at `--rate` a second (the load generator's mix, every one watched on
   its socket) and run for `--seconds`;
3. `--launch-after` seconds in, MEME is launched on the chain (CPMM, `--liquidity` SOL, open
   in `--open-in` seconds; authorities renounced, LP burned) and its events published;
4. once every sniper is final, each one's landing slot is read from the chain.

Reported: the snipers' outcomes; the share that landed in the first slot after the pool
opened (the first block whose clock reaches the open time: the router sends the pre-signed buys
once the block before it is committed), whether the landings (slot, then position in the block)
follow submission order, and each one's pool-open -> landed time: (landing slot - first open
slot) x the slot length, so 0 is the opening block itself; the market orders' submit ->
completed p50/p99 over the whole run and over the snipe window (from the launch to the last
sniper's landing): the priority lane must not starve them.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import aiohttp
import orjson

from bench.clients import Clients, OrderTrace, generate
from bench.launcher import Launched, Topology, auth_headers, run_launched, start_process
from bench.report import machine, percentiles
from bench.workload import LoadConfig
from infra.kafka.launcher import free_port
from services.chain.genesis import GENESIS_UNIX_TIMESTAMP
from services.chain.launch import launch_and_publish
from services.domain.launch import LaunchSpec, LaunchVenue

FINAL = ("completed", "failed", "cancelled", "expired")


@dataclass
class Sniper:
    index: int
    order_id: str
    armed_at: float
    final: dict[str, Any] | None = None
    landed_slot: int | None = None
    position: int | None = None  # in its block
    signed_at: float | None = None  # its first TransactionSubmitted, unix seconds
    attempts: int = 0


async def arm(http: aiohttp.ClientSession, base: str, args: argparse.Namespace) -> list[Sniper]:
    """Submit the snipers one after another (submission order is the order they should land)."""
    snipers = []
    for index in range(args.snipers):
        body = {
            "orderType": "sniper",
            "tokenIn": "SOL",
            "tokenOut": "MEME",
            "amount": args.amount,
            "maxPrice": args.max_price,
        }
        async with http.post(f"{base}/api/orders/execute", json=body) as response:
            answer = await response.json()
            if response.status != 202:
                raise SystemExit(f"sniper {index} refused: {response.status} {answer}")
        snipers.append(Sniper(index, answer["orderId"], time.time()))
    return snipers


async def signed_at(http: aiohttp.ClientSession, base: str, snipers: list[Sniper]) -> None:
    """When each sniper's first signed transaction was recorded, and how many attempts it took:
    a sniper recorded after the open, or retried, cannot be in the open's batch."""
    limit = asyncio.Semaphore(20)

    async def one(sniper: Sniper) -> None:
        async with limit, http.get(f"{base}/api/orders/{sniper.order_id}/events") as response:
            found = (await response.json())["events"]
        times = [e["occurredAt"] for e in found if e["type"] == "TransactionSubmitted"]
        if times:
            sniper.signed_at = datetime.fromisoformat(times[0]).timestamp()
        sniper.attempts = len(times)

    await asyncio.gather(*(one(s) for s in snipers))


async def finals(
    http: aiohttp.ClientSession, base: str, snipers: list[Sniper], timeout: float
) -> None:
    """Poll each sniper until it is final (or the timeout passes)."""
    deadline = time.time() + timeout
    limit = asyncio.Semaphore(20)

    async def one(sniper: Sniper) -> None:
        while time.time() < deadline:
            async with limit, http.get(f"{base}/api/orders/{sniper.order_id}") as response:
                if response.status == 200:
                    order = await response.json()
                    if order["status"] in FINAL:
                        sniper.final = order
                        return
            await asyncio.sleep(0.5)

    await asyncio.gather(*(one(s) for s in snipers))


async def landing_slots(http: aiohttp.ClientSession, rpc: str, snipers: list[Sniper]) -> None:
    """The slot and the position in its block of each landed sniper's transaction (a failed
    one too: SLIPPAGE_EXCEEDED from the program lands) (`getTransaction`, `getBlock`)."""
    done = [s for s in snipers if s.final and s.final.get("txHash")]
    for start in range(0, len(done), 100):
        chunk = done[start : start + 100]
        body = [
            {
                "jsonrpc": "2.0",
                "id": i,
                "method": "getTransaction",
                "params": [s.final["txHash"], {"encoding": "json"}],  # type: ignore[index]
            }
            for i, s in enumerate(chunk)
        ]
        async with http.post(rpc, data=orjson.dumps(body)) as response:
            answers = orjson.loads(await response.read())
        for answer in answers:
            result = answer.get("result")
            if result is not None:
                chunk[answer["id"]].landed_slot = int(result["slot"])
    for slot in sorted({s.landed_slot for s in done if s.landed_slot is not None}):
        body_one = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "getBlock",
            "params": [slot, {"transactionDetails": "signatures"}],
        }
        async with http.post(rpc, data=orjson.dumps(body_one)) as response:
            signatures = orjson.loads(await response.read())["result"]["signatures"]
        position = {signature: i for i, signature in enumerate(signatures)}
        for s in done:
            if s.landed_slot == slot:
                s.position = position[s.final["txHash"]]  # type: ignore[index]


def open_slot(open_time: int, slot_ms: int) -> int:
    """The first slot whose clock (genesis + slot x slot length, whole seconds) is open."""
    return math.ceil((open_time - GENESIS_UNIX_TIMESTAMP) * 1000 / slot_ms)


def market_latencies(traces: list[OrderTrace], since: float, until: float) -> dict[str, Any]:
    """submit -> completed (socket) of the market orders due in [since, until), in ms."""
    window = [t for t in traces if since <= t.due < until and "completed" in t.socket]
    return percentiles([t.socket["completed"] - t.due for t in window])  # seconds in, ms out


async def run(launched: Launched, args: argparse.Namespace) -> dict[str, Any]:
    assert launched.settings is not None
    # Metrics ports of this run's own: others may run the engine on this machine.
    settings = launched.settings = launched.settings.model_copy(
        update={"router_metrics_port": free_port(), "projector_metrics_port": free_port()}
    )
    urls = await launched.start_processes()
    env_triggers = {"OEE_TRIGGERS_METRICS_PORT": str(free_port())}
    launched.children["triggers"] = start_process(
        "triggers",
        {**launched.child_env(), **env_triggers},
        launched.tmp / "logs" / "triggers.log",
    )
    await launched.wait_healthy(urls)
    base = urls[0]
    config = LoadConfig(rate=args.rate, duration=args.seconds, ws_share=1.0, max_usd=1_000.0)
    clients = Clients(urls, config, launched.api_key)
    async with aiohttp.ClientSession(headers=auth_headers(launched.api_key)) as http:
        armed_started = time.time()
        snipers = await arm(http, base, args)
        armed_seconds = time.time() - armed_started
        load = asyncio.create_task(generate(clients, config, deadline_after=60))
        await asyncio.sleep(args.launch_after)
        launch_at = time.time()
        spec = LaunchSpec(
            symbol="MEME", quote="SOL", liquidity=Decimal(args.liquidity),
            venue=LaunchVenue.RAYDIUM, open_in_seconds=args.open_in,
        )  # fmt: skip
        launch = await launch_and_publish(settings, spec)
        await finals(http, base, snipers, timeout=args.open_in + 120)
        snipe_end = time.time()
        traces = await load
        await landing_slots(http, settings.solana_rpc_url, snipers)
        await signed_at(http, base, snipers)
    await clients.close()

    opened = open_slot(launch.open_time, settings.slot_ms)
    outcomes: dict[str, int] = {}
    for s in snipers:
        key = "not final" if s.final is None else s.final["status"]
        if s.final is not None and s.final["status"] == "failed":
            key = f"failed {s.final['errorCode']}"
        outcomes[key] = outcomes.get(key, 0) + 1
    landed = [s for s in snipers if s.landed_slot is not None]
    after = [s.landed_slot - opened for s in landed if s.landed_slot is not None]
    in_first = sum(1 for d in after if d == 0)
    landings = [(s.landed_slot, s.position) for s in sorted(landed, key=lambda s: s.index)]
    in_order = all(a <= b for a, b in itertools.pairwise(landings))
    start = min(t.due for t in traces) if traces else launch_at
    return {
        "snipers": args.snipers,
        "armed_in_seconds": round(armed_seconds, 2),
        "outcomes": outcomes,
        "open_slot": opened,
        "landed": len(landed),
        "landed_in_first_slot_after_open": in_first,
        "landed_in_first_slot_share": round(in_first / len(snipers), 3) if snipers else 0,
        "landed_slots_after_open": sorted(set(after)),
        "pool_open_to_landed_ms": percentiles([d * settings.slot_ms / 1000 for d in after]),
        "landing_slots_follow_submission_order": in_order,
        # Wall time, launch -> the sniper's first signed transaction recorded (the pool opens
        # about --open-in seconds after the launch).
        "launch_to_signed_ms": percentiles(
            [s.signed_at - launch_at for s in snipers if s.signed_at is not None]
        ),
        "signed_more_than_once": sum(1 for s in snipers if s.attempts > 1),
        "market": {
            "rate": args.rate,
            "seconds": args.seconds,
            "sent": len(traces),
            "completed": sum(1 for t in traces if "completed" in t.socket),
            "submit_to_completed_ms_all": market_latencies(traces, start, math.inf),
            "submit_to_completed_ms_snipe_window": market_latencies(traces, launch_at, snipe_end),
        },
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snipers", type=int, default=1000)
    parser.add_argument("--amount", default="0.01", help="SOL each sniper spends")
    parser.add_argument("--max-price", default="0.001", help="SOL per MEME at most")
    parser.add_argument("--rate", type=float, default=200.0, help="market orders a second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long market orders run")
    parser.add_argument("--launch-after", type=float, default=3.0)
    # 15 s: under 200 market orders/s the router records 1,000 snipers 8-10 s after the launch;
    # a buy recorded after the open cannot be in the open block (docs/benchmarks.md).
    parser.add_argument("--open-in", type=int, default=15)
    parser.add_argument("--liquidity", default="200")
    parser.add_argument("--router-max-in-flight", type=int, default=2000)
    parser.add_argument("--partitions", type=int, default=12)
    # Several routers split the snipers (by partition): their order then rests on priority fees.
    parser.add_argument("--routers", type=int, default=1)
    args = parser.parse_args()
    topology = Topology(
        router_max_in_flight=args.router_max_in_flight,
        partitions=args.partitions,
        routers=args.routers,
    )
    launched = Launched(topology)
    report = run_launched(launched, lambda: run(launched, args))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
