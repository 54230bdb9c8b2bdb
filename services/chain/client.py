"""The router's view of the chain: an RPC that sends transactions and reads receipts.

The simulated RPC adds what a real one has: confirmation latency and transient
failures. A failure before sending means the chain never saw the transaction;
a confirmation timeout means it may have landed. Both are safe to retry because
the signature is the order's, and the ledger answers a resend with the first
receipt.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from decimal import Decimal
from typing import Protocol

import psycopg
from psycopg_pool import PoolTimeout

from services.chain.ledger import BlockAbandoned, Ledger
from services.chain.transactions import Receipt, Transaction
from services.pricing.ports import ChainUnreachable

# The simulated chain's store being down (or a block dropped on the way) looks, to a
# router, like an unreachable RPC: the order waits and sends again.
_STORE_DOWN = (psycopg.OperationalError, PoolTimeout, BlockAbandoned)


def unreachable_while(exc: BaseException) -> ChainUnreachable:
    return ChainUnreachable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


class TransientChainError(Exception):
    """Sending or confirming failed in a way a retry can fix."""

    code = "VENUE_UNAVAILABLE"


class ChainUnavailable(TransientChainError):
    """The RPC refused the transaction before it reached the chain."""


class ConfirmationTimeout(TransientChainError):
    """No confirmation in time; the transaction may or may not have landed."""

    code = "VENUE_TIMEOUT"


class UnsignableTransaction(ValueError):
    """The plan names a pool the chain client cannot build an instruction for."""


class ChainClient(Protocol):
    """What the router needs from a chain; `solana_client.SolanaChain` is the Solana RPC one."""

    async def sign(self, tx: Transaction) -> Transaction:
        """The transaction as it will be sent: its final signature (and, on Solana, the signed
        bytes with their blockhash). The router records it before sending anything."""
        ...

    async def send_and_confirm(self, tx: Transaction, attempt: int) -> Receipt: ...

    async def receipt(self, tx: Transaction) -> Receipt | None: ...


def fault_draw(seed: int, order_id: uuid.UUID, attempt: int, salt: str) -> Decimal:
    """A uniform draw in [0, 1) fixed by (seed, order, attempt): failures replay identically."""
    digest = hashlib.sha256(f"{seed}:{salt}:{order_id}:{attempt}".encode()).digest()
    return Decimal(int.from_bytes(digest[:8], "big")) / Decimal(2**64)


class SimulatedRpc:
    """Sends to the simulated ledger with seeded latency and transient failures."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        seed: int,
        failure_rate: Decimal,
        confirm_latency: tuple[float, float],
    ) -> None:
        self._ledger = ledger
        self._seed = seed
        self._failure_rate = failure_rate
        self._latency = confirm_latency
        self._rng = random.Random(f"{seed}:confirm")

    async def sign(self, tx: Transaction) -> Transaction:
        return tx  # the signature is the order's (services/chain/signatures.py)

    async def send_and_confirm(self, tx: Transaction, attempt: int) -> Receipt:
        failing = fault_draw(self._seed, tx.order_id, attempt, "send") < self._failure_rate
        # Half the failures happen before sending, half after landing (lost confirmation).
        lost_confirmation = failing and fault_draw(
            self._seed, tx.order_id, attempt, "kind"
        ) < Decimal("0.5")
        if failing and not lost_confirmation:
            raise ChainUnavailable("RPC node refused the transaction (simulated outage)")
        try:
            receipt = await self._ledger.execute(tx)
        except _STORE_DOWN as exc:
            raise unreachable_while(exc) from None
        low, high = self._latency
        if high > 0:
            await asyncio.sleep(self._rng.uniform(low, high))
        if lost_confirmation:
            raise ConfirmationTimeout("no confirmation before the blockhash expired (simulated)")
        return receipt

    async def receipt(self, tx: Transaction) -> Receipt | None:
        try:
            return await self._ledger.receipt(tx.signature)
        except _STORE_DOWN as exc:
            raise unreachable_while(exc) from None
