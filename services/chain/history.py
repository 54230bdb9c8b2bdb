"""Replaying the chain: genesis, then every landed transaction in (slot, position) order.

The node persists each block's account states, which is what a restart uses; the signed
transactions it persists with them are the chain's history. Running them again from genesis,
each under its block's clock, must give the same results (success or the same error) and the
same accounts: the check that nothing landed twice or went missing, and how a tool can show a
transaction as the chain saw it.
"""

from __future__ import annotations

from dataclasses import dataclass

from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata

from services.chain.genesis import Genesis, build_genesis
from services.chain.node import err_json
from services.chain.store import ErrJson, StoredTransaction
from services.chain.svm.vm import SolanaVm


@dataclass(frozen=True, slots=True)
class Replayed:
    """One transaction run again: what it did now, beside what the chain recorded."""

    signature: str
    slot: int
    recorded_err: ErrJson
    replayed_err: ErrJson
    logs: list[str]

    @property
    def matches(self) -> bool:
        return self.recorded_err == self.replayed_err


def replay(genesis: Genesis, history: list[StoredTransaction]) -> tuple[SolanaVm, list[Replayed]]:
    """Genesis, then `history` in order; the VM after it and each transaction's outcome."""
    vm = build_genesis(genesis).vm
    svm = vm.svm
    svm.with_blockhash_check(False).with_transaction_history(0)
    results: list[Replayed] = []
    for stored in history:
        tx = stored.landed
        clock = svm.get_clock()
        clock.slot = tx.slot
        clock.unix_timestamp = stored.unix_time
        svm.set_clock(clock)
        result = svm.send_transaction(VersionedTransaction.from_bytes(tx.raw))
        if isinstance(result, FailedTransactionMetadata):
            err, logs = err_json(result.err()), list(result.meta().logs())
        else:
            err, logs = None, list(result.logs())
        results.append(Replayed(tx.signature, tx.slot, tx.err, err, logs))
    return vm, results
