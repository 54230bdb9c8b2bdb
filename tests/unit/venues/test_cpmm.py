from decimal import Decimal

import pytest

from services.venues.cpmm import CpmmPool
from services.venues.pool import SwapError, Venue

# 1,000 SOL (9 decimals) against 150,000 USDC (6 decimals), Raydium's 25 bps fee.
POOL = CpmmPool("SOL", "USDC", 1_000_000_000_000, 150_000_000_000, 25)


def test_selling_one_sol_matches_the_hand_computation():
    # fee   = ceil(1_000_000_000 * 25 / 10_000)                       = 2_500_000
    # net   = 1_000_000_000 - 2_500_000                               = 997_500_000
    # out   = floor(150_000_000_000 * 997_500_000 / 1_000_997_500_000)
    #       = floor(149_625_000_000_000_000_000 / 1_000_997_500_000)
    #       = floor(149_475_897.79...)                                = 149_475_897
    result = POOL.swap("SOL", 1_000_000_000, 0)
    assert (result.amount_out, result.fee) == (149_475_897, 2_500_000)
    # The whole input, fee included, stays in the pool.
    assert result.pool_after == CpmmPool(
        "SOL", "USDC", 1_001_000_000_000, 150_000_000_000 - 149_475_897, 25
    )
    # impact = 1 - (149_475_897 / 1e9) / (150e9 / 1e12) = 1 - 0.149475897 / 0.15
    assert result.price_impact == Decimal(1) - Decimal("0.149475897") / Decimal("0.15")


def test_buying_sol_with_150_usdc_matches_the_hand_computation():
    # fee = ceil(150_000_000 * 25 / 10_000) = 375_000; net = 149_625_000
    # out = floor(1_000_000_000_000 * 149_625_000 / 150_149_625_000) = floor(996_505_985.28)
    result = POOL.swap("USDC", 150_000_000, 0)
    assert (result.amount_out, result.fee) == (996_505_985, 375_000)
    assert result.pool_after.tokens == ("SOL", "USDC")


def test_mid_price_is_in_whole_tokens():
    assert POOL.mid_price("SOL") == Decimal(150)
    assert POOL.mid_price("USDC") == Decimal(1) / Decimal(150)
    assert POOL.venue is Venue.RAYDIUM


def test_from_mid_builds_the_requested_price_and_depth():
    pool = CpmmPool.from_mid("SOL", "USDC", Decimal(150), Decimal(300_000))
    assert pool.reserve_quote == 150_000_000_000
    assert pool.reserve_base == 1_000_000_000_000


@pytest.mark.parametrize(("token", "amount"), [("SOL", 0), ("SOL", -1), ("BONK", 10)])
def test_bad_swaps_are_refused(token, amount):
    with pytest.raises(SwapError):
        POOL.swap(token, amount, 0)


def test_dict_round_trip():
    assert CpmmPool.from_dict(POOL.to_dict()) == POOL
