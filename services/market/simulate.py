"""The market process's pricing loop without the chain: the walk and the flow over pure pools.

What `process.py` does each slot (step the reference, move each venue's pool toward its target
with the background's swap), applied to immutable `Pool` values instead of sent to the chain,
so a seeded run of many slots takes seconds and shows what the defaults produce: for example
how often the best venue for a sale changes (issue 16 asks for at least once in 10 minutes).
Pure: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal

from services.market.flow import DEFAULT_MAX_MOVE_BPS, flow_trade, pool_mid
from services.market.walk import Walk
from services.pricing.accounts.pools import DlmmBinPool
from services.venues.pool import Pool, SwapError, Venue


@dataclass(frozen=True, slots=True)
class SimulatedSlot:
    """One slot's outcome: the reference, each venue's mid, and where the probe sells best."""

    slot: int
    reference: Decimal
    mids: Mapping[Venue, Decimal]
    best: Venue | None  # the venue paying most for the probe sale; None if none can fill it


def best_venue(pools: Mapping[Venue, Pool], token_in: str, amount_in: int) -> Venue | None:
    """The venue whose pool pays most for selling `amount_in` of `token_in` (fees included)."""
    paid: dict[Venue, int] = {}
    for venue, pool in pools.items():
        try:
            paid[venue] = pool.amount_out(token_in, amount_in, 0)
        except SwapError:  # deeper than this pool: it cannot be the best
            continue
    return max(paid, key=lambda v: paid[v]) if paid else None


def simulate(
    pools: Mapping[Venue, Pool],
    walk: Walk,
    pair: str,
    reference: Decimal,
    slots: int,
    *,
    probe: tuple[str, int],
    slot_ms: int = 400,
    max_move_bps: Decimal = DEFAULT_MAX_MOVE_BPS,
) -> Iterator[SimulatedSlot]:
    """Run `slots` slots from slot 1: the reference's step, then each venue's background swap
    toward its target, then the best venue for `probe` = (token sold, amount in base units)."""
    current = dict(pools)
    clocks = {v: p.clock for v, p in current.items() if isinstance(p, DlmmBinPool)}
    for slot in range(1, slots + 1):
        reference = walk.step(reference, pair, slot)
        for venue, pool in current.items():
            if isinstance(pool, DlmmBinPool):  # the DLMM's dynamic fee decays with chain time
                pool = dataclasses.replace(pool, clock=clocks[venue] + slot * slot_ms // 1000)
            target = walk.venue_target(reference, venue.value, pair, slot)
            trade = flow_trade(pool, target, max_move_bps=max_move_bps)
            if trade is not None:
                pool = pool.swap(trade.token_in, trade.amount_in, 0).pool_after
            current[venue] = pool
        yield SimulatedSlot(
            slot,
            reference,
            {venue: pool_mid(pool) for venue, pool in current.items()},
            best_venue(current, *probe),
        )
