from decimal import Decimal

from hypothesis import given, settings

from services.venues.cpmm import CpmmPool
from services.venues.dlmm import DlmmPool
from services.venues.market import DEFAULT_PAIRS, Market, arbitrage
from services.venues.pool import Venue
from tests.strategies import seeds


def _snapshot(market: Market) -> dict[object, object]:
    return {key: pool.to_dict() for key, pool in market.pools.items()}


@settings(max_examples=5, deadline=None)
@given(seeds)
def test_same_seed_same_market(seed):
    first, second = Market(seed=seed), Market(seed=seed)
    for _ in range(3):
        first.step()
        second.step()
    assert _snapshot(first) == _snapshot(second)
    assert all(first.reference_mid(s.pair) == second.reference_mid(s.pair) for s in DEFAULT_PAIRS)


def test_different_seeds_differ():
    assert _snapshot(Market(seed=1)) != _snapshot(Market(seed=2))


def test_every_pair_has_a_pool_on_both_venues_near_the_reference():
    market = Market(seed=7)
    for spec in DEFAULT_PAIRS:
        reference = market.reference_mid(spec.pair)
        for venue in Venue:
            pool = market.pools[(venue, spec.pair)]
            gap = abs(pool.mid_price(spec.base) / reference - 1)
            # A few bps of seeded deviation, plus half a bin of rounding on Meteora.
            assert gap < Decimal("0.003"), (venue, spec.pair, gap)


def test_the_venues_deviate_differently():
    market = Market(seed=3)
    sol = ("SOL", "USDC")
    raydium = market.pools[(Venue.RAYDIUM, sol)].mid_price("SOL")
    meteora = market.pools[(Venue.METEORA, sol)].mid_price("SOL")
    assert raydium != meteora


def test_arbitrage_closes_part_of_the_gap():
    cpmm = CpmmPool.from_mid("SOL", "USDC", Decimal(150), Decimal(1_000_000))
    pulled = arbitrage(cpmm, Decimal(152), 0)
    assert Decimal(150) < pulled.mid_price("SOL") < Decimal(152)
    assert abs(pulled.mid_price("SOL") - 151) < Decimal("0.05")

    dlmm = DlmmPool.from_mid("SOL", "USDC", Decimal(150), Decimal(1_000_000), bin_step=10)
    pulled = arbitrage(dlmm, Decimal(147), 0)
    assert Decimal("148.4") < pulled.mid_price("SOL") < Decimal("148.6")
    assert arbitrage(dlmm, dlmm.mid_price("SOL"), 0) == dlmm


def test_apply_records_a_fill_and_step_advances_time():
    market = Market(seed=5)
    key = (Venue.RAYDIUM, ("SOL", "USDC"))
    after = market.pools[key].swap("SOL", 10**12, market.now).pool_after
    market.apply(Venue.RAYDIUM, after)
    assert market.pools[key] == after
    market.step()
    assert market.now == 1
    assert market.pools[key] != after  # arbitrage pulled it back
