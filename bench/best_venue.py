"""How often the best venue for a sale changes, in-process: the walk and flow over genesis pools.

Run: `.venv/bin/python -m bench.best_venue [--seeds 12] [--minutes 10] [--sell 100]`.
Builds the default genesis (the seeded VM, no node), decodes SOL-USDC's pools as the RPC adapter
does, and runs `services.market.simulate` with the default walk (volatility, slot length, flow
cap) for each market seed 0..n-1: per slot the reference's step, each venue's background swap,
and the venue paying most for `--sell` SOL. Prints per seed how many times that venue changed,
and how many seeds saw none; `--venue-spread` tries another venue noise (the default, 2.0, is
`walk.VENUE_SPREAD`). Takes seconds: no Kafka, no database.
"""

from __future__ import annotations

import argparse
import time
from decimal import Decimal
from itertools import pairwise

import orjson

from services.chain.genesis import Genesis, build_genesis
from services.chain.svm.book import book_of, registry_of
from services.common.settings import Settings
from services.market.simulate import simulate
from services.market.walk import VENUE_SPREAD, Walk, slot_sigma
from services.venues.pool import Pool, Venue


def genesis_pools(base: str, quote: str) -> dict[Venue, Pool]:
    """The pair's pools on both venues as the default genesis builds them, decoded."""
    vm = build_genesis(Genesis(wallets=0)).vm
    book = book_of(vm, registry_of(vm))
    return {venue: book[(venue, (base, quote))] for venue in Venue}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=12, help="market seeds 0..n-1")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--sell", type=int, default=100, help="whole SOL sold by the probe")
    parser.add_argument("--venue-spread", type=float, default=VENUE_SPREAD)
    args = parser.parse_args()
    defaults = Settings()
    slots = int(args.minutes * 60_000 / defaults.slot_ms)
    pools = genesis_pools("SOL", "USDC")
    started = time.perf_counter()
    changes: dict[int, int] = {}
    for seed in range(args.seeds):
        walk = Walk(
            seed,
            slot_sigma(defaults.market_volatility, defaults.slot_ms),
            venue_spread=args.venue_spread,
        )
        run = simulate(
            pools,
            walk,
            "SOL-USDC",
            Decimal(150),
            slots,
            probe=("SOL", args.sell * 10**9),
            slot_ms=defaults.slot_ms,
            max_move_bps=defaults.market_max_move_bps,
        )
        best = [s.best for s in run]
        changes[seed] = sum(a != b for a, b in pairwise(best))
    report = {
        "slots_per_seed": slots,
        "sell_sol": args.sell,
        "venue_spread": args.venue_spread,
        "changes_per_seed": changes,
        "seeds_without_a_change": sum(n == 0 for n in changes.values()),
        "seconds": round(time.perf_counter() - started, 2),
    }
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


if __name__ == "__main__":
    main()
