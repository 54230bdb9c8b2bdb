"""Transactions, receipts and what a transaction does to the pools: the chain's pure rules.

The ledger (PostgreSQL, I/O) lands blocks of these; everything here is a function of
its arguments, so the rules can be tested and reused without a database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from services.domain.tokens import from_base_units
from services.venues.pool import InsufficientLiquidityError, Pool, SwapError, Venue

PoolsByKey = dict[tuple[str, str, str], Pool]
"""A block's pools by their stored key (venue, base, quote)."""


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

    On a Solana chain `wire` holds the signed bytes as sent, with the blockhash they carry and
    the last block height that blockhash is valid at; the simulated chain needs none of them.
    """

    signature: str
    order_id: uuid.UUID
    token_in: str
    token_out: str
    amount_in: int
    min_amount_out: int
    instructions: tuple[SwapInstruction, ...]
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


def apply_transaction(
    tx: Transaction, pools: PoolsByKey, slot: int, now: Decimal
) -> tuple[Receipt, PoolsByKey]:
    """Run one transaction against the block's pools: its receipt and the pools it moved."""
    status: Literal["confirmed", "failed"] = "confirmed"
    error_code = error = None
    try:
        amount_out, fee, touched = swap_all(tx, pools, now)
        if amount_out < tx.min_amount_out:
            status, error_code = "failed", "SLIPPAGE_EXCEEDED"
            token = tx.token_out
            error = (
                f"fill of {from_base_units(token, amount_out)} {token} is below"
                f" the minimum {from_base_units(token, tx.min_amount_out)} {token}"
            )
    except InsufficientLiquidityError as exc:
        status, error_code, error = "failed", "INSUFFICIENT_LIQUIDITY", str(exc)
    except SwapError as exc:
        status, error_code, error = "failed", "INVALID_TRANSACTION", str(exc)
    if status == "failed":
        amount_out, fee, touched = 0, 0, {}
    venues = tuple(sorted({i.venue.value for i in tx.instructions}))
    receipt = Receipt(
        tx.signature,
        tx.order_id,
        status,
        tx.amount_in,
        amount_out,
        fee,
        slot,
        venues,
        error_code,
        error,
    )
    return receipt, touched


def swap_all(tx: Transaction, pools: PoolsByKey, now: Decimal) -> tuple[int, int, PoolsByKey]:
    """Run the instructions hop by hop; a later hop scales to the previous hop's actual output."""
    touched: PoolsByKey = {}
    fee_total = 0
    carried: int | None = None  # actual output of the previous hop
    for hop in sorted({i.hop for i in tx.instructions}):
        legs = [i for i in tx.instructions if i.hop == hop]
        planned_in = sum(leg.amount_in for leg in legs)
        hop_out = 0
        for leg in legs:
            amount_in = leg.amount_in if carried is None else leg.amount_in * carried // planned_in
            key = _stored_key(leg, pools)
            result = touched.get(key, pools[key]).swap(leg.token_in, amount_in, now)
            touched[key] = result.pool_after
            hop_out += result.amount_out
            if carried is None:
                fee_total += result.fee
        carried = hop_out
    return carried or 0, fee_total, touched


def _stored_key(leg: SwapInstruction, pools: PoolsByKey) -> tuple[str, str, str]:
    for key in (
        (leg.venue.value, leg.token_in, leg.token_out),
        (leg.venue.value, leg.token_out, leg.token_in),
    ):
        if key in pools:
            return key
    raise SwapError(f"no {leg.venue.value} pool for {leg.token_in}/{leg.token_out}")
