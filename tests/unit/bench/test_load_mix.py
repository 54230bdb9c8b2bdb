"""The load bench's order mix (`bench/workload.py`)."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from decimal import Decimal

import orjson

from bench.workload import PRICES, TRADED, LoadConfig, order_payloads


def test_every_pair_is_traded_both_ways_with_as_many_dollars() -> None:
    """One-sided, the bench's pools ran past their seeded DLMM bins within one run."""
    mix = itertools.islice(order_payloads(LoadConfig(rate=300, duration=30)), 9_000)
    orders: Counter[str] = Counter()
    dollars: dict[str, Decimal] = defaultdict(Decimal)
    for body, pair in mix:
        token_in = pair.split("/")[0]
        orders[pair] += 1
        dollars[pair] += Decimal(orjson.loads(body)["amount"]) * Decimal(str(PRICES[token_in]))
    assert {tuple(pair.split("/")) for pair in orders} == {
        pair for a, b, _ in TRADED for pair in ((a, b), (b, a))
    }
    for a, b, _ in TRADED:
        sold, bought = orders[f"{a}/{b}"], orders[f"{b}/{a}"]
        assert sold > 100, (a, b, sold)
        assert abs(sold - bought) < 0.2 * (sold + bought), (a, b, sold, bought)
        out, back = dollars[f"{a}/{b}"], dollars[f"{b}/{a}"]
        assert abs(out - back) < Decimal("0.25") * (out + back), (a, b, out, back)


def test_a_buy_spends_dollars_of_usdc() -> None:
    for body, pair in itertools.islice(order_payloads(LoadConfig(rate=1, duration=1)), 500):
        if pair in ("USDC/JUP", "USDC/RAY", "USDC/BONK"):
            assert 10 <= Decimal(orjson.loads(body)["amount"]) <= 10_000
