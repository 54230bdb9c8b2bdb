"""The simulated chain's venue adapters: pool accounts read from the ledger, for quoting.

They implement `services.pricing.ports.VenueAdapter`; a real adapter would fetch the
accounts over RPC and decode them into the same `Pool` values.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import psycopg
from psycopg_pool import PoolTimeout

from services.chain.client import unreachable_while
from services.pricing.ports import PoolSnapshot
from services.venues.pool import PoolBook, Venue


class SnapshotCache:
    """Pool accounts read from the chain at most every `max_age` seconds, shared by all quotes."""

    def __init__(self, load: Callable[[], Awaitable[PoolSnapshot]], max_age: float) -> None:
        self._load = load
        self._max_age = max_age
        self._snapshot: PoolSnapshot | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> PoolSnapshot:
        if self._snapshot is None or time.monotonic() - self._loaded_at > self._max_age:
            async with self._lock:  # one reload for all waiting quotes
                if self._snapshot is None or time.monotonic() - self._loaded_at > self._max_age:
                    try:
                        self._snapshot = await self._load()
                    except (psycopg.OperationalError, PoolTimeout) as exc:
                        raise unreachable_while(exc) from None
                    self._loaded_at = time.monotonic()
        return self._snapshot


class SimulatedVenue:
    """A simulated venue: its pools from the chain snapshot, after a seeded RPC latency."""

    def __init__(
        self, venue: Venue, cache: SnapshotCache, *, seed: int, latency: tuple[float, float]
    ) -> None:
        self._venue = venue
        self._cache = cache
        self._latency = latency
        self._rng = random.Random(f"{seed}:{venue.value}:quote")

    @property
    def venue(self) -> Venue:
        return self._venue

    async def load_pools(self) -> tuple[int, PoolBook]:
        low, high = self._latency
        if high > 0:
            await asyncio.sleep(self._rng.uniform(low, high))
        snapshot = await self._cache.get()
        return snapshot.slot, {
            key: pool for key, pool in snapshot.pools.items() if key[0] is self._venue
        }
