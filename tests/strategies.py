"""Hypothesis strategies shared by the property tests: pools, amounts, seeds."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

from services.venues.cpmm import CpmmPool
from services.venues.dlmm import DlmmPool, LiquidityShape
from services.venues.pool import Pool

seeds = st.integers(min_value=0, max_value=2**32)
fee_bps = st.sampled_from([1, 4, 25, 100])


@st.composite
def cpmm_pools(draw: st.DrawFn) -> CpmmPool:
    """A SOL/USDC constant-product pool with arbitrary (positive) reserves."""
    return CpmmPool(
        "SOL",
        "USDC",
        draw(st.integers(10**3, 10**16)),
        draw(st.integers(10**3, 10**14)),
        draw(fee_bps),
    )


@st.composite
def dlmm_pools(draw: st.DrawFn) -> DlmmPool:
    """A SOL/USDC DLMM pool of any shape, bin step, depth and fee settings."""
    return DlmmPool.from_mid(
        "SOL",
        "USDC",
        Decimal(draw(st.integers(1, 2_000))),
        Decimal(draw(st.integers(1_000, 10_000_000))),
        bin_step=draw(st.sampled_from([1, 5, 10, 25, 100])),
        shape=draw(st.sampled_from(list(LiquidityShape))),
        radius=draw(st.integers(2, 30)),
        base_factor=draw(st.sampled_from([5_000, 10_000, 20_000])),
        variable_fee_control=draw(st.sampled_from([0, 40_000, 500_000])),
    )


pools: st.SearchStrategy[Pool] = st.one_of(cpmm_pools(), dlmm_pools())
tokens_in = st.sampled_from(["SOL", "USDC"])
amounts = st.integers(min_value=1, max_value=10**13)
