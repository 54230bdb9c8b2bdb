"""Thousands of WebSocket subscribers on one API process: does every one get every event?

Run: `.venv/bin/python -m bench.sockets [--sockets 5000] [--orders 20] [--rate 10]`.
Starts Kafka, PostgreSQL, one projector, one router and one API process as
`bench.load` does (`bench.launcher.Launched`), opens `--sockets` firehose subscriptions
(`/ws/orders`) to the API and waits until each has its `connected` message, then
submits `--orders` orders at `--rate` per second. Every subscriber must receive
every event of every one of those orders: sequences 1..n per order, in order, no
gap, no duplicate, ending with the order's final event. Prints (and writes with
`--json`) the connect time, the subscribers complete / incomplete, the delivery
latency (event `timestamp` -> received by the subscriber) percentiles, the messages
delivered per second, and peak RSS and mean CPU of the API process. Loopback only;
stops by itself after `--drain-timeout`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.launcher import Launched, Topology, auth_headers, run_launched
from bench.orderlog import epoch
from bench.polling import TimedOut, eventually
from bench.report import machine, percentiles
from bench.samplers import ProcessInfo, ProcessSampler
from bench.workload import LoadConfig, order_payloads

FINAL = {"completed", "failed"}


@dataclass
class Subscriber:
    """What one firehose socket received: per order, the sequences, and delivery delays."""

    sequences: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    finals: set[str] = field(default_factory=set)
    delays: list[float] = field(default_factory=list)
    connected_at: float | None = None
    error: str | None = None

    def complete_for(self, orders: dict[str, int]) -> bool:
        """Every order's events 1..n exactly once, in order (n from the submitter's view);
        never for a subscriber that failed or a run with no order (nothing to be complete)."""
        return (
            self.error is None
            and bool(orders)
            and all(self.sequences.get(o) == list(range(1, n + 1)) for o, n in orders.items())
        )


async def subscribe(
    session: aiohttp.ClientSession, url: str, subscriber: Subscriber, headers: dict[str, str]
) -> None:
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
                order_id = data["orderId"]
                subscriber.sequences[order_id].append(data["sequence"])
                subscriber.delays.append(received - epoch(data["timestamp"]))
                if data["status"] in FINAL:
                    subscriber.finals.add(order_id)
    except (aiohttp.ClientError, OSError) as exc:
        subscriber.error = type(exc).__name__


async def submit(
    session: aiohttp.ClientSession,
    base: str,
    count: int,
    rate: float,
    seed: int,
    headers: dict[str, str],
) -> list[str]:
    """`count` orders (the load generator's mix) on a fixed schedule; the ids of those accepted."""
    bodies = order_payloads(LoadConfig(rate=rate, duration=count / rate, seed=seed))
    accepted: list[str] = []
    start = time.monotonic()
    for index in range(count):
        await asyncio.sleep(max(0.0, start + index / rate - time.monotonic()))
        async with session.post(
            f"{base}/api/orders/execute",
            data=next(bodies)[0],
            headers={"content-type": "application/json", **headers},
        ) as response:
            answer = await response.read()
            if response.status == 202:
                accepted.append(orjson.loads(answer)["orderId"])
    return accepted


async def run(args: argparse.Namespace, launched: Launched) -> dict[str, Any]:
    (base,) = await launched.start_processes()
    # One key for the sockets and the orders: a key's firehose shows that key's orders.
    headers = auth_headers(launched.api_key)
    await launched.wait_healthy([base])
    api = launched.children["api"].pid
    sampler = ProcessSampler(
        [ProcessInfo("api", api), ProcessInfo("subscribers", os.getpid())], interval=0.5
    )
    await sampler.start()
    subscribers = [Subscriber() for _ in range(args.sockets)]
    url = base.replace("http://", "ws://") + "/ws/orders"
    sockets = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    http = aiohttp.ClientSession()
    started = time.time()
    tasks = []
    try:
        for subscriber in subscribers:
            tasks.append(asyncio.create_task(subscribe(sockets, url, subscriber, headers)))
            if len(tasks) % 200 == 0:
                await asyncio.sleep(0)  # let the handshakes progress as we go

        async def all_connected() -> bool:
            return all(s.connected_at or s.error for s in subscribers)

        with contextlib.suppress(TimedOut):  # the report says how many did
            await eventually(all_connected, timeout=args.connect_timeout, interval=0.2)
        connected = sum(s.connected_at is not None for s in subscribers)
        connect_seconds = time.time() - started
        print(f"{connected:,}/{args.sockets:,} subscribers connected in {connect_seconds:.1f}s")

        sending = time.time()
        accepted = await submit(http, base, args.orders, args.rate, args.seed, headers)
        print(f"{len(accepted)}/{args.orders} orders accepted; waiting for every event ...")
        wanted = set(accepted)

        async def all_final() -> bool:
            return all(wanted <= s.finals for s in subscribers if s.error is None)

        with contextlib.suppress(TimedOut):  # the report says how many have every event
            await eventually(all_final, timeout=args.drain_timeout, interval=0.2)
        drained = time.time()
    finally:
        await sampler.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sockets.close()
        await http.close()

    # The number of events of each order: the longest run any subscriber saw ending final.
    lengths = {
        order: max((len(s.sequences.get(order, [])) for s in subscribers), default=0)
        for order in accepted
    }
    complete = sum(s.complete_for(lengths) for s in subscribers)
    delivered = sum(len(s.delays) for s in subscribers)
    errors: dict[str, int] = defaultdict(int)
    for s in subscribers:
        if s.error:
            errors[s.error] += 1
    return {
        "machine": machine(),
        "sockets": args.sockets,
        "connected": connected,
        "connect_seconds": round(connect_seconds, 1),
        "orders_accepted": len(accepted),
        "events_per_subscriber": sum(lengths.values()),
        "subscribers_complete": complete,
        "subscribers_incomplete": args.sockets - complete,
        "errors": dict(errors),
        "messages_delivered": delivered,
        "messages_per_second": round(delivered / max(drained - sending, 1e-9)),
        "delivery_latency_ms": percentiles([d for s in subscribers for d in s.delays]),
        "processes": sampler.summary(started, drained, len(accepted)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=5000)
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--rate", type=float, default=10, help="orders per second")
    parser.add_argument("--venue-latency", choices=("realistic", "zero"), default="zero")
    parser.add_argument("--connect-timeout", type=float, default=120)
    parser.add_argument("--drain-timeout", type=float, default=120)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    args = parser.parse_args()
    if not 0 < args.sockets <= 10_000 or not 0 < args.orders <= 10_000:
        parser.error("--sockets and --orders: 1 to 10,000")
    # The system as bench.load starts it by default, with our venue latency.
    launched = Launched(Topology(venue_latency=args.venue_latency, pg_no_fsync=True))
    report = run_launched(launched, lambda: run(args, launched))
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    if args.json:
        args.json.write_text(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
