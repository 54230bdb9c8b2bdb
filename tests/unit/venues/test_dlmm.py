from decimal import Decimal

import pytest

from services.venues.dlmm import (
    Q64,
    DlmmPool,
    LiquidityShape,
    bin_price_q64,
)
from services.venues.pool import InsufficientLiquidityError, Venue

# USDT/USDC (6 decimals each), bins 0..3 of 1 USDT each, bin_step 100 (1 %):
# price(0) = 1, price(1) = 1.01, price(2) = 1.0201 USDC per USDT.
# base fee = 10_000 * 100 * 1e-8 = 1 %, i.e. 10_000_000 in 1e-9 units.
# variable fee = ceil(100_000 * (va * 100) ** 2 / 1e11), va = 10_000 per bin from the
# reference: 0 in bin 0, 1_000_000 (0.1 %) in bin 1, 4_000_000 (0.4 %) in bin 2.
POOL = DlmmPool(
    token_x="USDT",
    token_y="USDC",
    bin_step=100,
    active_id=0,
    lower_id=0,
    reserves_x=(1_000_000, 1_000_000, 1_000_000, 1_000_000),
    reserves_y=(0, 0, 0, 0),
    base_factor=10_000,
    variable_fee_control=100_000,
)
QUIET = 1_000  # seconds after the last swap: past the decay period, the reference is 0


def test_a_swap_across_three_bins_matches_the_hand_computation():
    # Buying USDT with 2_538_436 USDC walks up from bin 0.
    # bin 0, rate 1.0 %: net to drain = 1_000_000 * 1        = 1_000_000
    #                    fee = ceil(1_000_000 * 0.01 / 0.99)  = ceil(10_101.01) = 10_102
    #                    takes 1_010_102, gives 1_000_000
    # bin 1, rate 1.1 %: net to drain = 1_000_000 * 1.01     = 1_010_000
    #                    fee = ceil(1_010_000 * 0.011 / 0.989) = ceil(11_233.57) = 11_234
    #                    takes 1_021_234, gives 1_000_000
    # bin 2, rate 1.4 %: 2_538_436 - 1_010_102 - 1_021_234   = 507_100 left
    #                    fee = ceil(507_100 * 0.014)          = ceil(7_099.4) = 7_100
    #                    net 500_000 gives floor(500_000 / 1.0201) = floor(490_148.02)
    # total out = 1_000_000 + 1_000_000 + 490_148 = 2_490_148
    # total fee = 10_102 + 11_234 + 7_100        = 28_436
    result = POOL.swap("USDC", 2_538_436, QUIET)
    assert (result.amount_out, result.fee) == (2_490_148, 28_436)
    after = result.pool_after
    assert isinstance(after, DlmmPool)
    assert after.active_id == 2
    assert after.reserves_x == (0, 0, 1_000_000 - 490_148, 1_000_000)
    assert after.reserves_y == (1_010_102, 1_021_234, 507_100, 0)
    assert (after.volatility_accumulator, after.index_reference) == (20_000, 0)
    assert after.last_update == QUIET


def test_a_burst_pays_the_variable_fee_and_a_pause_lets_it_decay():
    after = POOL.swap("USDC", 2_538_436, QUIET).pool_after
    # Within the filter period the reference stays at bin 0, two bins away: 1.4 %.
    assert after.swap("USDC", 100_000, QUIET + 1).fee == 1_400
    # Between filter and decay: reference = 20_000 * 5_000 / 10_000 = 10_000: 1.1 %.
    assert after.swap("USDC", 100_000, QUIET + 100).fee == 1_100
    # After the decay period the pool is quiet again: the base 1 %.
    assert after.swap("USDC", 100_000, QUIET + 600).fee == 1_000


def test_selling_base_walks_down_and_fees_are_capped():
    pool = DlmmPool(
        "USDT", "USDC", 100, 0, -2, (0, 0, 0), (1_000_000, 1_000_000, 1_000_000),
        base_factor=10_000, variable_fee_control=10**12, max_fee_rate=50_000_000,
    )  # fmt: skip
    # bin 0: fee 1 %, bin -1: capped at 5 %; 1_100_000 in crosses into bin -1.
    result = pool.swap("USDT", 1_100_000, QUIET)
    assert result.pool_after.active_id == -1  # type: ignore[attr-defined]
    # bin 0 takes 1_000_000 + ceil(1_000_000 * 0.01 / 0.99) = 1_010_102 for 1_000_000;
    # bin -1 gets 89_898: fee ceil(89_898 * 0.05) = 4_495, net 85_403 * (1 / 1.01)
    assert result.fee == 10_102 + 4_495
    assert result.amount_out == 1_000_000 + (85_403 * bin_price_q64(100, -1) >> 64)


def test_running_out_of_bins_is_insufficient_liquidity():
    with pytest.raises(InsufficientLiquidityError):
        POOL.swap("USDC", 10_000_000, QUIET)


def test_bin_prices_are_q64_and_cached():
    assert bin_price_q64(100, 0) == Q64
    assert bin_price_q64(25, 10) == int((Decimal("1.0025") ** 10) * Q64)
    assert POOL.mid_price("USDT") == 1
    assert POOL.venue is Venue.METEORA


@pytest.mark.parametrize("shape", list(LiquidityShape))
def test_from_mid_centres_the_liquidity_on_the_mid(shape):
    pool = DlmmPool.from_mid(
        "SOL", "USDC", Decimal(150), Decimal(1_000_000), bin_step=10, shape=shape, radius=20
    )
    assert abs(pool.mid_price("SOL") / 150 - 1) < Decimal("0.0005")
    # Bins below the active one hold USDC, above it SOL.
    active = pool.active_id - pool.lower_id
    assert all(x == 0 for x in pool.reserves_x[:active])
    assert all(y == 0 for y in pool.reserves_y[active + 1 :])
    value = sum(pool.reserves_y) + sum(
        x * bin_price_q64(10, pool.lower_id + i) >> 64 for i, x in enumerate(pool.reserves_x)
    )
    assert 999_000_000_000 < value <= 1_000_000_000_000


def test_dict_round_trip_keeps_the_volatility_state():
    after = POOL.swap("USDC", 2_538_436, Decimal("1000.5")).pool_after
    assert isinstance(after, DlmmPool)
    assert DlmmPool.from_dict(after.to_dict()) == after
