"""The seeded market on the VM: every pair of `Market(seed=42)` as real CPMM and DLMM pools.

The pools mirror the simulated market at slot 0 (CPMM reserves, DLMM active bin and bins), so
their mids sit where the model's do: a few bps from each pair's reference, the venue's seeded
deviation, and for DLMM within half a bin step of it.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from services.chain.svm.seeded import SeededMarket, build_seeded_market
from services.chain.svm.vm import CpmmSwap, DlmmSwap, SolanaVm
from services.domain.tokens import get_token
from services.pricing.accounts.cpmm import decode_amm_config, decode_pool_state, to_cpmm_pool
from services.pricing.accounts.dlmm import (
    ONE,
    decode_bin_array,
    decode_lb_pair,
    price_from_id,
    quote_exact_in,
)
from services.pricing.accounts.spl import decode_token_amount
from services.venues.cpmm import CpmmPool
from services.venues.dlmm import DlmmPool
from services.venues.market import DEFAULT_PAIRS
from services.venues.pool import Venue

BPS = Decimal(10_000)
VENUE_DEVIATION_BPS = Decimal(16)  # four standard deviations of a venue's seeded offset
PAIRS = [spec.pair for spec in DEFAULT_PAIRS]
SPECS = {spec.pair: spec for spec in DEFAULT_PAIRS}


@pytest.fixture(scope="module")
def built() -> tuple[SolanaVm, SeededMarket, float]:
    vm = SolanaVm()
    start = time.perf_counter()
    market = build_seeded_market(vm, seed=42)
    elapsed = time.perf_counter() - start
    vm.set_time(vm.now + 1)  # the CPMM pools open one second after creation
    return vm, market, elapsed


def cpmm_mid(vm: SolanaVm, market: SeededMarket, pair: tuple[str, str]) -> Decimal:
    keys = market.cpmm[pair]
    state = decode_pool_state(vm.account_data(keys.pool))
    config = decode_amm_config(vm.account_data(keys.amm_config))
    symbols = {vm.mint_of(s): s for s in pair}
    pool = to_cpmm_pool(
        state,
        config,
        decode_token_amount(vm.account_data(keys.vault0)),
        decode_token_amount(vm.account_data(keys.vault1)),
        symbols[keys.mint0],
        symbols[keys.mint1],
    )
    return pool.mid_price(pair[0])


def dlmm_mid(vm: SolanaVm, market: SeededMarket, pair: tuple[str, str]) -> Decimal:
    lb = decode_lb_pair(vm.account_data(market.dlmm[pair].lb_pair))
    per_unit = Decimal(price_from_id(lb.active_id, lb.bin_step)) / ONE
    return per_unit.scaleb(get_token(pair[0]).decimals - get_token(pair[1]).decimals)


def bps_off(mid: Decimal, reference: Decimal) -> Decimal:
    return abs(mid / reference - 1) * BPS


def test_builds_every_pair_quickly(built):
    vm, market, elapsed = built
    assert set(market.cpmm) == set(market.dlmm) == set(PAIRS)
    for pair in PAIRS:
        pool = decode_pool_state(vm.account_data(market.cpmm[pair].pool))
        assert {pool.token_0_mint, pool.token_1_mint} == {vm.mint_of(s) for s in pair}
        lb = decode_lb_pair(vm.account_data(market.dlmm[pair].lb_pair))
        assert (lb.token_x_mint, lb.token_y_mint) == (vm.mint_of(pair[0]), vm.mint_of(pair[1]))
        assert (lb.bin_step, lb.base_factor) == (SPECS[pair].bin_step, SPECS[pair].base_factor)
    print(f"\nseeded market of {len(PAIRS)} pairs built in {elapsed:.3f} s")
    assert elapsed < 30  # generous: shared cores; it takes well under a second


@pytest.mark.parametrize("pair", PAIRS)
def test_cpmm_mid_is_the_models_within_a_few_bps_of_the_reference(built, pair):
    vm, market, _ = built
    mid = cpmm_mid(vm, market, pair)
    model = market.model.pools[(Venue.RAYDIUM, pair)]
    assert isinstance(model, CpmmPool)
    assert model.mid_price(pair[0]) == mid  # the very reserves the model holds
    assert bps_off(mid, SPECS[pair].mid) < VENUE_DEVIATION_BPS


@pytest.mark.parametrize("pair", PAIRS)
def test_dlmm_mid_is_the_models_within_half_a_bin_of_the_reference(built, pair):
    vm, market, _ = built
    mid = dlmm_mid(vm, market, pair)
    model = market.model.pools[(Venue.METEORA, pair)]
    assert isinstance(model, DlmmPool)
    lb = decode_lb_pair(vm.account_data(market.dlmm[pair].lb_pair))
    assert lb.active_id == model.active_id
    assert abs(mid / model.mid_price(pair[0]) - 1) < Decimal("1e-12")
    half_bin = Decimal(SPECS[pair].bin_step) / 2
    assert bps_off(mid, SPECS[pair].mid) < VENUE_DEVIATION_BPS + half_bin


@pytest.mark.parametrize("pair", PAIRS)
def test_dlmm_bins_hold_the_models_amounts(built, pair):
    """The weighted deposit lands each bin's x and y where the model has them, to 1e-6."""
    vm, market, _ = built
    model = market.model.pools[(Venue.METEORA, pair)]
    assert isinstance(model, DlmmPool)
    arrays = {i: decode_bin_array(vm.account_data(key)) for i, key in market.dlmm[pair].bin_arrays}
    for offset, (want_x, want_y) in enumerate(zip(model.reserves_x, model.reserves_y, strict=True)):
        bin_id = model.lower_id + offset
        array = arrays[bin_id // 70]
        got = array.bins[bin_id - array.lower_bin_id]
        for want, have in ((want_x, got.amount_x), (want_y, got.amount_y)):
            assert abs(have - want) <= max(1, want // 10**6)


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("sell_base", [True, False])
def test_seeded_pools_pay_their_quotes(built, pair, sell_base):
    """A trade of about 0.1 % of the pool's depth, each way, on both venues."""
    vm, market, _ = built
    spec = SPECS[pair]
    base, quote = pair
    depth = spec.meteora_depth / 1000
    amount_quote = int(depth.scaleb(get_token(quote).decimals))
    amount_base = int((depth / spec.mid).scaleb(get_token(base).decimals))
    mint_in = vm.mint_of(base if sell_base else quote)
    mint_out = vm.mint_of(quote if sell_base else base)
    amount_in = amount_base if sell_base else amount_quote

    keys = market.dlmm[pair]
    lb = decode_lb_pair(vm.account_data(keys.lb_pair))
    arrays = {i: decode_bin_array(vm.account_data(k)) for i, k in keys.bin_arrays}
    expected = quote_exact_in(lb, arrays, amount_in, swap_for_y=sell_base, now=vm.now).amount_out
    wallet = vm.new_wallet()
    vm.fund(wallet.pubkey(), mint_in, amount_in)
    vm.execute_swaps(wallet, [DlmmSwap(keys, mint_in, amount_in, expected)])
    assert vm.balance(wallet.pubkey(), mint_out) == expected > 0

    cpmm = market.cpmm[pair]
    pool = to_cpmm_pool(
        decode_pool_state(vm.account_data(cpmm.pool)),
        decode_amm_config(vm.account_data(cpmm.amm_config)),
        decode_token_amount(vm.account_data(cpmm.vault0)),
        decode_token_amount(vm.account_data(cpmm.vault1)),
        "T0",
        "T1",
    )
    cpmm_expected = pool.amount_out("T0" if mint_in == cpmm.mint0 else "T1", amount_in)
    wallet = vm.new_wallet()
    vm.fund(wallet.pubkey(), mint_in, amount_in)
    vm.execute_swaps(wallet, [CpmmSwap(cpmm, mint_in, amount_in, cpmm_expected)])
    assert vm.balance(wallet.pubkey(), mint_out) == cpmm_expected > 0


def test_same_seed_same_market_other_seed_other_market():
    first, second, other = SolanaVm(), SolanaVm(), SolanaVm()
    a = build_seeded_market(first, seed=42)
    b = build_seeded_market(second, seed=42)
    c = build_seeded_market(other, seed=7)
    assert a.provider.pubkey() == b.provider.pubkey() != c.provider.pubkey()
    for pair in PAIRS:
        assert a.cpmm[pair] == b.cpmm[pair]
        assert a.dlmm[pair] == b.dlmm[pair]
        for key in (a.dlmm[pair].lb_pair, *(k for _, k in a.dlmm[pair].bin_arrays)):
            assert first.account_data(key) == second.account_data(key)
        assert first.account_data(a.cpmm[pair].vault0) == second.account_data(b.cpmm[pair].vault0)
    # Another seed draws other venue offsets: other reserves, the same addresses.
    assert any(
        first.account_data(a.cpmm[p].vault0) != other.account_data(c.cpmm[p].vault0) for p in PAIRS
    )
