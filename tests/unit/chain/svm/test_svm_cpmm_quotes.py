"""The engine's CPMM quote, from decoded accounts, equals what the real program pays."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.chain.svm.errors import SvmTransactionError
from services.chain.svm.vm import CpmmPoolKeys, CpmmSwap, SolanaVm
from services.pricing.accounts.cpmm import (
    decode_amm_config,
    decode_pool_state,
    quote_base_input,
    to_cpmm_pool,
)
from services.pricing.accounts.spl import decode_token_amount
from tests.svm_strategies import cpmm_decimals, cpmm_reserves, directions, swap_sizes

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def vm() -> SolanaVm:
    return SolanaVm()


def quote(vm: SolanaVm, keys: CpmmPoolKeys, zero_in: bool, amount_in: int) -> tuple[int, int]:
    """(quote by the pricing formula, quote by the engine's CpmmPool) from the raw accounts."""
    state = decode_pool_state(vm.account_data(keys.pool))
    config = decode_amm_config(vm.account_data(state.amm_config))
    vault0 = decode_token_amount(vm.account_data(state.token_0_vault))
    vault1 = decode_token_amount(vm.account_data(state.token_1_vault))
    r0, r1 = state.reserves(vault0, vault1)
    direct = quote_base_input(
        amount_in, *((r0, r1) if zero_in else (r1, r0)), config.trade_fee_rate
    )
    pool = to_cpmm_pool(state, config, vault0, vault1, "A", "B")
    engine = pool.amount_out("A" if zero_in else "B", amount_in)
    return direct, engine


def swap(vm: SolanaVm, keys: CpmmPoolKeys, zero_in: bool, amount_in: int) -> int:
    """Run `swap_base_input` from a fresh, exactly funded wallet; give what it received."""
    wallet = vm.new_wallet()
    mint_in, mint_out = (keys.mint0, keys.mint1) if zero_in else (keys.mint1, keys.mint0)
    vm.fund(wallet.pubkey(), mint_in, amount_in)
    vm.execute_swaps(wallet, [CpmmSwap(keys, mint_in, amount_in, 0)])
    return vm.balance(wallet.pubkey(), mint_out)


@SETTINGS
@given(
    reserve_a=cpmm_reserves,
    reserve_b=cpmm_reserves,
    decimals=st.tuples(cpmm_decimals, cpmm_decimals),
    zero_in=directions,
    amount_in=swap_sizes,
)
def test_quote_equals_program_output(vm, reserve_a, reserve_b, decimals, zero_in, amount_in):
    keys = vm.create_cpmm_pool(
        vm.create_mint(decimals[0]), vm.create_mint(decimals[1]), reserve_a, reserve_b
    )
    vm.set_time(vm.now + 1)  # the program opens a new pool one second after creation
    direct, engine = quote(vm, keys, zero_in, amount_in)
    assert direct == engine
    if direct == 0:
        # Nothing to pay out: the program refuses rather than take the input for nothing.
        with pytest.raises(SvmTransactionError):
            swap(vm, keys, zero_in, amount_in)
    else:
        assert swap(vm, keys, zero_in, amount_in) == direct


@SETTINGS
@given(
    reserves=st.tuples(cpmm_reserves, cpmm_reserves),
    trades=st.lists(st.tuples(directions, swap_sizes), min_size=2, max_size=8),
)
def test_quotes_track_a_sequence_of_swaps(vm, reserves, trades):
    """Later quotes see the fees the program set aside: reserves are vaults less those fees."""
    keys = vm.create_cpmm_pool(vm.create_mint(9), vm.create_mint(6), *reserves)
    vm.set_time(vm.now + 1)
    for zero_in, amount_in in trades:
        expected, _ = quote(vm, keys, zero_in, amount_in)
        if expected == 0:
            continue
        assert swap(vm, keys, zero_in, amount_in) == expected


def test_mainnet_config_is_the_25_bps_tier(vm):
    state_keys = vm.create_cpmm_pool(vm.mint_of("SOL"), vm.mint_of("USDC"), 10**12, 15 * 10**10)
    state = decode_pool_state(vm.account_data(state_keys.pool))
    config = decode_amm_config(vm.account_data(state.amm_config))
    assert (config.trade_fee_rate, config.protocol_fee_rate, config.fund_fee_rate) == (
        2_500,
        120_000,
        40_000,
    )
    assert {state.token_0_mint, state.token_1_mint} == {vm.mint_of("SOL"), vm.mint_of("USDC")}
    assert state.open_time == vm.now + 1
