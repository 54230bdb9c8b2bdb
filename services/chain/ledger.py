"""The chain's ledger: pool accounts and landed transactions, in PostgreSQL.

Transactions land in blocks, as on Solana: each block is one database
transaction that locks the pools its swaps touch, runs the swaps one after
another leg by leg, checks each slippage guard against the pool state at that
moment (as on chain), and records every transaction under its signature. The
`order_id UNIQUE` constraint makes a second landing for the same order
impossible, whoever sends it and whenever.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from services.chain.transactions import Receipt, Transaction, apply_transaction
from services.pricing.ports import PoolSnapshot
from services.venues.market import Market, arbitrage
from services.venues.pool import Pair, Pool, Venue
from services.venues.serialization import pool_from_dict

# Swaps per block: bounds one block's transaction (locks, statement size) under a backlog.
MAX_BLOCK = 256
BLOCK_GATHER_SECONDS = 0.003


async def load_snapshot(db: AsyncConnectionPool) -> PoolSnapshot:
    """Read every pool account: what a router or a quote endpoint computes quotes from."""
    async with db.connection() as conn, conn.cursor(row_factory=tuple_row) as cursor:
        await cursor.execute("SELECT state, slot FROM chain.pools")
        rows = await cursor.fetchall()
    pools: dict[tuple[Venue, Pair], Pool] = {}
    slot = 0
    for state, pool_slot in rows:
        pool = pool_from_dict(state)
        pools[(pool.venue, pool.tokens)] = pool
        slot = max(slot, pool_slot)
    return PoolSnapshot(slot, pools)


@dataclass(frozen=True, slots=True)
class _Sent:
    """A transaction waiting for its block, and where its receipt goes."""

    tx: Transaction
    landed: asyncio.Future[Receipt]


class _Conflict(Exception):
    """Some orders of a block landed meanwhile through another router: roll the block back."""

    def __init__(self, signatures: set[str]) -> None:
        super().__init__(f"{len(signatures)} transactions landed elsewhere")
        self.signatures = signatures


class BlockAbandoned(Exception):
    """The block carrying a transaction stopped before answering; sending it again is safe."""


class LandedElsewhere(Exception):
    """The order landed under another signature (another chain seed): it cannot land again."""


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
        self._queue: list[_Sent] = []
        self._lander: asyncio.Task[None] | None = None

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
            return (await self._receipts(conn, [signature])).get(signature)

    async def execute(self, tx: Transaction) -> Receipt:
        """Land `tx` once, in the next block; sending it again returns the first receipt.

        Swaps sent while a block is landing wait for the next one, and a block lands in one
        database transaction: the hot pools are locked, and the round trips paid, once per
        block instead of once per swap (per-swap transactions held the SOL/USDC rows across
        seven round trips each, and those round trips were most of the router's event loop).
        """
        loop = asyncio.get_running_loop()
        landed: asyncio.Future[Receipt] = loop.create_future()
        self._queue.append(_Sent(tx, landed))
        if self._lander is None or self._lander.done() or self._lander.get_loop() is not loop:
            # Its own task, not a sender's: a cancelled sender cannot take a block down with it.
            self._lander = asyncio.create_task(self._land_blocks(), name="chain-blocks")
            self._lander.add_done_callback(self._after_lander)
        return await landed

    def _after_lander(self, lander: asyncio.Task[None]) -> None:
        """A lander cancelled before its first step never ran its `finally`: answer for it."""
        if lander is self._lander and lander.cancelled():
            for sent in self._queue:
                if not sent.landed.done():
                    sent.landed.set_exception(BlockAbandoned("the block lander stopped"))
            self._queue.clear()

    async def _land_blocks(self) -> None:
        """Land what was sent, block after block, until nothing waits."""
        block: list[_Sent] = []
        try:
            while self._queue:
                # Let the swaps sent in the next moment join this block: a block costs the
                # router and PostgreSQL about the same whatever its size.
                await asyncio.sleep(BLOCK_GATHER_SECONDS)
                block = [sent for sent in self._queue[:MAX_BLOCK] if not sent.landed.done()]
                del self._queue[:MAX_BLOCK]
                if not block:
                    continue  # every sender gave up waiting (cancelled) before its block began
                outcomes: dict[str, Receipt | Exception]
                try:
                    outcomes = await self._land_block([sent.tx for sent in block])
                except Exception as exc:  # e.g. PostgreSQL down: each sender decides what it means
                    outcomes = {sent.tx.signature: exc for sent in block}
                for sent in block:
                    if sent.landed.done():
                        continue
                    outcome = outcomes[sent.tx.signature]
                    if isinstance(outcome, Exception):
                        sent.landed.set_exception(outcome)
                    else:
                        sent.landed.set_result(outcome)
        finally:
            # Stopped mid-block (cancelled): no sender may wait for a block that will not come.
            # Whether or not the block committed, a resend answers with the truth.
            for sent in (*block, *self._queue):
                if not sent.landed.done():
                    sent.landed.set_exception(BlockAbandoned("the block lander stopped"))
            self._queue.clear()

    async def _land_block(self, txs: list[Transaction]) -> dict[str, Receipt | Exception]:
        """Land every transaction not landed yet; answer the others with their first receipt."""
        outcomes: dict[str, Receipt | Exception] = {}
        todo = list({tx.signature: tx for tx in txs}.values())  # a resend in the same block
        while todo:
            try:
                async with self._db.connection() as conn, conn.transaction():
                    outcomes.update(await self._land(conn, todo))
                return outcomes
            except _Conflict as conflict:
                # Another router landed some of these orders meanwhile (it has committed:
                # the insert waited for it). Answer those with its receipt, land the rest again.
                for signature in conflict.signatures:
                    outcomes[signature] = await self.receipt(signature) or LandedElsewhere(
                        f"order of {signature} landed under another signature"
                    )
                todo = [tx for tx in todo if tx.signature not in conflict.signatures]
        return outcomes

    async def _land(
        self, conn: psycopg.AsyncConnection[Any], txs: list[Transaction]
    ) -> dict[str, Receipt]:
        """One block: its receipts, keyed by signature, including earlier landings."""
        receipts = await self._receipts(conn, [tx.signature for tx in txs])
        fresh = [tx for tx in txs if tx.signature not in receipts]
        if not fresh:
            return receipts
        # Pools are stored under (base, quote) and an instruction may swap either way: ask for both.
        keys = sorted(
            {
                (i.venue.value, a, b)
                for tx in fresh
                for i in tx.instructions
                for a, b in ((i.token_in, i.token_out), (i.token_out, i.token_in))
            }
        )
        cursor = await conn.execute(
            "SELECT venue, base, quote, state, reference_mid, (SELECT nextval('chain.slots'))"
            " FROM chain.pools WHERE (venue, base, quote) IN"
            " (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))"
            " ORDER BY venue, base, quote FOR UPDATE",  # one lock order: no deadlocks
            ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
        )
        rows = await cursor.fetchall()
        pools = {(row[0], row[1], row[2]): pool_from_dict(row[3]) for row in rows}
        references = {(row[0], row[1], row[2]): Decimal(row[4]) for row in rows}
        slot = int(rows[0][5]) if rows else await self._next_slot(conn)
        now = _now()
        changed: set[tuple[str, str, str]] = set()
        for tx in fresh:
            receipt, touched = apply_transaction(tx, pools, slot, now)
            receipts[tx.signature] = receipt
            for key, pool in touched.items():
                # Arbitrageurs pull each pool back toward its reference before the next trade.
                pools[key] = arbitrage(pool, references[key], now)
                changed.add(key)
        # One JSON document per statement: psycopg dumps a dozen typed arrays far slower
        # (profiled: array dumping was half of the block's CPU).
        if changed:
            await conn.execute(
                "UPDATE chain.pools AS p SET state = v.state, slot = %s"
                " FROM jsonb_to_recordset(%s)"
                " AS v(venue text, base text, quote text, state jsonb)"
                " WHERE (p.venue, p.base, p.quote) = (v.venue, v.base, v.quote)",
                (
                    slot,
                    Jsonb(
                        [
                            {
                                "venue": k[0],
                                "base": k[1],
                                "quote": k[2],
                                "state": pools[k].to_dict(),
                            }
                            for k in sorted(changed)
                        ],
                        dumps=_dumps,
                    ),
                ),
            )
        cursor = await conn.execute(
            "INSERT INTO chain.transactions (signature, order_id, status, error_code, error,"
            " token_in, token_out, amount_in, amount_out, fee, legs, slot)"
            " SELECT signature, order_id, status, error_code, error, token_in, token_out,"
            " amount_in, amount_out, fee, legs, %s FROM jsonb_to_recordset(%s) AS r(signature text,"
            " order_id uuid, status text, error_code text, error text, token_in text,"
            " token_out text, amount_in numeric, amount_out numeric, fee numeric, legs jsonb)"
            " ON CONFLICT DO NOTHING RETURNING signature",
            (slot, Jsonb([_row(tx, receipts[tx.signature]) for tx in fresh], dumps=_dumps)),
        )
        inserted = {row[0] for row in await cursor.fetchall()}
        if len(inserted) < len(fresh):
            raise _Conflict({tx.signature for tx in fresh} - inserted)  # rolls the block back
        return receipts

    async def _receipts(
        self, conn: psycopg.AsyncConnection[Any], signatures: list[str]
    ) -> dict[str, Receipt]:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT signature, order_id, status, amount_in, amount_out, fee, slot,"
                " error_code, error, legs"
                " FROM chain.transactions WHERE signature = ANY(%s)",
                (signatures,),
            )
            rows = await cur.fetchall()
        return {row["signature"]: _receipt_from_row(row) for row in rows}

    @staticmethod
    async def _next_slot(conn: psycopg.AsyncConnection[Any]) -> int:
        row = await (await conn.execute("SELECT nextval('chain.slots')")).fetchone()
        assert row is not None
        return int(row[0])


def _dumps(value: object) -> bytes:
    """orjson (profiled: the stdlib's encoder was the block's largest cost), exact for integers.

    orjson refuses integers beyond 64 bits, which only an absurd order could put in a
    pool; those take the stdlib's slower but unbounded path.
    """
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value).encode()


def _row(tx: Transaction, receipt: Receipt) -> dict[str, object]:
    """A `chain.transactions` row as JSON; integers stay exact (jsonb numbers are numeric)."""
    return {
        "signature": tx.signature,
        "order_id": str(tx.order_id),
        "status": receipt.status,
        "error_code": receipt.error_code,
        "error": receipt.error,
        "token_in": tx.token_in,
        "token_out": tx.token_out,
        "amount_in": tx.amount_in,
        "amount_out": receipt.amount_out,
        "fee": receipt.fee,
        "legs": [
            {
                "venue": i.venue.value,
                "tokenIn": i.token_in,
                "tokenOut": i.token_out,
                "amountIn": str(i.amount_in),
                "hop": i.hop,
            }
            for i in tx.instructions
        ],
    }


def _receipt_from_row(row: dict[str, Any]) -> Receipt:
    for field in ("amount_in", "amount_out", "fee"):
        row[field] = int(row[field])
    row["venues"] = tuple(sorted({leg["venue"] for leg in row.pop("legs")}))
    return Receipt(**row)
