"""The node's block order (a leader's scheduler): by compute-unit price, highest first, ties in
arrival order; and the price read from a transaction's ComputeBudget instruction."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction, VersionedTransaction

from services.chain.node import block_order, compute_unit_price


@dataclass(frozen=True)
class Arrived:
    arrival: int
    compute_unit_price: int


def test_transactions_without_a_priority_fee_keep_their_arrival_order() -> None:
    queued = [Arrived(i, 0) for i in range(5)]
    assert block_order(queued) == queued


def test_higher_prices_go_first_and_equal_prices_keep_arrival_order() -> None:
    # Two routers' batches interleaved on arrival, a market order among them.
    queued = [
        Arrived(0, 1_003),
        Arrived(1, 0),
        Arrived(2, 1_004),
        Arrived(3, 1_002),
        Arrived(4, 1_003),
    ]
    assert [a.arrival for a in block_order(queued)] == [2, 0, 4, 3, 1]


@given(st.lists(st.integers(min_value=0, max_value=5), max_size=30))
def test_the_block_is_sorted_by_price_and_stable(prices: list[int]) -> None:
    queued = [Arrived(i, price) for i, price in enumerate(prices)]
    ordered = block_order(queued)
    assert sorted(ordered, key=lambda a: a.arrival) == queued  # the same transactions
    keys = [(-a.compute_unit_price, a.arrival) for a in ordered]
    assert keys == sorted(keys)


def signed(*budget: Instruction) -> VersionedTransaction:
    payer = Keypair()
    pay = transfer(
        TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=1)
    )
    blockhash = Hash.new_unique()
    message = Message.new_with_blockhash([*budget, pay], payer.pubkey(), blockhash)
    return VersionedTransaction.from_bytes(bytes(Transaction([payer], message, blockhash)))


def test_the_price_is_the_set_compute_unit_price_instruction() -> None:
    assert compute_unit_price(signed()) == 0
    assert compute_unit_price(signed(set_compute_unit_limit(400_000))) == 0  # a limit is no price
    priced = signed(set_compute_unit_limit(400_000), set_compute_unit_price(2**40 + 7))
    assert compute_unit_price(priced) == 2**40 + 7
