"""The trigger book under a million resting orders: memory, a quiet tick, a crossing tick.

Run: `.venv/bin/python -m bench.triggers [--orders N] [--core-orders M]`.

- memory per resting order: RSS growth while the book fills, divided by the orders;
- CPU per tick that crosses nothing (the common case: prices move inside the book's gap);
- tick -> proposals in-process (the core: crossing, then building each `OrderTriggered`
  envelope with its sequence and hash), p50/p99 over ticks that each cross a few orders;
- the same memory figure for the whole core (`TriggerCore`: the fold's `OrderState` per
  order as well as the book), on fewer orders.

Orders: limits above and stops below a SOL/USDC mid of 150 (and the inverse direction),
levels spread over +-40 %, so a tick at the mid crosses nothing.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from schemas.envelope import Envelope, genesis_hash
from schemas.events import OrderSubmitted, OrderType
from schemas.market import MarketTick, VenueTick
from services.triggers.book import TriggerBook, legs_of
from services.triggers.core import TriggerCore

MID = Decimal(150)
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * 4096


def level(rng: random.Random, above: bool) -> Decimal:
    offset = Decimal(rng.randint(10, 4_000)) / 10_000  # 0.1 % .. 40 %
    return (MID * (1 + offset if above else 1 - offset)).quantize(Decimal("0.0001"))


def fill_book(orders: int, seed: int) -> tuple[TriggerBook, float, int]:
    rng = random.Random(seed)
    gc.collect()
    before = rss_bytes()
    book = TriggerBook()
    began = time.perf_counter()
    for i in range(orders):
        kind = OrderType.LIMIT if i % 2 else OrderType.STOP
        price = level(rng, kind is OrderType.LIMIT)
        legs = legs_of(kind, limit_price=price, trigger_price=price)
        expires = NOW + timedelta(days=7, seconds=i)  # every order has one (the default 7 d)
        book.add(uuid.UUID(int=rng.getrandbits(128)), ("SOL", "USDC"), legs, expires)
    seconds = time.perf_counter() - began
    gc.collect()
    return book, seconds, rss_bytes() - before


def quiet_ticks(book: TriggerBook, ticks: int) -> float:
    """Mean CPU seconds of a tick at the mid (crosses nothing)."""
    began = time.process_time()
    for i in range(ticks):
        assert not book.on_tick(("SOL", "USDC"), MID + Decimal(i % 7) / 100)
    return (time.process_time() - began) / ticks


def tick(mid: Decimal, slot: int) -> MarketTick:
    venue = VenueTick(venue="RAYDIUM", mid=mid, depth_bid=Decimal(1), depth_ask=Decimal(1))
    return MarketTick(
        pair="SOL-USDC", base="SOL", quote="USDC", slot=slot, at=NOW, reference=mid,
        venues=(venue,),
    )  # fmt: skip


def fill_core(orders: int, seed: int) -> tuple[TriggerCore, int]:
    rng = random.Random(seed)
    gc.collect()
    before = rss_bytes()
    core = TriggerCore()
    for i in range(orders):
        order_id = uuid.UUID(int=rng.getrandbits(128))
        kind = OrderType.LIMIT if i % 2 else OrderType.STOP
        price = level(rng, kind is OrderType.LIMIT)
        # As on the log: each order its own hash, submission time and expiry (not shared).
        event = OrderSubmitted(
            token_in="SOL", token_out="USDC", amount=Decimal(1), slippage=Decimal("0.01"),
            order_type=kind, **({"limit_price": price} if i % 2 else {"trigger_price": price}),
            expires_at=NOW + timedelta(days=7, seconds=i), owner="key-1",
        )  # fmt: skip
        envelope = Envelope.new(
            order_id=order_id, sequence=1, producer="api", prev_hash=genesis_hash(order_id),
            payload=event, occurred_at=NOW + timedelta(microseconds=i),
        )  # fmt: skip
        core.apply(envelope, hashlib.sha256(order_id.bytes).hexdigest(), NOW)
    gc.collect()
    return core, rss_bytes() - before


def crossing_ticks(core: TriggerCore, rounds: int) -> list[float]:
    """Seconds from a tick to its proposals, for ticks that each cross the next few levels."""
    samples = []
    price = MID
    for slot in range(rounds):
        price += Decimal("0.02")  # up through the nearest limits
        began = time.perf_counter()
        core.on_tick(tick(price, slot), NOW)
        samples.append(time.perf_counter() - began)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--core-orders", type=int, default=100_000)
    parser.add_argument("--ticks", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()

    book, seconds, grown = fill_book(args.orders, args.seed)
    print(f"book: {args.orders:,} resting orders in {seconds:.1f}s "
          f"({seconds / args.orders * 1e6:.1f} us per add)")  # fmt: skip
    print(f"  memory: {grown / 2**20:.0f} MB, {grown / args.orders:.0f} bytes per order")
    quiet = quiet_ticks(book, args.ticks)
    print(f"  tick crossing nothing: {quiet * 1e6:.1f} us CPU (mean of {args.ticks:,})")
    del book
    gc.collect()

    core, core_grown = fill_core(args.core_orders, args.seed)
    print(f"core: {args.core_orders:,} conditional orders (fold state + book): "
          f"{core_grown / args.core_orders:.0f} bytes per order")  # fmt: skip
    samples = crossing_ticks(core, 2_000)
    crossed = args.core_orders // 2 - core.resting + args.core_orders // 2
    quantiles = statistics.quantiles(samples, n=100)
    print(f"  tick -> proposals in-process: p50 {quantiles[49] * 1e6:.0f} us,"
          f" p99 {quantiles[98] * 1e6:.0f} us over {len(samples):,} ticks"
          f" ({len(core.in_flight):,} proposals, {crossed:,} left the book)")  # fmt: skip


if __name__ == "__main__":
    main()
