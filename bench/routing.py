"""Route 10,000 seeded orders of mixed sizes through the seeded genesis market and report.

Run: `.venv/bin/python -m bench.routing [--orders N] [--seed S]`. The pools start as the
chain's genesis builds them; every fill is applied to them (one second apart), so later quotes
see the liquidity earlier orders took. Half the orders go each way; nothing else moves prices
(the simulated chain's random walk and arbitrage are gone).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import Counter, defaultdict
from decimal import Decimal

from services.domain.tokens import from_base_units, get_token
from services.pricing.routing import RouteKind, RoutingError, plan_route, pools_for_pair
from services.venues.market import Market
from services.venues.pool import InsufficientLiquidityError, Venue

ROUTES = (
    ("SOL", "USDC"),
    ("SOL", "USDT"),
    ("USDT", "USDC"),
    ("JUP", "USDC"),
    ("RAY", "USDC"),
    ("BONK", "USDC"),
    ("JUP", "SOL"),  # no direct pool: two hops through USDC
    ("BONK", "SOL"),
)
BUCKETS = ((10, 1_000), (1_000, 10_000), (10_000, 100_000), (100_000, 1_000_000))
SLIPPAGE = Decimal("0.01")
THRESHOLD_BPS = Decimal(1)


def usd_price(market: Market, symbol: str) -> Decimal:
    """Value one whole token in dollars, from the reference mids (stables at par)."""
    if symbol in ("USDC", "USDT"):
        return Decimal(1)
    return market.reference_mid((symbol, "USDC"))


def bucket_of(usd: Decimal) -> str:
    """Name the order-size bucket of a dollar amount."""
    for low, high in BUCKETS:
        if usd < high:
            return f"${low:,}-${high:,}"
    return f">${BUCKETS[-1][1]:,}"


def main() -> None:
    """Run the orders and print the venue shares, splits, impact by size and quote time."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    market = Market(seed=args.seed)
    book = dict(market.pools)
    rng = random.Random(f"{args.seed}:orders")
    wins: Counter[str] = Counter()
    volume: defaultdict[Venue, Decimal] = defaultdict(Decimal)
    kinds: Counter[RouteKind] = Counter()
    split_gains: list[Decimal] = []
    impacts: defaultdict[str, list[Decimal]] = defaultdict(list)
    cpu: list[float] = []
    failures = 0

    for now in range(1, args.orders + 1):
        token_in, token_out = rng.choice(ROUTES)
        if rng.random() < 0.5:  # half the orders go the other way
            token_in, token_out = token_out, token_in
        usd = Decimal(repr(10 ** rng.uniform(1, 6))).quantize(Decimal("0.01"))
        whole = usd / usd_price(market, token_in)
        amount = int(whole.scaleb(get_token(token_in).decimals))

        started = time.process_time()
        try:
            plan = plan_route(
                book,
                token_in,
                token_out,
                amount,
                slippage=SLIPPAGE,
                split_threshold_bps=THRESHOLD_BPS,
                now=now,
            )
        except (RoutingError, InsufficientLiquidityError):
            cpu.append(time.process_time() - started)
            failures += 1
            continue
        cpu.append(time.process_time() - started)

        kinds[plan.kind] += 1
        if plan.kind is RouteKind.SPLIT:
            split_gains.append(plan.split_improvement_bps)
            wins["split"] += 1
        elif plan.kind is RouteKind.SINGLE:
            wins[plan.legs[0].venue.value] += 1
        else:
            wins["multihop"] += 1
        impacts[bucket_of(usd)].append(plan.price_impact)
        for leg in plan.legs:
            pool = pools_for_pair(book, leg.token_in, leg.token_out, (leg.venue,))
            fill = pool[leg.venue].swap(leg.token_in, leg.amount_in, now)
            book[(leg.venue, fill.pool_after.tokens)] = fill.pool_after
            if leg.token_in == token_in:
                volume[leg.venue] += from_base_units(leg.token_in, leg.amount_in) * usd_price(
                    market, leg.token_in
                )

    routed = sum(kinds.values())
    print(f"orders: {args.orders}, routed: {routed}, failed (liquidity): {failures}")
    print("winner by order (single-venue routes, splits, two-hop routes):")
    for name, count in wins.most_common():
        print(f"  {name:<9} {count:>6}  {count / routed:6.1%}")
    total_volume = sum(volume.values())
    print("share of routed dollar volume (first hop):")
    for venue in Venue:
        print(f"  {venue.value:<9} {volume[venue] / total_volume:6.1%}")
    print(f"splits: {kinds[RouteKind.SPLIT]} ({kinds[RouteKind.SPLIT] / routed:.1%} of orders)")
    if split_gains:
        print(f"  median gain over the best single venue: {statistics.median(split_gains)} bps")
    print("mean price impact by order size (fees included):")
    for low, _ in BUCKETS:
        name = bucket_of(Decimal(low))
        values = impacts[name]
        if values:
            mean = sum(values) / len(values) * 10_000
            print(f"  {name:<20} {len(values):>6} orders  {mean:9.2f} bps")
    per_quote = statistics.fmean(cpu) * 1e3
    p99 = statistics.quantiles(cpu, n=100)[98] * 1e3
    print(
        f"CPU per quote: mean {per_quote:.3f} ms, median {statistics.median(cpu) * 1e3:.3f} ms,"
        f" p99 {p99:.3f} ms, max {max(cpu) * 1e3:.3f} ms"
    )


if __name__ == "__main__":
    main()
