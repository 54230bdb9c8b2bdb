"""Program and runtime failures reach the engine as typed errors it can act on."""

from __future__ import annotations

import pytest

from services.chain.svm.errors import (
    BlockhashExpiredError,
    InsufficientFundsError,
    PoolNotOpenError,
    SlippageExceededError,
)
from services.chain.svm.vm import CpmmSwap, DlmmSwap, SolanaVm
from services.pricing.accounts.cpmm import decode_amm_config, decode_pool_state, quote_base_input
from services.pricing.accounts.dlmm import decode_bin_array, decode_lb_pair, quote_exact_in
from services.pricing.accounts.spl import decode_token_amount

SOL_IN = 10**9


@pytest.fixture
def vm() -> SolanaVm:
    return SolanaVm()


def sol_usdc(vm: SolanaVm, open_time: int = 0):
    return vm.create_cpmm_pool(
        vm.mint_of("SOL"), vm.mint_of("USDC"), 1_000 * 10**9, 150_000 * 10**6, open_time=open_time
    )


def cpmm_quote(vm: SolanaVm, keys, amount_in: int) -> int:
    state = decode_pool_state(vm.account_data(keys.pool))
    fee = decode_amm_config(vm.account_data(keys.amm_config)).trade_fee_rate
    r0, r1 = state.reserves(
        decode_token_amount(vm.account_data(keys.vault0)),
        decode_token_amount(vm.account_data(keys.vault1)),
    )
    zero_in = keys.mint0 == vm.mint_of("SOL")
    return quote_base_input(amount_in, *((r0, r1) if zero_in else (r1, r0)), fee)


def test_min_out_one_above_the_quote_is_slippage_6005(vm):
    keys = sol_usdc(vm)
    vm.set_time(vm.now + 1)
    wallet = vm.new_wallet()
    vm.fund(wallet.pubkey(), vm.mint_of("SOL"), 2 * SOL_IN)
    quoted = cpmm_quote(vm, keys, SOL_IN)
    with pytest.raises(SlippageExceededError) as raised:
        vm.execute_swaps(wallet, [CpmmSwap(keys, vm.mint_of("SOL"), SOL_IN, quoted + 1)])
    assert raised.value.code == 6005
    assert vm.balance(wallet.pubkey(), vm.mint_of("SOL")) == 2 * SOL_IN  # nothing moved
    # The quote itself is the tightest minimum the program accepts.
    vm.execute_swaps(wallet, [CpmmSwap(keys, vm.mint_of("SOL"), SOL_IN, quoted)])
    assert vm.balance(wallet.pubkey(), vm.mint_of("USDC")) == quoted


def test_swap_before_open_time_is_pool_not_open_6000(vm):
    opens = vm.now + 3_600
    keys = sol_usdc(vm, open_time=opens)
    assert decode_pool_state(vm.account_data(keys.pool)).open_time == opens
    wallet = vm.new_wallet()
    vm.fund(wallet.pubkey(), vm.mint_of("SOL"), SOL_IN)
    leg = CpmmSwap(keys, vm.mint_of("SOL"), SOL_IN, 0)
    vm.set_time(opens - 1)
    with pytest.raises(PoolNotOpenError) as raised:
        vm.execute_swaps(wallet, [leg])
    assert raised.value.code == 6000
    vm.set_time(opens)
    vm.execute_swaps(wallet, [leg])
    assert vm.balance(wallet.pubkey(), vm.mint_of("USDC")) > 0


def test_swapping_more_than_the_wallet_holds_is_insufficient_funds(vm):
    keys = sol_usdc(vm)
    vm.set_time(vm.now + 1)
    wallet = vm.new_wallet()
    vm.fund(wallet.pubkey(), vm.mint_of("USDC"), 10 * 10**6)
    with pytest.raises(InsufficientFundsError):
        vm.execute_swaps(wallet, [CpmmSwap(keys, vm.mint_of("USDC"), 10 * 10**6 + 1, 0)])
    assert not InsufficientFundsError.retryable


def test_stale_blockhash_is_retryable_and_a_rebuilt_transaction_lands(vm):
    keys = sol_usdc(vm)
    vm.set_time(vm.now + 1)
    wallet = vm.new_wallet()
    vm.fund(wallet.pubkey(), vm.mint_of("SOL"), SOL_IN)
    leg = CpmmSwap(keys, vm.mint_of("SOL"), SOL_IN, 0)
    vm.ensure_token_accounts(wallet.pubkey(), [leg])
    ixs = [vm.swap_ix(wallet.pubkey(), leg)]
    stale = vm.build(ixs, wallet)
    vm.expire_blockhash()
    with pytest.raises(BlockhashExpiredError) as raised:
        vm.submit(stale)
    assert raised.value.retryable
    vm.submit(vm.build(ixs, wallet))
    assert vm.balance(wallet.pubkey(), vm.mint_of("USDC")) > 0


def test_dlmm_min_out_above_the_quote_is_slippage(vm):
    keys = vm.load_dlmm_snapshot("EtAdVRLFH22rjWh3mcUasKFF27WtHhsaCvK27tPFFWig")
    pair = decode_lb_pair(vm.account_data(keys.lb_pair))
    vm.set_time(pair.last_update_timestamp + 60)
    arrays = {i: decode_bin_array(vm.account_data(k)) for i, k in keys.bin_arrays}
    quoted = quote_exact_in(pair, arrays, 10**7, swap_for_y=False, now=vm.now).amount_out
    wallet = vm.new_wallet()
    vm.fund(wallet.pubkey(), keys.mint_y, 10**7)
    with pytest.raises(SlippageExceededError) as raised:
        vm.execute_swaps(wallet, [DlmmSwap(keys, keys.mint_y, 10**7, quoted + 1)])
    assert raised.value.code == 6003
    vm.execute_swaps(wallet, [DlmmSwap(keys, keys.mint_y, 10**7, quoted)])
    assert vm.balance(wallet.pubkey(), keys.mint_x) == quoted
