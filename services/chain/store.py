"""The chain node's PostgreSQL store (schema `svm`, migration 0005): blocks, their landed
transactions and their accounts' post-states.

A block is written in one transaction; the node reports its transactions only after the commit,
so a confirmed transaction is one PostgreSQL has. On start the node reads the genesis row, every
account's latest state (the same as applying each block's states in slot order), and the recent
signatures it must not land again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from solders.account import Account
from solders.pubkey import Pubkey

from services.common.db import open_pool

# Solana's TransactionError in its JSON form: "BlockhashNotFound", {"InstructionError": [1, ...]}.
ErrJson = str | dict[str, Any] | None
# One SPL token account's balance in a transaction's meta, as getTransaction reports it (the
# amount as a string): {"accountIndex", "mint", "owner", "programId", "amount", "decimals"}.
TokenBalance = dict[str, Any]


@dataclass(frozen=True, slots=True)
class LandedTransaction:
    """A transaction in a block: it ran, and (success or not) paid its fee."""

    signature: str
    slot: int
    position: int
    err: ErrJson
    logs: list[str]
    compute_units: int
    fee: int
    pre_balances: list[int]
    post_balances: list[int]
    raw: bytes
    pre_token_balances: list[TokenBalance] | None = None
    post_token_balances: list[TokenBalance] | None = None


@dataclass(frozen=True, slots=True)
class Block:
    """One slot's landed transactions and the post-state of every account they could write."""

    slot: int
    blockhash: str
    unix_time: int
    transactions: list[LandedTransaction]
    accounts: list[tuple[Pubkey, Account]]


@dataclass(frozen=True, slots=True)
class GenesisRow:
    seed: int
    wallets: int
    origin_ms: int


@dataclass(frozen=True, slots=True)
class StoredTransaction:
    """A landed transaction as `getTransaction` answers it."""

    landed: LandedTransaction
    unix_time: int


def _landed(row: dict[str, Any]) -> LandedTransaction:
    return LandedTransaction(
        signature=row["signature"],
        slot=row["slot"],
        position=row["position"],
        err=row["err"],
        logs=list(row["logs"]),
        compute_units=row["compute_units"],
        fee=row["fee"],
        pre_balances=list(row["pre_balances"]),
        post_balances=list(row["post_balances"]),
        raw=bytes(row["raw"]),
        pre_token_balances=row.get("pre_token_balances"),
        post_token_balances=row.get("post_token_balances"),
    )


