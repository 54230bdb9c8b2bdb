"""The chain's ledger: pool accounts and landed transactions, in PostgreSQL.

A transaction runs as one database transaction: it locks the pools it
touches, swaps leg by leg, checks the slippage guard against the pool state at
that moment (as on chain), and records itself under its signature. The
`order_id UNIQUE` constraint makes a second landing for the same order
impossible, whoever sends it and whenever.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from services.domain.tokens import from_base_units
from services.venues.market import Market, arbitrage
from services.venues.pool import InsufficientLiquidityError, Pair, Pool, SwapError, Venue
from services.venues.serialization import pool_from_dict

PoolBook = dict[tuple[Venue, Pair], Pool]


@dataclass(frozen=True, slots=True)
class SwapInstruction:
    """One swap inside a transaction; later hops take the previous hop's actual output."""

    venue: Venue
    token_in: str
    token_out: str
    amount_in: int
    hop: int


@dataclass(frozen=True, slots=True)
class Transaction:
    """A signed swap transaction with its slippage guard."""

    signature: str
    order_id: uuid.UUID
    token_in: str
    token_out: str
    amount_in: int
    min_amount_out: int
    instructions: tuple[SwapInstruction, ...]


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


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """Every pool as of `slot`: what a router reads to quote locally."""

    slot: int
    pools: PoolBook


async def load_snapshot(db: AsyncConnectionPool) -> PoolSnapshot:
    """Read every pool account: what a router or a quote endpoint computes quotes from."""
    async with db.connection() as conn, conn.cursor(row_factory=tuple_row) as cursor:
        await cursor.execute("SELECT state, slot FROM chain.pools")
        rows = await cursor.fetchall()
    pools: PoolBook = {}
    slot = 0
    for state, pool_slot in rows:
        pool = pool_from_dict(state)
        pools[(pool.venue, pool.tokens)] = pool
        slot = max(slot, pool_slot)
    return PoolSnapshot(slot, pools)


def _pool_key(venue: Venue, pool: Pool) -> tuple[str, str, str]:
    base, quote = pool.tokens
    return venue.value, base, quote


def _now() -> Decimal:
    return Decimal(time.time_ns()) / 1_000_000_000


class Ledger:
    """The simulated chain's durable state."""

    def __init__(self, pool: AsyncConnectionPool, market: Market) -> None:
        self._db = pool
        self._market = market

    async def genesis(self) -> None:
        """Create the pools from the seeded market, once; later starts keep the chain's state."""
        async with self._db.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "INSERT INTO chain.genesis (seed) VALUES (%s) ON CONFLICT DO NOTHING",
                (self._market.seed,),
            )
            if cursor.rowcount == 0:
                return
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO chain.pools (venue, base, quote, state, reference_mid)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    [
                        (*_pool_key(venue, p), Jsonb(p.to_dict()), p.mid_price(p.tokens[0]))
                        for (venue, _), p in self._market.pools.items()
                    ],
                )

    async def snapshot(self) -> PoolSnapshot:
        return await load_snapshot(self._db)

    async def receipt(self, signature: str) -> Receipt | None:
        async with self._db.connection() as conn:
            return await self._receipt(conn, signature)

    async def _receipt(self, conn: psycopg.AsyncConnection[Any], signature: str) -> Receipt | None:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT signature, order_id, status, amount_in, amount_out, fee, slot,"
                " error_code, error, legs"
                " FROM chain.transactions WHERE signature = %s",
                (signature,),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        for field in ("amount_in", "amount_out", "fee"):
            row[field] = int(row[field])
        row["venues"] = tuple(sorted({leg["venue"] for leg in row.pop("legs")}))
        return Receipt(**row)

    async def execute(self, tx: Transaction) -> Receipt:
        """Land `tx` once; sending it again returns the first receipt."""
        try:
            async with self._db.connection() as conn, conn.transaction():
                existing = await self._receipt(conn, tx.signature)
                if existing is not None:
                    return existing
                return await self._land(conn, tx)
        except psycopg.errors.UniqueViolation:
            # A concurrent send of the same order landed first: answer with its receipt.
            landed = await self.receipt(tx.signature)
            if landed is None:
                raise
            return landed

    async def _land(self, conn: psycopg.AsyncConnection[Any], tx: Transaction) -> Receipt:
        # Pools are stored under (base, quote) and an instruction may swap either way: ask for both.
        keys = sorted(
            {
                (i.venue.value, a, b)
                for i in tx.instructions
                for a, b in ((i.token_in, i.token_out), (i.token_out, i.token_in))
            }
        )
        cursor = await conn.execute(
            "SELECT venue, base, quote, state, reference_mid FROM chain.pools"
            " WHERE (venue, base, quote) IN"
            " (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))"
            " ORDER BY venue, base, quote FOR UPDATE",  # one lock order: no deadlocks
            ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
        )
        rows = await cursor.fetchall()
        pools = {(row[0], row[1], row[2]): pool_from_dict(row[3]) for row in rows}
        references = {(row[0], row[1], row[2]): Decimal(row[4]) for row in rows}
        slot_row = await (await conn.execute("SELECT nextval('chain.slots')")).fetchone()
        assert slot_row is not None
        slot = int(slot_row[0])
        now = _now()
        status: Literal["confirmed", "failed"] = "confirmed"
        error_code = error = None
        try:
            amount_out, fee, touched = _swap_all(tx, pools, now)
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
        async with conn.cursor() as cur:
            if touched:
                # Arbitrageurs pull each pool back toward its reference before the next trade.
                await cur.executemany(
                    "UPDATE chain.pools SET state = %s, slot = %s"
                    " WHERE venue = %s AND base = %s AND quote = %s",
                    [
                        (Jsonb(arbitrage(p, references[key], now).to_dict()), slot, *key)
                        for key, p in sorted(touched.items())
                    ],
                )
            await cur.execute(
                "INSERT INTO chain.transactions (signature, order_id, status, error_code, error,"
                " token_in, token_out, amount_in, amount_out, fee, legs, slot)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    tx.signature, tx.order_id, status, error_code, error, tx.token_in, tx.token_out,
                    tx.amount_in, amount_out, fee,
                    Jsonb([{"venue": i.venue.value, "tokenIn": i.token_in, "tokenOut": i.token_out,
                            "amountIn": str(i.amount_in), "hop": i.hop} for i in tx.instructions]),
                    slot,
                ),
            )  # fmt: skip
        venues = tuple(sorted({i.venue.value for i in tx.instructions}))
        return Receipt(
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


def _swap_all(
    tx: Transaction, pools: dict[tuple[str, str, str], Pool], now: Decimal
) -> tuple[int, int, dict[tuple[str, str, str], Pool]]:
    """Run the instructions hop by hop; a later hop scales to the previous hop's actual output."""
    touched: dict[tuple[str, str, str], Pool] = {}
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


def _stored_key(
    leg: SwapInstruction, pools: dict[tuple[str, str, str], Pool]
) -> tuple[str, str, str]:
    for key in (
        (leg.venue.value, leg.token_in, leg.token_out),
        (leg.venue.value, leg.token_out, leg.token_in),
    ):
        if key in pools:
            return key
    raise SwapError(f"no {leg.venue.value} pool for {leg.token_in}/{leg.token_out}")
