"""Pure decoders and quote math, checked against the vendored mainnet accounts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.chain.svm.constants import ACCOUNTS, CPMM_AMM_CONFIG
from services.pricing.accounts.cpmm import decode_amm_config, quote_base_input
from services.pricing.accounts.dlmm import (
    ONE,
    decode_bin_array,
    decode_lb_pair,
    decode_oracle,
    price_from_id,
    quote_exact_in,
)
from services.venues.cpmm import CpmmPool

METEORA = ACCOUNTS / "meteora"
PAIRS = sorted(p.name for p in METEORA.iterdir())


def test_amm_config_is_mainnets_25_bps_tier():
    config = decode_amm_config(
        (ACCOUNTS / "raydium" / f"amm_config.{CPMM_AMM_CONFIG}.bin").read_bytes()
    )
    assert (config.index, config.trade_fee_rate, config.create_pool_fee) == (0, 2_500, 150_000_000)


@pytest.mark.parametrize("name", PAIRS)
def test_lb_pair_points_at_its_own_accounts(name):
    pair = decode_lb_pair((METEORA / name / "lb_pair.bin").read_bytes())
    assert pair.min_bin_id <= pair.active_id <= pair.max_bin_id
    assert pair.bin_step > 0
    assert pair.status == 0
    oracle = decode_oracle((METEORA / name / "oracle.bin").read_bytes())
    assert oracle.active_size <= oracle.length
    for path in METEORA.joinpath(name).glob("bin_array_*.bin"):
        assert str(decode_bin_array(path.read_bytes()).lb_pair) == name


@pytest.mark.parametrize("name", PAIRS)
def test_price_math_reproduces_every_price_the_program_stored(name):
    """Bins store the price the program computed: our Q64.64 pow must agree to the bit."""
    pair = decode_lb_pair((METEORA / name / "lb_pair.bin").read_bytes())
    checked = 0
    for path in METEORA.joinpath(name).glob("bin_array_*.bin"):
        array = decode_bin_array(path.read_bytes())
        for offset, b in enumerate(array.bins):
            if b.price:
                assert price_from_id(array.lower_bin_id + offset, pair.bin_step) == b.price
                checked += 1
    assert checked > 0


def test_price_of_bin_zero_is_one():
    assert price_from_id(0, 25) == ONE


@given(
    reserve_in=st.integers(1, 10**18),
    reserve_out=st.integers(1, 10**18),
    amount_in=st.integers(1, 10**15),
    fee_bps=st.sampled_from([1, 4, 25, 100, 200]),
)
def test_engine_cpmm_pool_quotes_as_the_program_formula(
    reserve_in, reserve_out, amount_in, fee_bps
):
    pool = CpmmPool("SOL", "USDC", reserve_in, reserve_out, fee_bps)
    assert pool.amount_out("SOL", amount_in) == quote_base_input(
        amount_in, reserve_in, reserve_out, fee_bps * 100
    )


@pytest.mark.parametrize("name", PAIRS)
@given(amount_in=st.integers(1, 10**6), swap_for_y=st.booleans())
def test_dlmm_output_is_monotone_in_the_input(name, amount_in, swap_for_y):
    pair = decode_lb_pair((METEORA / name / "lb_pair.bin").read_bytes())
    arrays = {}
    for path in METEORA.joinpath(name).glob("bin_array_*.bin"):
        array = decode_bin_array(path.read_bytes())
        arrays[array.index] = array
    now = pair.last_update_timestamp + 10_000
    small = quote_exact_in(pair, arrays, amount_in, swap_for_y=swap_for_y, now=now).amount_out
    more = quote_exact_in(pair, arrays, amount_in + 1, swap_for_y=swap_for_y, now=now).amount_out
    assert small <= more
