"""Transaction signatures: Solana-shaped, one per (order, seed), never shared."""

from __future__ import annotations

import uuid

import base58
from hypothesis import given
from hypothesis import strategies as st

from services.chain.signatures import signature_for
from tests.strategies import seeds

order_ids = st.uuids()
BASE58_ALPHABET = set("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")


@given(order_ids, seeds)
def test_signature_is_88_or_87_base58_chars_of_64_bytes(order_id: uuid.UUID, seed: int) -> None:
    signature = signature_for(order_id, seed)
    assert 87 <= len(signature) <= 88
    assert set(signature) <= BASE58_ALPHABET
    assert len(base58.b58decode(signature)) == 64


@given(order_ids, seeds)
def test_signature_is_deterministic(order_id: uuid.UUID, seed: int) -> None:
    assert signature_for(order_id, seed) == signature_for(uuid.UUID(str(order_id)), seed)


@given(st.lists(order_ids, min_size=2, max_size=20, unique=True), seeds)
def test_distinct_orders_have_distinct_signatures(orders: list[uuid.UUID], seed: int) -> None:
    assert len({signature_for(order_id, seed) for order_id in orders}) == len(orders)


@given(order_ids, st.lists(seeds, min_size=2, max_size=20, unique=True))
def test_distinct_seeds_give_distinct_signatures(
    order_id: uuid.UUID, chain_seeds: list[int]
) -> None:
    assert len({signature_for(order_id, seed) for seed in chain_seeds}) == len(chain_seeds)


def test_many_orders_never_collide() -> None:
    signatures = {signature_for(uuid.uuid4(), 42) for _ in range(2_000)}
    assert len(signatures) == 2_000
