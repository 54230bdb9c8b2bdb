"""The load bench's order mix (`bench/workload.py`)."""

from __future__ import annotations

import itertools
from collections import Counter
from decimal import Decimal

import orjson

from bench.workload import LoadConfig, order_payloads


def test_the_mix_buys_jup_ray_and_bonk_as_often_as_it_sells_them() -> None:
    """Sold only, their DLMM pairs ran past their seeded bins within one run."""
    mix = itertools.islice(order_payloads(LoadConfig(rate=150, duration=30)), 4_500)
    pairs = Counter(pair for _, pair in mix)
    for token in ("JUP", "RAY", "BONK"):
        sold, bought = pairs[f"{token}/USDC"], pairs[f"USDC/{token}"]
        assert sold > 150, token
        assert abs(sold - bought) < 0.2 * (sold + bought), (token, sold, bought)


def test_a_buy_spends_dollars_of_usdc() -> None:
    for body, pair in itertools.islice(order_payloads(LoadConfig(rate=1, duration=1)), 500):
        if pair in ("USDC/JUP", "USDC/RAY", "USDC/BONK"):
            assert 10 <= Decimal(orjson.loads(body)["amount"]) <= 10_000