class ChainStore:
    """Blocks in, state out; every method is one short transaction on a small pool."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str) -> ChainStore:
        """Connect, or fail with DependencyUnavailable in one line."""
        return cls(await open_pool(url, min_size=1, max_size=4))

    async def close(self) -> None:
        await self._pool.close()

    async def genesis(self, seed: int, wallets: int, origin_ms: int) -> GenesisRow:
        """The chain's genesis row: written by the first start, read by every later one."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO svm.genesis (seed, wallets, origin_ms) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (seed, wallets, origin_ms),
            )
            cur = await conn.execute("SELECT seed, wallets, origin_ms FROM svm.genesis")
            row = await cur.fetchone()
        assert row is not None
        return GenesisRow(*row)

    async def accounts(self) -> list[tuple[Pubkey, Account]]:
        """Each written account's latest state, in the order of the slot that wrote it."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT address, lamports, owner, data, executable, rent_epoch FROM ("
                " SELECT DISTINCT ON (address) * FROM svm.account_states"
                " ORDER BY address, slot DESC) latest ORDER BY slot, address"
            )
            rows = await cur.fetchall()
        return [
            (
                Pubkey.from_string(address),
                Account(lamports, bytes(data), Pubkey.from_string(owner), executable, int(rent)),
            )
            for address, lamports, owner, data, executable, rent in rows
        ]

    async def last_slot(self) -> int | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT max(slot) FROM svm.blocks")
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def has_block(self, slot: int, blockhash: str) -> bool:
        """Whether this block is committed (after a commit whose outcome was not heard)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM svm.blocks WHERE slot = %s AND blockhash = %s", (slot, blockhash)
            )
            return await cur.fetchone() is not None

    async def landed_since(self, slot: int) -> list[LandedTransaction]:
        """Transactions landed at or after `slot`: the signatures a restart must still refuse."""
        return await self._select("WHERE slot >= %s ORDER BY slot, position", (slot,))

    async def landed(self, signatures: list[str]) -> dict[str, LandedTransaction]:
        found = await self._select("WHERE signature = ANY(%s)", (signatures,))
        return {tx.signature: tx for tx in found}

    async def block_transactions(self, slot: int) -> list[LandedTransaction]:
        """A block's landed transactions, in the order they ran (none for an empty slot)."""
        return await self._select("WHERE slot = %s ORDER BY position", (slot,))

    async def transaction(self, signature: str) -> StoredTransaction | None:
        async with self._pool.connection() as conn:
            conn.row_factory = dict_row  # type: ignore[assignment]
            cur = await conn.execute(
                "SELECT t.*, b.unix_time FROM svm.transactions t JOIN svm.blocks b USING (slot)"
                " WHERE signature = %s",
                (signature,),
            )
            row: dict[str, Any] | None = await cur.fetchone()  # type: ignore[assignment]
        return None if row is None else StoredTransaction(_landed(row), row["unix_time"])

    async def all_transactions(self) -> list[StoredTransaction]:
        """Every landed transaction in landing order, with its block's clock: what a replay
        runs from genesis."""
        async with self._pool.connection() as conn:
            conn.row_factory = dict_row  # type: ignore[assignment]
            cur = await conn.execute(
                "SELECT t.*, b.unix_time FROM svm.transactions t JOIN svm.blocks b USING (slot)"
                " ORDER BY slot, position"
            )
            rows: list[dict[str, Any]] = await cur.fetchall()  # type: ignore[assignment]
        return [StoredTransaction(_landed(row), row["unix_time"]) for row in rows]

    async def _select(self, where: str, params: tuple[object, ...]) -> list[LandedTransaction]:
        async with self._pool.connection() as conn:
            conn.row_factory = dict_row  # type: ignore[assignment]
            cur = await conn.execute(f"SELECT * FROM svm.transactions {where}", params)
            rows: list[dict[str, Any]] = await cur.fetchall()  # type: ignore[assignment]
        return [_landed(row) for row in rows]

    async def write_block(self, block: Block) -> None:
        """The block, its transactions and its account states, in one transaction."""
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(
                "INSERT INTO svm.blocks (slot, blockhash, unix_time) VALUES (%s, %s, %s)",
                (block.slot, block.blockhash, block.unix_time),
            )
            await cur.executemany(
                "INSERT INTO svm.transactions (signature, slot, position, err, logs,"
                " compute_units, fee, pre_balances, post_balances, raw,"
                " pre_token_balances, post_token_balances)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        tx.signature,
                        tx.slot,
                        tx.position,
                        None if tx.err is None else Jsonb(tx.err),
                        tx.logs,
                        tx.compute_units,
                        tx.fee,
                        tx.pre_balances,
                        tx.post_balances,
                        tx.raw,
                        None if tx.pre_token_balances is None else Jsonb(tx.pre_token_balances),
                        None if tx.post_token_balances is None else Jsonb(tx.post_token_balances),
                    )
                    for tx in block.transactions
                ],
            )
            await cur.executemany(
                "INSERT INTO svm.account_states"
                " (slot, address, lamports, owner, data, executable, rent_epoch)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        block.slot,
                        str(address),
                        account.lamports,
                        str(account.owner),
                        bytes(account.data),
                        account.executable,
                        account.rent_epoch,
                    )
                    for address, account in block.accounts
                ],
            )
