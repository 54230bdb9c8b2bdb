from decimal import Decimal

from hypothesis import given, settings

from services.venues.market import DEFAULT_PAIRS, Market
from services.venues.pool import Venue
from tests.strategies import seeds


def _snapshot(market: Market) -> dict[object, object]:
    return {key: pool.to_dict() for key, pool in market.pools.items()}


@settings(max_examples=5, deadline=None)
@given(seeds)
def test_same_seed_same_market(seed):
    first, second = Market(seed=seed), Market(seed=seed)
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
