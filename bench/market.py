"""Market ticks to many socket subscribers on one API process, and the market process's CPU.

Run: `.venv/bin/python -m bench.market [--sockets 1000] [--seconds 30] [--pair SOL-USDC]`.
Starts Kafka, PostgreSQL, the chain node, one projector, router and API process and the market
process (`oee market`, default volatility) as `bench.sockets` does (`bench.launcher.Launched`),
opens `--sockets` subscriptions to `WS /ws/markets/{pair}` and waits until each has its
`connected` message, then listens for `--seconds`. Every subscriber must receive every tick of
the window once, in sequence order, no gap. Prints (and writes with `--json`):

- tick latency: the tick's `at` (the wall-clock time the market process saw the slot, before
  its step: reading the block, the background swaps, publishing) to received by the subscriber,
  p50/p99 over every subscriber's ticks of the window;
- subscribers complete (every tick from their first live one on, consecutive);
- the market process's CPU per slot (CPU time over the window / ticks published in it) and the
  API's mean CPU. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.launcher import Launched, Topology, auth_headers, run_launched
from bench.orderlog import epoch
from bench.polling import TimedOut, eventually
from bench.report import machine, percentiles
from bench.samplers import ProcessInfo, ProcessSampler


@dataclass
class Subscriber:
    """What one market socket received in the window: sequences and delivery delays."""

    sequences: list[int] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    connected_at: float | None = None
    error: str | None = None

    def consecutive(self) -> bool:
        """Every tick once, in order, from the first one received on."""
        return bool(self.sequences) and all(b == a + 1 for a, b in pairwise(self.sequences))


async def subscribe(
    session: aiohttp.ClientSession,
    url: str,
    subscriber: Subscriber,
    window: list[float],
    headers: dict[str, str],
) -> None:
    """Record the ticks whose `at` falls in the window: from window[0] (set once every socket is
    connected) to window[1] (set when listening ends), the stored tick sent on connect aside."""
    try:
        async with session.ws_connect(
            url, max_msg_size=1 << 20, heartbeat=None, headers=headers
        ) as socket:
            async for message in socket:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                received = time.time()
                data = orjson.loads(message.data)
                if data.get("status") == "connected":
                    subscriber.connected_at = received
                    continue
                if data.get("type") != "tick":
                    subscriber.error = str(data.get("error") or data)
                    break
                at = epoch(data["at"])
                if window and window[0] <= at and (len(window) == 1 or at < window[1]):
                    subscriber.sequences.append(data["sequence"])
                    subscriber.delays.append(received - at)
    except (aiohttp.ClientError, OSError) as exc:
        subscriber.error = type(exc).__name__


async def run(args: argparse.Namespace, launched: Launched) -> dict[str, Any]:
    (base,) = await launched.start_processes()
    await launched.wait_healthy([base])
    children = launched.children
    sampler = ProcessSampler(
        [
            ProcessInfo("api", children["api"].pid),
            ProcessInfo("market", children["market"].pid),
            ProcessInfo("subscribers", os.getpid()),
        ],
        interval=0.5,
    )
    await sampler.start()
    subscribers = [Subscriber() for _ in range(args.sockets)]
    url = base.replace("http://", "ws://") + f"/ws/markets/{args.pair}"
    sockets = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    window: list[float] = []
    started = time.time()
    tasks = []
    try:
        for subscriber in subscribers:
            # With the system's generated key: authentication is on, as users run it (every
            # socket was refused UNAUTHORIZED before the bench sent one).
            headers = auth_headers(launched.api_key)
            tasks.append(asyncio.create_task(subscribe(sockets, url, subscriber, window, headers)))
            if len(tasks) % 200 == 0:
                await asyncio.sleep(0)  # let the handshakes progress as we go

        async def all_connected() -> bool:
            return all(s.connected_at or s.error for s in subscribers)

        with contextlib.suppress(TimedOut):  # the report says how many did
            await eventually(all_connected, timeout=args.connect_timeout, interval=0.2)
        connected = sum(s.connected_at is not None for s in subscribers)
        connect_seconds = time.time() - started
        print(f"{connected:,}/{args.sockets:,} subscribers connected in {connect_seconds:.1f}s")
        window.append(time.time())
        await asyncio.sleep(args.seconds)
        ended = time.time()
        window.append(ended)
        await asyncio.sleep(1.0)  # the window's last ticks, still on their way
    finally:
        await sampler.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sockets.close()

    listening = [s for s in subscribers if s.error is None and s.connected_at is not None]
    ticks = len({seq for s in listening for seq in s.sequences})
    complete = sum(s.consecutive() and len(s.sequences) >= ticks for s in listening)
    processes = sampler.summary(window[0], ended, ticks)
    market = processes.get("market", {})
    return {
        "machine": machine(),
        "pair": args.pair,
        "sockets": args.sockets,
        "connected": connected,
        "connect_seconds": round(connect_seconds, 1),
        "window_seconds": args.seconds,
        "ticks_in_window": ticks,
        "subscribers_complete": complete,
        "subscribers_incomplete": args.sockets - complete,
        "errors": dict(Counter(s.error for s in subscribers if s.error)),
        "tick_latency_ms": percentiles([d for s in listening for d in s.delays]),
        "market_cpu_ms_per_slot": market.get("cpu_ms_per_order"),
        "processes": processes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30, help="how long to listen")
    parser.add_argument("--pair", default="SOL-USDC")
    parser.add_argument("--connect-timeout", type=float, default=120)
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    args = parser.parse_args()
    if not 0 < args.sockets <= 10_000 or not 0 < args.seconds <= 3600:
        parser.error("--sockets: 1 to 10,000; --seconds: up to 3600")
    launched = Launched(Topology(pg_no_fsync=True, market=True))
    report = run_launched(launched, lambda: run(args, launched))
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    if args.json:
        args.json.write_text(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
