"""Seeded latency and faults around the router's chain and venues (`OEE_VENUE_LATENCY`,
`OEE_VENUE_FAILURE_RATE`), for testing and load: the chain itself is real.

`DelayedVenue` adds a seeded quote latency per venue (an RPC round trip to a remote node); the
confirmation latency is the chain's own, its slots.

`FaultyChain` injects the two faults an RPC really has, with a draw fixed by (seed, order,
attempt), so every router, including one taking over an order after a crash, sees the same
fault for the same attempt:

- **A refused send.** The attempt's bytes are refused before they reach the chain: the wrapper
  never passes them on. The router then asks the chain for the recorded signature (none: it was
  never sent), and the attempt fails transiently (`OrderRetrying`, VENUE_UNAVAILABLE); the next
  attempt is re-quoted and signed with a fresh blockhash. Rebuilding is safe here, which on a
  real RPC it would not be, *by construction of the fault*: the draw refuses every send of that
  (order, attempt), by any process, so those bytes never reach the chain and can never land
  beside the new ones. (A real refusal is handled the other way: `ChainUnreachable`, the same
  bytes re-sent until they land or their blockhash provably expires.)
- **A lost confirmation.** The transaction is sent and lands; only the answer is lost
  (`ConfirmationTimeout`). The router then asks the chain for the recorded signature, finds it
  landed and completes the order with that fill: no second transaction is ever signed.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from decimal import Decimal

from services.chain.client import ChainClient, ChainUnavailable, ConfirmationTimeout
from services.chain.transactions import Receipt, Transaction
from services.pricing.ports import VenueAdapter
from services.venues.pool import PoolBook, Venue

# Seconds per quote with OEE_VENUE_LATENCY=realistic: an RPC round trip per venue.
QUOTE_LATENCY = {Venue.RAYDIUM: (0.05, 0.15), Venue.METEORA: (0.08, 0.2)}


def fault_draw(seed: int, order_id: uuid.UUID, attempt: int, salt: str) -> Decimal:
    """A uniform draw in [0, 1) fixed by (seed, order, attempt): failures replay identically."""
    digest = hashlib.sha256(f"{seed}:{salt}:{order_id}:{attempt}".encode()).digest()
    return Decimal(int.from_bytes(digest[:8], "big")) / Decimal(2**64)


def injected_fault(
    seed: int, order_id: uuid.UUID, attempt: int, failure_rate: Decimal
) -> str | None:
    """ "refused", "lost" (half the failures each) or None for this order's attempt."""
    if fault_draw(seed, order_id, attempt, "send") >= failure_rate:
        return None
    return "lost" if fault_draw(seed, order_id, attempt, "kind") < Decimal("0.5") else "refused"


class FaultyChain:
    """A `ChainClient` that refuses some sends and loses some confirmations (module docstring)."""

    def __init__(self, inner: ChainClient, *, seed: int, failure_rate: Decimal) -> None:
        self._inner = inner
        self._seed = seed
        self._failure_rate = failure_rate
        self.refused = 0
        self.lost = 0

    async def sign(self, tx: Transaction) -> Transaction:
        return await self._inner.sign(tx)

    async def send_and_confirm(self, tx: Transaction, attempt: int) -> Receipt:
        fault = injected_fault(self._seed, tx.order_id, attempt, self._failure_rate)
        if fault == "refused":
            self.refused += 1
            msg = "RPC node refused the transaction before it reached the chain (injected)"
            raise ChainUnavailable(msg)
        receipt = await self._inner.send_and_confirm(tx, attempt)
        if fault == "lost":
            self.lost += 1
            msg = "the confirmation was lost after the transaction landed (injected)"
            raise ConfirmationTimeout(msg)
        return receipt

    async def receipt(self, tx: Transaction) -> Receipt | None:
        return await self._inner.receipt(tx)


class DelayedVenue:
    """A `VenueAdapter` answering after a seeded latency (one RPC round trip to a node)."""

    def __init__(self, inner: VenueAdapter, *, seed: int, latency: tuple[float, float]) -> None:
        self._inner = inner
        self._latency = latency
        self._rng = random.Random(f"{seed}:{inner.venue.value}:quote")

    @property
    def venue(self) -> Venue:
        return self._inner.venue

    async def load_pools(self) -> tuple[int, PoolBook]:
        low, high = self._latency
        if high > 0:
            await asyncio.sleep(self._rng.uniform(low, high))
        return await self._inner.load_pools()
