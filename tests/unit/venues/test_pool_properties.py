"""Invariants every venue's pool keeps, whatever its state and the trade."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from services.venues.cpmm import CpmmPool
from services.venues.dlmm import DlmmPool, bin_price_q64
from services.venues.pool import InsufficientLiquidityError, Pool, SwapResult
from tests.strategies import amounts, cpmm_pools, pools, tokens_in

FAST = settings(max_examples=150, deadline=None)


def _swap(pool: Pool, token_in: str, amount: int) -> SwapResult | None:
    try:
        return pool.swap(token_in, amount, 0)
    except InsufficientLiquidityError:
        return None


def _reserve_out(pool: Pool, token_in: str) -> int:
    if isinstance(pool, CpmmPool):
        return pool.reserves(token_in)[1]
    assert isinstance(pool, DlmmPool)
    return sum(pool.reserves_y if token_in == pool.token_x else pool.reserves_x)


def _value_in_y(pool: DlmmPool) -> int:
    """The pool's holdings valued at each bin's own price, scaled by 2**64."""
    return sum(
        x * bin_price_q64(pool.bin_step, pool.lower_id + i) + (y << 64)
        for i, (x, y) in enumerate(zip(pool.reserves_x, pool.reserves_y, strict=True))
    )


@FAST
@given(pools, tokens_in, amounts)
def test_output_never_exceeds_the_reserve_and_fees_are_sane(pool, token_in, amount):
    result = _swap(pool, token_in, amount)
    if result is None:
        return
    assert 0 <= result.amount_out < _reserve_out(pool, token_in) or (
        isinstance(pool, DlmmPool) and result.amount_out == _reserve_out(pool, token_in)
    )
    assert 0 <= result.fee <= amount
    assert result.amount_out == pool.amount_out(token_in, amount, 0)
    assert result.pool_after.tokens == pool.tokens


@FAST
@given(pools, tokens_in, amounts, st.integers(1, 10**12))
def test_output_is_monotone_in_the_input(pool, token_in, amount, more):
    small, large = _swap(pool, token_in, amount), _swap(pool, token_in, amount + more)
    if small is not None and large is not None:
        assert small.amount_out <= large.amount_out


@FAST
@given(cpmm_pools(), tokens_in, amounts, st.integers(1, 10**12))
def test_cpmm_output_is_concave(pool, token_in, amount, gap):
    # out(a) + out(a + 2g) <= 2 out(a + g), up to rounding: the floors of the outputs,
    # and the fee's ceiling, which moves the net input by at most one unit, each unit
    # being worth at most y / x of output.
    x, y = pool.reserves(token_in)
    outs = [pool.amount_out(token_in, amount + k * gap) for k in range(3)]
    assert outs[0] + outs[2] <= 2 * outs[1] + 2 * (y // x + 2)


@FAST
@given(pools, tokens_in, amounts)
def test_a_round_trip_never_returns_more_than_went_in(pool, token_in, amount):
    there = _swap(pool, token_in, amount)
    if there is None or there.amount_out == 0:
        return
    back_token = pool.tokens[1] if token_in == pool.tokens[0] else pool.tokens[0]
    back = _swap(there.pool_after, back_token, there.amount_out)
    if back is not None:
        assert back.amount_out <= amount


@FAST
@given(pools, tokens_in, amounts)
def test_rounding_never_favours_the_trader(pool, token_in, amount):
    result = _swap(pool, token_in, amount)
    if result is None:
        return
    after = result.pool_after
    if isinstance(pool, CpmmPool):
        assert isinstance(after, CpmmPool)
        # The exact constant-product output is an upper bound; k never shrinks.
        x, y = pool.reserves(token_in)
        net = amount - result.fee
        assert result.amount_out * (x + net) <= y * net
        assert after.reserve_base * after.reserve_quote >= pool.reserve_base * pool.reserve_quote
    else:
        assert isinstance(pool, DlmmPool)
        assert isinstance(after, DlmmPool)
        # Valued at its own bin prices, a DLMM pool never loses on a swap.
        assert _value_in_y(after) >= _value_in_y(pool)


@settings(max_examples=50, deadline=None)
@given(pools, tokens_in, amounts)
def test_pools_survive_a_json_round_trip(pool, token_in, amount):
    result = _swap(pool, token_in, amount)
    state = pool if result is None else result.pool_after
    data = json.loads(json.dumps(state.to_dict()))
    kind = CpmmPool if isinstance(state, CpmmPool) else DlmmPool
    assert kind.from_dict(data) == state
