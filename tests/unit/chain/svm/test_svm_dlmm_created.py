"""DLMM pairs the VM creates for its own mints, with the program's instructions, quote exactly.

Each example makes a fresh pair (preset parameter, `initialize_lb_pair`, bin arrays, positions,
`add_liquidity_by_weight` in one of the market's shapes), decodes it with the engine's account
decoders and checks the quote against what the program pays, both ways.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from services.chain.svm.errors import PoolNotOpenError, SvmTransactionError
from services.chain.svm.seeded import shape_weights
from services.chain.svm.vm import DlmmFees, DlmmPoolKeys, DlmmSwap, SolanaVm
from services.pricing.accounts.dlmm import (
    DlmmQuoteError,
    decode_bin_array,
    decode_lb_pair,
    quote_exact_in,
)
from services.pricing.accounts.spl import decode_token_amount
from services.venues.dlmm import LiquidityShape
from tests.svm_strategies import directions, dlmm_elapsed, swap_sizes

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
shapes = st.sampled_from(list(LiquidityShape))
bin_steps = st.sampled_from([1, 5, 10, 20, 50, 100])
active_ids = st.integers(min_value=-3_000, max_value=3_000)
radii = st.integers(min_value=0, max_value=80)
deposits = st.integers(min_value=10**6, max_value=10**15)
MAX_PRICE_EXPONENT_BPS = 100_000


@pytest.fixture(scope="module")
def vm() -> SolanaVm:
    return SolanaVm()


def create(
    vm: SolanaVm,
    *,
    shape: LiquidityShape,
    bin_step: int,
    active_id: int,
    radius: int,
    amount_x: int,
    amount_y: int,
    decimals: tuple[int, int] = (9, 6),
) -> DlmmPoolKeys:
    """A fresh pair of fresh mints, filled by a fresh provider in `shape` around `active_id`."""
    mint_x, mint_y = vm.create_mint(decimals[0]), vm.create_mint(decimals[1])
    provider = vm.new_wallet()
    vm.fund(provider.pubkey(), mint_x, amount_x)
    vm.fund(provider.pubkey(), mint_y, amount_y)
    keys = vm.create_dlmm_pair(
        mint_x, mint_y, active_id=active_id, bin_step=bin_step, fees=DlmmFees(10_000)
    )
    weights = shape_weights(shape, radius, active_id)
    return vm.add_dlmm_liquidity(keys, provider, weights, amount_x, amount_y)


def quote(vm: SolanaVm, keys: DlmmPoolKeys, swap_for_y: bool, amount_in: int) -> int:
    """Quote from the raw pair, bin-array and vault accounts, as a pricing service would."""
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


def check(vm: SolanaVm, keys: DlmmPoolKeys, swap_for_y: bool, amount_in: int) -> None:
    """The quote is what the program pays; where the quote refuses, so does the program."""
    try:
        expected = quote(vm, keys, swap_for_y, amount_in)
    except DlmmQuoteError:
        with pytest.raises(SvmTransactionError):
            swap(vm, keys, swap_for_y, amount_in)
        return
    if expected == 0:
        try:
            assert swap(vm, keys, swap_for_y, amount_in) == 0
        except SvmTransactionError:
            pass
        return
    assert swap(vm, keys, swap_for_y, amount_in) == expected


@SETTINGS
@given(
    shape=shapes,
    bin_step=bin_steps,
    active_id=active_ids,
    radius=radii,
    amounts=st.tuples(deposits, deposits),
    swap_for_y=directions,
    amount_in=swap_sizes,
    elapsed=dlmm_elapsed,
)
def test_created_pair_quote_equals_program_output(
    vm, shape, bin_step, active_id, radius, amounts, swap_for_y, amount_in, elapsed
):
    # Prices beyond e^±10 (|active id| x bin step over 100,000 bps) make the program's own
    # liquidity arithmetic overflow (TypeCastFailed, 6019) for large deposits: no real pair
    # sits there, so the property is stated for prices a pair can have.
    assume(abs(active_id) * bin_step <= MAX_PRICE_EXPONENT_BPS)
    keys = create(
        vm,
        shape=shape,
        bin_step=bin_step,
        active_id=active_id,
        radius=radius,
        amount_x=amounts[0],
        amount_y=amounts[1],
    )
    vm.set_time(vm.now + elapsed)
    check(vm, keys, swap_for_y, amount_in)


@SETTINGS
@given(
    shape=shapes,
    bin_step=bin_steps,
    trades=st.lists(
        st.tuples(directions, st.integers(min_value=10**3, max_value=10**12), dlmm_elapsed),
        min_size=2,
        max_size=6,
    ),
)
def test_created_pair_quotes_track_a_burst_of_swaps(vm, shape, bin_step, trades):
    """Swaps move the active bin and the volatility state of a created pair; quotes follow."""
    keys = create(
        vm,
        shape=shape,
        bin_step=bin_step,
        active_id=-200,
        radius=40,
        amount_x=10**13,
        amount_y=10**12,
    )
    for swap_for_y, amount_in, pause in trades:
        vm.set_time(vm.now + pause)
        check(vm, keys, swap_for_y, amount_in)


def test_created_pair_decodes_as_created(vm):
    keys = create(
        vm,
        shape=LiquidityShape.CURVE,
        bin_step=20,
        active_id=-53,
        radius=40,
        amount_x=10**12,
        amount_y=10**12,
        decimals=(6, 6),
    )
    pair = decode_lb_pair(vm.account_data(keys.lb_pair))
    assert (pair.active_id, pair.bin_step, pair.base_factor, pair.status) == (-53, 20, 10_000, 0)
    fees = DlmmFees(10_000)
    assert (
        pair.filter_period,
        pair.decay_period,
        pair.reduction_factor,
        pair.variable_fee_control,
        pair.max_volatility_accumulator,
        pair.protocol_share,
    ) == (
        fees.filter_period,
        fees.decay_period,
        fees.reduction_factor,
        fees.variable_fee_control,
        fees.max_volatility_accumulator,
        fees.protocol_share,
    )
    assert (pair.token_x_mint, pair.token_y_mint) == (keys.mint_x, keys.mint_y)
    assert (pair.reserve_x, pair.reserve_y, pair.oracle) == (
        keys.reserve_x,
        keys.reserve_y,
        keys.oracle,
    )
    # 81 bins over 70-bin positions: bin arrays -2, -1, 0 hold them (-93 .. -13).
    assert [i for i, _ in keys.bin_arrays] == [-2, -1, 0]
    bins = {
        array.lower_bin_id + j: b
        for _, key in keys.bin_arrays
        for array in [decode_bin_array(vm.account_data(key))]
        for j, b in enumerate(array.bins)
    }
    held = [b for b in bins if bins[b].amount_x or bins[b].amount_y]
    assert (min(held), max(held)) == (-93, -13)
    # y below the active bin, x above, both in it; the curve peaks at the active bin.
    assert all(bins[b].amount_x == 0 < bins[b].amount_y for b in range(-93, -53))
    assert all(bins[b].amount_y == 0 < bins[b].amount_x for b in range(-52, -12))
    assert bins[-53].amount_x > 0
    assert bins[-53].amount_y > 0
    assert bins[-54].amount_y > bins[-60].amount_y > bins[-93].amount_y
    # The vaults hold exactly what the bins account for.
    assert decode_token_amount(vm.account_data(keys.reserve_x)) == sum(
        b.amount_x for b in bins.values()
    )
    assert decode_token_amount(vm.account_data(keys.reserve_y)) == sum(
        b.amount_y for b in bins.values()
    )


def test_launch_pair_opens_at_its_time_and_takes_one_sided_deposits_before():
    vm = SolanaVm()
    mint_x, mint_y = vm.create_mint(6), vm.create_mint(6)
    provider = vm.new_wallet()
    vm.fund(provider.pubkey(), mint_x, 10**12)
    vm.fund(provider.pubkey(), mint_y, 10**12)
    opens = vm.now + 3_600
    keys = vm.create_dlmm_pair(
        mint_x,
        mint_y,
        active_id=100,
        bin_step=20,
        fees=DlmmFees(10_000),
        open_time=opens,
        creator=provider,
    )
    pair = decode_lb_pair(vm.account_data(keys.lb_pair))
    assert (pair.activation_type, pair.activation_point) == (1, opens)  # unix time
    with pytest.raises(PoolNotOpenError):  # a two-sided deposit waits for the launch
        vm.add_dlmm_liquidity(keys, provider, dict.fromkeys(range(90, 111), 1), 10**9, 10**9)
    with pytest.raises(ValueError, match="one-sided"):  # x cannot fill the active bin alone
        vm.add_dlmm_liquidity(keys, provider, dict.fromkeys(range(100, 140), 1), 10**11, 0)
    weights = dict.fromkeys(range(101, 140), 1)
    keys = vm.add_dlmm_liquidity(keys, provider, weights, 10**11, 0, position_seed=b"x side")
    weights = dict.fromkeys(range(80, 100), 1)
    keys = vm.add_dlmm_liquidity(keys, provider, weights, 0, 10**11, position_seed=b"y side")
    assert decode_token_amount(vm.account_data(keys.reserve_x)) > 10**11 - 100
    assert decode_token_amount(vm.account_data(keys.reserve_y)) > 10**11 - 100
    with pytest.raises(PoolNotOpenError) as raised:
        swap(vm, keys, False, 10**6)
    assert raised.value.code == 6042
    vm.set_time(opens - 1)
    with pytest.raises(PoolNotOpenError):
        swap(vm, keys, False, 10**6)
    vm.set_time(opens)
    for swap_for_y in (False, True):
        expected = quote(vm, keys, swap_for_y, 10**6)
        assert expected > 0
        assert swap(vm, keys, swap_for_y, 10**6) == expected
