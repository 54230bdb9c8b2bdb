"""A sniper's priority fee: the compute-unit price that puts it in its place in the block.

A Solana leader's scheduler takes a block's transactions by priority (compute-unit price,
micro-lamports per compute unit), highest first; the chain node does the same (ties in
arrival order). Snipers of one launch are sent by several routers at once, so arrival order
mixes their batches; a price that falls with the sniper's rank in its launch (its submission
order, given by the trigger engine) lands them in submission order whoever sent them.
"""

from __future__ import annotations

# The lowest sniper price: above a market order's (none, 0), so even the last-ranked sniper
# goes ahead of a market order in the same block.
SNIPER_BASE_MICRO_LAMPORTS = 1_000
# Ranks get distinct prices up to here; later ones share the base price and keep their arrival
# order. At 400,000 units a swap the first sniper pays (1,000 + 100,000) x 0.4 = 40,400
# lamports of priority fee: 0.00004 SOL.
RANKED_SNIPERS = 100_000


def sniper_compute_unit_price(rank: int | None) -> int:
    """The compute-unit price (micro-lamports) of a sniper of this rank; 0 without a rank (a
    trigger written before ranks: no priority fee, arrival order as before)."""
    if rank is None:
        return 0
    if rank < 0:
        msg = f"a sniper's rank is at least 0, not {rank}"
        raise ValueError(msg)
    return SNIPER_BASE_MICRO_LAMPORTS + max(0, RANKED_SNIPERS - rank)
