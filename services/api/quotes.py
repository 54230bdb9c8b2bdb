"""Quotes without placing anything: the same routing the router runs, over the chain's pools.

Like an aggregator's `/quote`, it reads the programs' pool accounts from the chain's JSON-RPC
(`rpc_venues.RpcPoolSource`: pools discovered with getProgramAccounts, one shared snapshot
reloaded at most every quarter of a second) and computes locally, so it answers at once and the
result names the slot it was computed from.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from decimal import Decimal

from services.chain.rpc_venues import RpcFailure, RpcPoolSource, rpc_venues
from services.pricing.ports import ChainUnreachable
from services.pricing.quote import Quote, VenuesUnavailable, quote_order
from services.venues.pool import Venue

SNAPSHOT_MAX_AGE_SECONDS = 0.25


class ChainUnavailableError(Exception):
    """The chain's RPC cannot be read: quotes answer 503 CHAIN_UNAVAILABLE."""


class Quoter:
    """Quotes orders from a cached snapshot of the chain's pool accounts."""

    def __init__(self, rpc_url: str, *, split_threshold_bps: Decimal) -> None:
        self.rpc_url = rpc_url
        self._source = RpcPoolSource(rpc_url, max_age=SNAPSHOT_MAX_AGE_SECONDS)
        self._venues = rpc_venues(self._source)
        self._split_threshold_bps = split_threshold_bps

    async def close(self) -> None:
        await self._source.close()

    async def list_pools_again(self) -> None:
        """List the chain's pools afresh (a launched pool now exists) and read them anew."""
        await self._source.discover()
        self._source.expire_snapshot()

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
        except (VenuesUnavailable, ChainUnreachable, RpcFailure) as exc:
            raise ChainUnavailableError(
                f"the chain's RPC at {self.rpc_url} cannot be read ({exc})"
            ) from None

    async def chain_slot(self) -> tuple[int, float]:
        """The chain's current slot and how long asking took (seconds); raises ChainUnreachable
        or RpcFailure when it cannot tell."""
        began = time.monotonic()
        slot = await self._source.slot()
        return slot, time.monotonic() - began
