"""The router's view of the chain: sign a transaction, send it and confirm it, read its receipt.

`solana_client.SolanaChain` is the one implementation (Solana JSON-RPC: the local `oee chain`,
devnet or mainnet); `faults.FaultyChain` wraps it with seeded faults for tests and load.
"""

from __future__ import annotations

from typing import Protocol

from services.chain.transactions import Receipt, Transaction


class TransientChainError(Exception):
    """Sending or confirming failed in a way a retry can fix."""

    code = "VENUE_UNAVAILABLE"


class ChainUnavailable(TransientChainError):
    """The RPC refused the transaction before it reached the chain."""


class ConfirmationTimeout(TransientChainError):
    """No confirmation in time; the transaction may or may not have landed."""

    code = "VENUE_TIMEOUT"


class RetryableLandedFailure(Exception):
    """The transaction landed and failed in a way a fresh quote can fix; having landed, it can
    never land again, so a new attempt (new bytes) is safe."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class UnsignableTransaction(ValueError):
    """The plan names a pool the chain client cannot build an instruction for."""


class ChainClient(Protocol):
    """What the router needs from a chain."""

    async def sign(self, tx: Transaction) -> Transaction:
        """The transaction as it will be sent: its signature, the signed bytes and their
        blockhash. The router records it before sending anything."""
        ...

    async def send_and_confirm(self, tx: Transaction, attempt: int) -> Receipt: ...

    async def receipt(self, tx: Transaction) -> Receipt | None: ...
