"""The router's transactions and receipts, as plain values.

`Transaction` is what the router asks the chain to execute (its legs and slippage guard) and,
once signed, the bytes sent; `Receipt` is what the chain says about it once it landed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from services.venues.pool import Venue


@dataclass(frozen=True, slots=True)
class SwapInstruction:
    """One swap inside a transaction; later hops take the previous hop's actual output."""

    venue: Venue
    token_in: str
    token_out: str
    amount_in: int
    hop: int
    amount_out: int = 0  # what the route quoted for this leg
    fee: int = 0  # the quoted fee, in token_in base units


@dataclass(frozen=True, slots=True)
class Transaction:
    """A signed swap transaction with its slippage guard.

    Once signed, `wire` holds the signed bytes as sent, with the blockhash they carry and the
    last block height that blockhash is valid at; unsigned, the signature is empty.
    """

    signature: str
    order_id: uuid.UUID
    token_in: str
    token_out: str
    amount_in: int
    min_amount_out: int
    instructions: tuple[SwapInstruction, ...]
    # Priority fee, micro-lamports per compute unit (0: none): a sniper's rank in its launch
    # (`services.domain.priority_fees`), which orders it in the block.
    compute_unit_price: int = 0
    wire: bytes | None = None
    blockhash: str | None = None
    last_valid_block_height: int | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the chain says about a landed transaction."""

    signature: str
    order_id: uuid.UUID
    status: Literal["confirmed", "failed"]
    amount_in: int
    amount_out: int
    fee: int
    slot: int
    venues: tuple[str, ...]  # the venues its swaps ran on, sorted
    error_code: str | None = None
    error: str | None = None
