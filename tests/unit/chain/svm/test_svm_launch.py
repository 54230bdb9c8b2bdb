"""Token launches on the Solana VM: a real SPL mint with the asked authorities, the program's
own pool with its open time, the LP burned or kept, and swaps refused before the open."""

from __future__ import annotations

from decimal import Decimal

import pytest
from solders.compute_budget import ID as COMPUTE_BUDGET
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from services.chain.launch import (
    PACKET_DATA_SIZE,
    Launched,
    Step,
    initial_lp,
    launch_on_vm,
    pack_steps,
    plan_launch,
)
from services.chain.solana_client import failure_code
from services.chain.svm.constants import TOKEN_PROGRAM_ID
from services.chain.svm.errors import PoolNotOpenError
from services.chain.svm.vm import (
    CpmmPoolKeys,
    CpmmSwap,
    DlmmPoolKeys,
    DlmmSwap,
    SolanaVm,
    dlmm_bin_array_address,
)
from services.domain.launch import LaunchSpec, LaunchVenue
from services.pricing.accounts.dlmm import decode_lb_pair
from services.pricing.accounts.spl import decode_mint

SOL = 10**9


@pytest.fixture
def vm() -> SolanaVm:
    return SolanaVm()


def launcher(vm: SolanaVm, sol: int = 500) -> Keypair:
    wallet = vm.new_wallet(1_000 * SOL)
    vm.fund(wallet.pubkey(), vm.mint_of("SOL"), sol * SOL)
    return wallet


def spec(venue: LaunchVenue = LaunchVenue.RAYDIUM, **changes: object) -> LaunchSpec:
    fields: dict[str, object] = {
        "symbol": "MEME",
        "quote": "SOL",
        "liquidity": Decimal(200),
        "venue": venue,
        "open_in_seconds": 10,
        "burn_lp": venue is LaunchVenue.RAYDIUM,
    }
    fields.update(changes)
    return LaunchSpec(**fields)  # type: ignore[arg-type]


def buy(vm: SolanaVm, launched: Launched, wallet: Keypair, lamports: int) -> int:
    """Swap SOL for the new token; the tokens received."""
    mint, pool = Pubkey.from_string(launched.mint), Pubkey.from_string(launched.pool)
    sol = vm.mint_of("SOL")
    if launched.venue is LaunchVenue.RAYDIUM:
        keys = CpmmPoolKeys.derive(mint, sol)
        assert keys.pool == pool
        vm.execute_swaps(wallet, [CpmmSwap(keys, sol, lamports, 1)])
    else:
        pair = decode_lb_pair(vm.account_data(pool))
        arrays = tuple(
            (i, k)
            for i in range(-20, 20)
            if vm.svm.get_account(k := dlmm_bin_array_address(pool, i)) is not None
        )
        keys_d = DlmmPoolKeys(
            pool,
            pair.token_x_mint,
            pair.token_y_mint,
            pair.reserve_x,
            pair.reserve_y,
            pair.oracle,
            TOKEN_PROGRAM_ID,
            TOKEN_PROGRAM_ID,
            arrays,
        )
        vm.execute_swaps(wallet, [DlmmSwap(keys_d, sol, lamports, 1)])
    return vm.balance(wallet.pubkey(), mint)


def test_raydium_launch_renounced_and_burned_refuses_swaps_until_open(vm: SolanaVm) -> None:
    me = launcher(vm)
    launched = launch_on_vm(vm, me, spec())
    mint = decode_mint(vm.account_data(Pubkey.from_string(launched.mint)))
    assert (mint.decimals, mint.mint_authority, mint.freeze_authority) == (6, None, None)
    assert mint.supply == 10**9 * 10**6
    assert launched.open_time == vm.now + 10
    facts = launched.facts
    assert (facts.lp_supply, facts.quote_liquidity) == (0, Decimal(200))
    trader = launcher(vm, sol=10)
    with pytest.raises(PoolNotOpenError) as refused:
        buy(vm, launched, trader, SOL)
    assert refused.value.code == 6000
    assert failure_code(refused.value) == "POOL_NOT_OPEN"
    vm.set_time(launched.open_time - 1)
    with pytest.raises(PoolNotOpenError):
        buy(vm, launched, trader, SOL)
    vm.set_time(launched.open_time)
    assert buy(vm, launched, trader, SOL) > 0


