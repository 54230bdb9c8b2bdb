"""The market's pure core: the seeded walk, the background flow, depth near the mid."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from solders.pubkey import Pubkey

from services.market.flow import depth, flow_trade, pool_mid
from services.market.walk import Move, Walk, slot_sigma
from services.pricing.accounts.dlmm import (
    BINS_PER_ARRAY,
    Bin,
    BinArray,
    LbPair,
    price_from_id,
)
from services.pricing.accounts.pools import DlmmBinPool
from services.venues.cpmm import CpmmPool
from services.venues.pool import Pool

seeds = st.integers(min_value=0, max_value=2**32)
slots = st.integers(min_value=0, max_value=10**7)
prices = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(10_000), places=3)
pairs = st.sampled_from(["SOL-USDC", "JUP-USDC", "BONK-USDC"])
sigmas = st.floats(min_value=0.0, max_value=0.01)


# --- the walk ----------------------------------------------------------------------------------


def test_volatility_is_annualised_per_slot() -> None:
    assert slot_sigma(0, 400) == 0
    assert slot_sigma(1.0, 400) == pytest.approx(1.126e-4, rel=1e-3)  # ~1.1 bps a slot


@given(seeds, sigmas, prices, pairs, slots, st.integers(min_value=0, max_value=50))
def test_the_walk_is_a_function_of_the_seed(
    seed: int, sigma: float, price: Decimal, pair: str, start: int, n: int
) -> None:
    a, b = Walk(seed, sigma), Walk(seed, sigma)
    assert a.advance(price, pair, start, start + n) == b.advance(price, pair, start, start + n)
    assert a.deviation("RAYDIUM", pair, start) == b.deviation("RAYDIUM", pair, start)
    # stepping slot by slot is the same path as advancing over the skipped slots
    stepped = price
    for s in range(start + 1, start + n + 1):
        stepped = a.step(stepped, pair, s)
    assert stepped == a.advance(price, pair, start, start + n)


@given(seeds, prices, pairs, slots, st.integers(min_value=0, max_value=200))
def test_volatility_zero_never_moves(
    seed: int, price: Decimal, pair: str, start: int, n: int
) -> None:
    walk = Walk(seed, 0.0)
    assert walk.advance(price, pair, start, start + n) == price
    assert walk.venue_target(price, "METEORA", pair, start + n) == price


@given(seeds, pairs, slots)
def test_the_walk_moves_and_the_venues_differ(seed: int, pair: str, start: int) -> None:
    walk = Walk(seed, slot_sigma(1.0, 400))
    assert walk.advance(Decimal(150), pair, start, start + 3) != Decimal(150)
    devs = [walk.deviation(v, pair, start) for v in ("RAYDIUM", "METEORA")]
    assert devs[0] != devs[1]
    assert all(abs(d) < 0.01 for d in devs)  # a few bps, never a percent


def test_another_seed_is_another_path() -> None:
    a = Walk(1, 1e-4).advance(Decimal(150), "SOL-USDC", 0, 20)
    b = Walk(2, 1e-4).advance(Decimal(150), "SOL-USDC", 0, 20)
    assert a != b


@given(prices, prices, slots, st.integers(min_value=1, max_value=100))
def test_a_move_reaches_its_target_monotonically(
    start: Decimal, target: Decimal, at: int, n: int
) -> None:
    move = Move(start, target, at, n)
    path = [move.price(s) for s in range(at, at + n + 1)]
    assert abs(path[0] - start) <= Decimal("1e-9") * start
    assert path[-1] == target
    assert move.finished(at + n)
    rising = target >= start
    tol = Decimal("1e-9") * max(start, target)
    assert all((b - a >= -tol) if rising else (a - b >= -tol) for a, b in pairwise(path))


def pairwise(xs: list[Decimal]) -> list[tuple[Decimal, Decimal]]:
    return list(itertools.pairwise(xs))


# --- pools -------------------------------------------------------------------------------------

SOL_DECIMALS, USDC_DECIMALS = 9, 6


@st.composite
def cpmm_pools(draw: st.DrawFn) -> CpmmPool:
    mid = draw(st.decimals(min_value=Decimal(10), max_value=Decimal(1000), places=2))
    depth_usdc = draw(st.integers(min_value=10_000, max_value=50_000_000))
    fee = draw(st.sampled_from([0, 25, 100]))
    return CpmmPool.from_mid("SOL", "USDC", mid, Decimal(depth_usdc), fee)


def _lb_pair(active: int, bin_step: int) -> LbPair:
    key = Pubkey.default()
    return LbPair(
        base_factor=10_000,
        filter_period=30,
        decay_period=600,
        reduction_factor=5_000,
        variable_fee_control=40_000,
        max_volatility_accumulator=350_000,
        min_bin_id=-443_636,
        max_bin_id=443_636,
        protocol_share=0,
        base_fee_power_factor=0,
        function_type=0,
        collect_fee_mode=0,
        volatility_accumulator=0,
        volatility_reference=0,
        index_reference=active,
        last_update_timestamp=0,
        pair_type=0,
        active_id=active,
        bin_step=bin_step,
        status=0,
        activation_type=0,
        token_x_mint=key,
        token_y_mint=key,
        reserve_x=key,
        reserve_y=key,
        oracle=key,
        activation_point=0,
        token_mint_x_program_flag=0,
        token_mint_y_program_flag=0,
    )


@st.composite
def dlmm_pools(draw: st.DrawFn) -> DlmmBinPool:
    """A SOL-USDC pair in the spot shape: y below the active bin, x above, both in it."""
    bin_step = draw(st.sampled_from([1, 10, 20, 50]))
    mid = draw(st.decimals(min_value=Decimal(10), max_value=Decimal(1000), places=2))
    q = float(mid.scaleb(USDC_DECIMALS - SOL_DECIMALS))
    active = round(math.log(q) / math.log(1 + bin_step / 10_000))
    radius = draw(st.integers(min_value=20, max_value=120))
    y_per_bin = draw(st.integers(min_value=10**8, max_value=10**12))  # 100 to 1M USDC
    bins: dict[int, Bin] = {}
    for bin_id in range(active - radius, active + radius + 1):
        price = price_from_id(bin_id, bin_step)
        x = (y_per_bin << 64) // price
        amount_x = x if bin_id >= active else 0
        amount_y = y_per_bin if bin_id <= active else 0
        if bin_id == active:
            amount_x, amount_y = amount_x // 2, amount_y // 2
        bins[bin_id] = Bin(amount_x, amount_y, 0)
    lo, hi = (active - radius) // BINS_PER_ARRAY, (active + radius) // BINS_PER_ARRAY
    arrays = {
        index: BinArray(
            index,
            1,
            Pubkey.default(),
            tuple(
                bins.get(index * BINS_PER_ARRAY + i, Bin(0, 0, 0)) for i in range(BINS_PER_ARRAY)
            ),
        )
        for index in range(lo, hi + 1)
    }
    reserve_x = sum(b.amount_x for b in bins.values())
    reserve_y = sum(b.amount_y for b in bins.values())
    return DlmmBinPool(
        "SOL",
        "USDC",
        _lb_pair(active, bin_step),
        MappingProxyType(arrays),
        reserve_x,
        reserve_y,
        1_000,
    )


pools = st.one_of(cpmm_pools(), dlmm_pools())
moves = st.decimals(min_value=Decimal("-0.2"), max_value=Decimal("0.2"), places=4)
caps = st.sampled_from([Decimal(5), Decimal(25), Decimal(100), Decimal(10_000)])


@settings(max_examples=150, deadline=None)
@given(pools, moves, caps)
def test_a_flow_trade_moves_the_mid_toward_the_target_never_past(
    pool: Pool, move: Decimal, cap: Decimal
) -> None:
    before = pool_mid(pool)
    target = before * (1 + move)
    trade = flow_trade(pool, target, max_move_bps=cap)
    if trade is None:
        return
    assert trade.amount_in > 0
    assert trade.expected_out > 0
    result = pool.swap(trade.token_in, trade.amount_in, 0)
    assert result.amount_out == trade.expected_out
    after = pool_mid(result.pool_after)
    if target < before:
        assert target <= after < before
        assert trade.token_in == "SOL"  # selling the base lowers the mid
    else:
        assert before < after <= target
        assert trade.token_in == "USDC"
    # the cap: CPMM exactly; DLMM to within its cap in whole bins (at least one bin)
    step_bps = abs(after / before - 1) * 10_000
    if isinstance(pool, CpmmPool):
        assert step_bps <= cap * Decimal("1.0001")
    else:
        assert isinstance(pool, DlmmBinPool)
        bins = max(1, int(cap // pool.pair.bin_step))
        assert step_bps <= Decimal(bins * pool.pair.bin_step) * Decimal("1.01")


@settings(max_examples=60, deadline=None)
@given(pools)
def test_a_pool_at_its_target_does_not_trade(pool: Pool) -> None:
    assert flow_trade(pool, pool_mid(pool)) is None


@settings(max_examples=30, deadline=None)
@given(cpmm_pools(), st.sampled_from([Decimal("0.001"), Decimal("0.01"), Decimal("0.05")]))
def test_repeated_flow_converges_on_a_cpmm_pool(pool: CpmmPool, move: Decimal) -> None:
    target = pool_mid(pool) * (1 + move)
    current: Pool = pool
    for _ in range(50):
        trade = flow_trade(current, target, max_move_bps=Decimal(25))
        if trade is None:
            break
        current = current.swap(trade.token_in, trade.amount_in, 0).pool_after
    assert abs(pool_mid(current) / target - 1) * 10_000 <= 1  # within the tolerance (bps)


@settings(max_examples=100, deadline=None)
@given(pools, st.decimals(min_value=Decimal("0.001"), max_value=Decimal("0.2"), places=4))
def test_depth_is_positive_and_monotone(pool: Pool, move: Decimal) -> None:
    bid, ask = depth(pool, move)
    assert bid > 0
    assert ask > 0
    bid2, ask2 = depth(pool, min(move * 2, Decimal("0.5")))
    assert bid2 >= bid
    assert ask2 >= ask


@settings(max_examples=50, deadline=None)
@given(cpmm_pools())
def test_cpmm_depth_moves_the_mid_one_percent(pool: CpmmPool) -> None:
    bid, _ = depth(pool)
    units = int(bid.scaleb(SOL_DECIMALS))
    no_fee = CpmmPool(pool.base, pool.quote, pool.reserve_base, pool.reserve_quote, 0)
    after = pool_mid(no_fee.swap("SOL", units).pool_after)
    assert after / pool_mid(pool) == pytest.approx(Decimal("0.99"), abs=Decimal("1e-4"))
