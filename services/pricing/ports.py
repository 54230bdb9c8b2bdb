"""What the pricing core needs from the outside world, as types and a protocol.

Routers quote by reading pool accounts and computing the swap locally; an adapter is
that read. The adapters over Solana JSON-RPC live in `services/chain/rpc_venues.py`: they
decode the programs' accounts into `Pool` values (`services/pricing/accounts/`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.venues.pool import PoolBook, Venue


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """Every pool as of `slot`: what a router reads to quote locally."""

    slot: int
    pools: PoolBook


class ChainUnreachable(Exception):
    """The chain itself cannot be reached (its JSON-RPC is down or not answering).

    Unlike a venue's transient failure this uses up no attempt: the order waits
    and the step is done again, which is safe because every step is idempotent.
    """


class VenueAdapter(Protocol):
    """Reads one venue's pools for quoting."""

    @property
    def venue(self) -> Venue: ...

    async def load_pools(self) -> tuple[int, PoolBook]:
        """Return (slot, this venue's pools) as of the slot read; raise ChainUnreachable
        when our side, not the venue, is down."""
        ...
