"""Split routes and two-hop routes as several swap instructions in one transaction."""

from __future__ import annotations

import pytest
from solders.pubkey import Pubkey

from services.chain.svm.errors import SlippageExceededError
from services.chain.svm.vm import CpmmPoolKeys, CpmmSwap, DlmmPoolKeys, DlmmSwap, SolanaVm
from services.pricing.accounts.cpmm import decode_amm_config, decode_pool_state, quote_base_input
from services.pricing.accounts.dlmm import decode_bin_array, decode_lb_pair, quote_exact_in
from services.pricing.accounts.spl import decode_token_amount

PUMP_PAIR = "EtAdVRLFH22rjWh3mcUasKFF27WtHhsaCvK27tPFFWig"  # DLMM: X = a pump token, Y = wSOL


def cpmm_quote(vm: SolanaVm, keys: CpmmPoolKeys, mint_in: Pubkey, amount_in: int) -> int:
    state = decode_pool_state(vm.account_data(keys.pool))
    fee = decode_amm_config(vm.account_data(keys.amm_config)).trade_fee_rate
    r0, r1 = state.reserves(
        decode_token_amount(vm.account_data(keys.vault0)),
        decode_token_amount(vm.account_data(keys.vault1)),
    )
    reserves = (r0, r1) if mint_in == keys.mint0 else (r1, r0)
    return quote_base_input(amount_in, *reserves, fee)


def dlmm_quote(vm: SolanaVm, keys: DlmmPoolKeys, mint_in: Pubkey, amount_in: int) -> int:
    pair = decode_lb_pair(vm.account_data(keys.lb_pair))
    arrays = {i: decode_bin_array(vm.account_data(k)) for i, k in keys.bin_arrays}
    swap_for_y = mint_in == keys.mint_x
    return quote_exact_in(pair, arrays, amount_in, swap_for_y=swap_for_y, now=vm.now).amount_out


@pytest.fixture
def market():
    """SOL/USDC and SOL/pump on CPMM (created with `initialize`), SOL/pump on DLMM (mainnet)."""
    vm = SolanaVm()
    dlmm = vm.load_dlmm_snapshot(PUMP_PAIR)
    sol, usdc, pump = vm.mint_of("SOL"), vm.mint_of("USDC"), dlmm.mint_x
    sol_usdc = vm.create_cpmm_pool(sol, usdc, 1_000 * 10**9, 150_000 * 10**6)
    sol_pump = vm.create_cpmm_pool(sol, pump, 2 * 10**9, 3 * 10**9)
    pair = decode_lb_pair(vm.account_data(dlmm.lb_pair))
    vm.set_time(max(vm.now + 1, pair.last_update_timestamp + 60))
    return vm, sol_usdc, sol_pump, dlmm


def test_split_across_venues_lands_in_one_transaction(market):
    vm, _, sol_pump, dlmm = market
    sol, pump = vm.mint_of("SOL"), dlmm.mint_x
    wallet = vm.new_wallet()
    vm.fund(wallet.pubkey(), sol, 3 * 10**8)
    a, b = 10**8, 2 * 10**8
    qa, qb = cpmm_quote(vm, sol_pump, sol, a), dlmm_quote(vm, dlmm, sol, b)
    legs = [CpmmSwap(sol_pump, sol, a, qa), DlmmSwap(dlmm, sol, b, qb)]
    executed = vm.execute_swaps(wallet, legs)
    assert vm.balance(wallet.pubkey(), pump) == qa + qb
    assert vm.balance(wallet.pubkey(), sol) == 0
    assert 0 < executed.compute_units < 1_400_000


def test_two_hops_chain_the_first_output_into_the_second(market):
    vm, sol_usdc, _, dlmm = market
    usdc, sol, pump = vm.mint_of("USDC"), vm.mint_of("SOL"), dlmm.mint_x
    wallet = vm.new_wallet()
    vm.fund(wallet.pubkey(), usdc, 30 * 10**6)
    hop1 = cpmm_quote(vm, sol_usdc, usdc, 30 * 10**6)
    hop2 = dlmm_quote(vm, dlmm, sol, hop1)
    legs = [CpmmSwap(sol_usdc, usdc, 30 * 10**6, hop1), DlmmSwap(dlmm, sol, hop1, hop2)]
    vm.execute_swaps(wallet, legs)
    assert vm.balance(wallet.pubkey(), pump) == hop2
    assert vm.balance(wallet.pubkey(), sol) == 0  # the intermediate token passes straight through
    assert vm.balance(wallet.pubkey(), usdc) == 0


def test_a_failing_hop_reverts_the_whole_route(market):
    vm, sol_usdc, _, dlmm = market
    usdc, sol = vm.mint_of("USDC"), vm.mint_of("SOL")
    wallet = vm.new_wallet()
    vm.fund(wallet.pubkey(), usdc, 30 * 10**6)
    hop1 = cpmm_quote(vm, sol_usdc, usdc, 30 * 10**6)
    hop2 = dlmm_quote(vm, dlmm, sol, hop1)
    legs = [CpmmSwap(sol_usdc, usdc, 30 * 10**6, hop1), DlmmSwap(dlmm, sol, hop1, hop2 + 1)]
    with pytest.raises(SlippageExceededError):
        vm.execute_swaps(wallet, legs)
    assert vm.balance(wallet.pubkey(), usdc) == 30 * 10**6
    assert vm.balance(wallet.pubkey(), sol) == 0
