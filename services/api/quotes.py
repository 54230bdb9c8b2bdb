"""Quotes without placing anything: the same routing the router runs, over the chain's pools.

Like an aggregator's `/quote`, it reads pool accounts (cached for a quarter of a
second) and computes locally, so it answers at once and the result names the
market slot it was computed from.
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from services.api.read_model import ReadModelUnavailable
from services.chain.adapters import SimulatedVenue, SnapshotCache
from services.chain.ledger import load_snapshot
from services.pricing.ports import ChainUnreachable
from services.pricing.quote import Quote, VenuesUnavailable, quote_order
from services.venues.pool import Venue

SNAPSHOT_MAX_AGE_SECONDS = 0.25


class Quoter:
    """Quotes orders from a cached snapshot of the chain's pools."""

    def __init__(self, db: AsyncConnectionPool, *, split_threshold_bps: Decimal, seed: int) -> None:
        cache = SnapshotCache(lambda: load_snapshot(db), SNAPSHOT_MAX_AGE_SECONDS)
        self._venues = [SimulatedVenue(v, cache, seed=seed, latency=(0, 0)) for v in Venue]
        self._split_threshold_bps = split_threshold_bps

    async def quote(
        self,
        token_in: str,
        token_out: str,
        amount: Decimal,
        slippage: Decimal,
        venues: Collection[Venue],
    ) -> Quote:
        try:
            return await quote_order(
                self._venues,
                token_in,
                token_out,
                amount,
                slippage,
                split_threshold_bps=self._split_threshold_bps,
                allowed=venues,
            )
        except (psycopg.Error, PoolTimeout, VenuesUnavailable, ChainUnreachable) as exc:
            # No pools yet (no router has opened the chain) or PostgreSQL down: a 503.
            raise ReadModelUnavailable(f"pool accounts unavailable: {exc}") from None