def test_raydium_launch_keeping_authorities_and_lp(vm: SolanaVm) -> None:
    me = launcher(vm)
    kept = spec(renounce_mint_authority=False, renounce_freeze_authority=False, burn_lp=False)
    launched = launch_on_vm(vm, me, kept)
    assert launched.facts.mint_authority == str(me.pubkey())
    assert launched.facts.freeze_authority == str(me.pubkey())
    lp_mint = Pubkey.from_string(str(launched.lp_mint))
    expected_lp = initial_lp(launched.token_amount, launched.quote_amount)
    assert launched.facts.lp_supply == expected_lp == vm.balance(me.pubkey(), lp_mint)


def test_meteora_launch_pair_refuses_swaps_until_its_activation(vm: SolanaVm) -> None:
    me = launcher(vm)
    launched = launch_on_vm(vm, me, spec(LaunchVenue.METEORA, renounce_freeze_authority=False))
    assert launched.lp_mint is None
    assert launched.facts.lp_supply is None
    assert launched.facts.freeze_authority == str(me.pubkey())
    assert launched.facts.mint_authority is None
    assert Decimal(199) < launched.facts.quote_liquidity <= Decimal(200)
    trader = launcher(vm, sol=10)
    with pytest.raises(PoolNotOpenError) as refused:
        buy(vm, launched, trader, SOL // 10)
    assert refused.value.code == 6042
    vm.set_time(launched.open_time)
    assert buy(vm, launched, trader, SOL // 10) > 0


def test_meteora_launch_splits_into_transactions_under_the_size_limit(vm: SolanaVm) -> None:
    """The pair, its bin arrays and two 69-bin deposits do not fit one transaction: each batch
    fits Solana's 1,232 bytes, and the instructions stay in the order they must land."""
    me = launcher(vm)
    plan = plan_launch(spec(LaunchVenue.METEORA, burn_lp=False), me.pubkey(), vm.now)
    batches = plan.transactions()
    assert len(batches) > 2
    for batch in batches:
        assert len(bytes(batch.sign(me, vm.latest_blockhash()))) <= PACKET_DATA_SIZE
    # After the mint: each transaction a compute budget, then the steps in order.
    assert all(b.instructions[0].program_id == COMPUTE_BUDGET for b in batches[1:])
    sent = [ix for b in batches[1:] for ix in b.instructions[1:]]
    assert sent == [s.instruction for s in plan.dlmm_steps()]
    # The plan's keys are the pair the program creates, with every bin array a deposit names.
    launched = launch_on_vm(vm, me, plan.spec, mint=plan.mint)
    assert launched.pool == str(plan.dlmm.lb_pair)
    assert len(launched.signatures) == len(batches)
    for _, address in plan.dlmm.bin_arrays:
        assert vm.svm.get_account(address) is not None


def test_packing_starts_a_new_transaction_only_when_the_next_step_does_not_fit() -> None:
    payer = Keypair().pubkey()
    program = Keypair().pubkey()

    def step(size: int) -> Step:
        return Step(Instruction(program, bytes(size), [AccountMeta(payer, True, True)]))

    small = [step(100) for _ in range(5)]
    assert [len(b.instructions) for b in pack_steps(small, payer)] == [6]  # budget + 5
    big = [step(600), step(600), step(100)]
    assert [len(b.instructions) for b in pack_steps(big, payer)] == [2, 3]
    with pytest.raises(ValueError, match="does not fit"):
        pack_steps([step(PACKET_DATA_SIZE)], payer)
