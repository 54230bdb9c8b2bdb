"""The router's injected faults (`services/chain/faults.py`): fixed by (seed, order, attempt),
at the configured rate, and never a second landing."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from services.chain.client import ChainUnavailable, ConfirmationTimeout
from services.chain.faults import FaultyChain, fault_draw, injected_fault
from services.chain.transactions import Receipt, Transaction


def test_a_draw_is_fixed_by_seed_order_attempt_and_salt() -> None:
    order = uuid.uuid4()
    assert fault_draw(42, order, 1, "send") == fault_draw(42, uuid.UUID(str(order)), 1, "send")
    draws = {
        fault_draw(42, order, 1, "send"),
        fault_draw(43, order, 1, "send"),
        fault_draw(42, order, 2, "send"),
        fault_draw(42, order, 1, "kind"),
    }
    assert len(draws) == 4
    assert all(Decimal(0) <= d < 1 for d in draws)


def test_faults_come_at_the_rate_half_refused_half_lost() -> None:
    orders = [uuid.uuid4() for _ in range(4000)]
    faults = [injected_fault(42, o, 1, Decimal("0.3")) for o in orders]
    assert 0.27 < sum(f is not None for f in faults) / len(faults) < 0.33
    refused, lost = faults.count("refused"), faults.count("lost")
    assert 0.4 < refused / (refused + lost) < 0.6
    assert all(injected_fault(42, o, 1, Decimal(0)) is None for o in orders)


class Inner:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def sign(self, tx: Transaction) -> Transaction:
        return tx

    async def send_and_confirm(self, tx: Transaction, attempt: int) -> Receipt:
        self.sent.append(tx.signature)
        return Receipt(tx.signature, tx.order_id, "confirmed", 1, 2, 0, 5, ("RAYDIUM",))

    async def receipt(self, tx: Transaction) -> Receipt | None:
        if tx.signature not in self.sent:
            return None
        return Receipt(tx.signature, tx.order_id, "confirmed", 1, 2, 0, 5, ("RAYDIUM",))


def order_with(fault: str, rate: Decimal) -> uuid.UUID:
    while True:
        order = uuid.uuid4()
        if injected_fault(42, order, 1, rate) == fault:
            return order


def tx_of(order: uuid.UUID) -> Transaction:
    return Transaction("sig", order, "SOL", "USDC", 1, 1, ())


async def test_a_refused_send_never_reaches_the_chain_however_often_it_is_retried() -> None:
    inner = Inner()
    chain = FaultyChain(inner, seed=42, failure_rate=Decimal("0.5"))
    tx = tx_of(order_with("refused", Decimal("0.5")))
    for _ in range(3):  # this router, or one taking the order over: the same refusal
        with pytest.raises(ChainUnavailable):
            await chain.send_and_confirm(tx, 1)
    assert inner.sent == []
    assert await chain.receipt(tx) is None  # so the attempt may be rebuilt


async def test_a_lost_confirmation_landed_and_its_receipt_is_found() -> None:
    inner = Inner()
    chain = FaultyChain(inner, seed=42, failure_rate=Decimal("0.5"))
    tx = tx_of(order_with("lost", Decimal("0.5")))
    with pytest.raises(ConfirmationTimeout):
        await chain.send_and_confirm(tx, 1)
    assert inner.sent == ["sig"]
    receipt = await chain.receipt(tx)
    assert receipt is not None
    assert receipt.status == "confirmed"
