"""The engine's DLMM quote, from decoded accounts, equals what the real program pays.

Runs on vendored mainnet snapshots, both directions, with the VM clock set so the time since
the pair's last swap (which drives the variable fee) is the one drawn.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.chain.svm.errors import SvmTransactionError
from services.chain.svm.vm import DlmmPoolKeys, DlmmSwap, SolanaVm
from services.pricing.accounts.dlmm import (
    DlmmQuoteError,
    decode_bin_array,
    decode_lb_pair,
    quote_exact_in,
)
from services.pricing.accounts.spl import decode_token_amount
from tests.svm_strategies import directions, dlmm_elapsed, swap_sizes

# Plain SPL snapshots: one quoted in wSOL with an active volatility state, one with the
# newer fee modes (fee collected in y, base-fee power factor) and slot-gated activation.
SNAPSHOTS = [
    "EtAdVRLFH22rjWh3mcUasKFF27WtHhsaCvK27tPFFWig",
    "9t3EyC9FweyL7PBWvKz3mrXg8B9fwFc9SK3QxM4ENqhd",
]
SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def vm() -> SolanaVm:
    return SolanaVm()


def load(vm: SolanaVm, lb_pair: str, elapsed: int) -> DlmmPoolKeys:
    """(Re)load the snapshot and put the clock `elapsed` seconds after its last update."""
    keys = vm.load_dlmm_snapshot(lb_pair)
    pair = decode_lb_pair(vm.account_data(keys.lb_pair))
    if pair.activation_type == 0 and vm.svm.get_clock().slot < pair.activation_point:
        vm.svm.warp_to_slot(pair.activation_point)
    vm.set_time(pair.last_update_timestamp + elapsed)
    return keys


def quote(vm: SolanaVm, keys: DlmmPoolKeys, swap_for_y: bool, amount_in: int) -> int:
    """Quote from the raw pair and bin-array accounts, as a pricing service would."""
    pair = decode_lb_pair(vm.account_data(keys.lb_pair))
    arrays = {i: decode_bin_array(vm.account_data(key)) for i, key in keys.bin_arrays}
    vault = decode_token_amount(vm.account_data(keys.reserve_y if swap_for_y else keys.reserve_x))
    return quote_exact_in(
        pair, arrays, amount_in, swap_for_y=swap_for_y, now=vm.now, reserve_out=vault
    ).amount_out


def swap(vm: SolanaVm, keys: DlmmPoolKeys, swap_for_y: bool, amount_in: int) -> int:
    wallet = vm.new_wallet()
    mint_in, mint_out = (keys.mint_x, keys.mint_y) if swap_for_y else (keys.mint_y, keys.mint_x)
    vm.fund(wallet.pubkey(), mint_in, amount_in)
    vm.execute_swaps(wallet, [DlmmSwap(keys, mint_in, amount_in, 0)])
    return vm.balance(wallet.pubkey(), mint_out)


@pytest.mark.parametrize("lb_pair", SNAPSHOTS)
@SETTINGS
@given(swap_for_y=directions, amount_in=swap_sizes, elapsed=dlmm_elapsed)
def test_quote_equals_program_output(vm, lb_pair, swap_for_y, amount_in, elapsed):
    keys = load(vm, lb_pair, elapsed)
    try:
        expected = quote(vm, keys, swap_for_y, amount_in)
    except DlmmQuoteError:
        # Beyond the liquidity in the loaded bin arrays: the program cannot fill it either.
        with pytest.raises(SvmTransactionError):
            swap(vm, keys, swap_for_y, amount_in)
        return
    if expected == 0:
        # Dust: whatever the program does, it pays nothing.
        try:
            assert swap(vm, keys, swap_for_y, amount_in) == 0
        except SvmTransactionError:
            pass
        return
    assert swap(vm, keys, swap_for_y, amount_in) == expected


@pytest.mark.parametrize("lb_pair", SNAPSHOTS)
@SETTINGS
@given(
    trades=st.lists(
        st.tuples(directions, st.integers(min_value=10**3, max_value=10**10), dlmm_elapsed),
        min_size=2,
        max_size=6,
    )
)
def test_quotes_track_a_burst_of_swaps(vm, lb_pair, trades):
    """Back-to-back swaps move the active bin and the volatility state; quotes follow both."""
    keys = load(vm, lb_pair, 10_000)
    for swap_for_y, amount_in, pause in trades:
        vm.set_time(vm.now + pause)
        try:
            expected = quote(vm, keys, swap_for_y, amount_in)
        except DlmmQuoteError:
            continue
        if expected > 0:
            assert swap(vm, keys, swap_for_y, amount_in) == expected
