"""A seeded market: reference prices on a random walk, and both venues' pools tracking them.

Everything is reproducible from the seed: each pair and each (venue, pair) draws from
its own `random.Random`, so adding a pair does not change the others' paths.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Context, Decimal
from types import MappingProxyType

from services.domain.tokens import get_token
from services.venues.cpmm import CpmmPool
from services.venues.dlmm import DlmmPool, LiquidityShape, bin_for_price, input_to_reach
from services.venues.pool import Pair, Pool, PoolBook, Timestamp, Venue

BPS = Decimal(10_000)
_CTX = Context(prec=28)
ARBITRAGE_FRACTION = Decimal("0.5")  # arbitrage closes half the gap each step
DEVIATION_BPS = Decimal(4)  # standard deviation of a venue's offset from the reference
"""Every pool of the market, by venue and (base, quote) pair."""


@dataclass(frozen=True, slots=True)
class PairSpec:
    """How one pair starts and moves: its mid, volatility, and each venue's depth."""

    base: str
    quote: str
    mid: Decimal  # quote per base, whole tokens
    sigma: Decimal  # log-price standard deviation per step
    raydium_depth: Decimal  # pool value in quote tokens
    meteora_depth: Decimal
    bin_step: int
    base_factor: int  # Meteora base fee = base_factor * bin_step * 1e-8
    shape: LiquidityShape = LiquidityShape.SPOT
    radius: int = 40  # bins each side of the active one

    @property
    def pair(self) -> Pair:
        """The (base, quote) key of this pair."""
        return (self.base, self.quote)


D = Decimal
DEFAULT_PAIRS: tuple[PairSpec, ...] = (
    PairSpec("SOL", "USDC", D("150"), D("0.0003"), D("12000000"), D("2500000"), 10, 20_000),
    PairSpec("SOL", "USDT", D("150"), D("0.0003"), D("3000000"), D("1000000"), 10, 20_000),
    PairSpec("USDT", "USDC", D("1"), D("0.00001"), D("5000000"), D("3000000"), 1, 50_000),
    PairSpec(
        "JUP", "USDC", D("0.9"), D("0.0005"), D("2000000"), D("800000"), 20, 10_000,
        LiquidityShape.CURVE,
    ),
    PairSpec("RAY", "USDC", D("2.5"), D("0.0005"), D("3000000"), D("600000"), 20, 10_000),
    PairSpec(
        "BONK", "USDC", D("0.00002"), D("0.0008"), D("1500000"), D("700000"), 50, 5_000,
        LiquidityShape.BID_ASK, 30,
    ),
)  # fmt: skip


def _gauss(rng: random.Random) -> Decimal:
    """Draw a standard normal as a Decimal, via its shortest repr so it is reproducible."""
    return Decimal(repr(rng.gauss(0.0, 1.0)))


def arbitrage(
    pool: Pool, reference_mid: Decimal, now: Timestamp, fraction: Decimal = ARBITRAGE_FRACTION
) -> Pool:
    """Trade the pool `fraction` of the way from its mid to `reference_mid` (quote per base)."""
    base, quote = pool.tokens
    current = pool.mid_price(base)
    target = current + (reference_mid - current) * fraction
    shift = get_token(quote).decimals - get_token(base).decimals
    if isinstance(pool, CpmmPool):
        # Without fees, x * y = k at price p has x = sqrt(k / p), y = sqrt(k * p).
        k = Decimal(pool.reserve_base) * pool.reserve_quote
        price = target.scaleb(shift)
        if target < current:
            token_in, needed = base, _CTX.sqrt(k / price) - pool.reserve_base
        else:
            token_in, needed = quote, _CTX.sqrt(k * price) - pool.reserve_quote
        amount = int(needed * BPS / (BPS - pool.fee_bps))
    elif isinstance(pool, DlmmPool):
        target_bin = bin_for_price(pool.bin_step, target.scaleb(shift))
        token_in, amount = input_to_reach(pool, target_bin, now)
    else:
        msg = f"no arbitrage model for {type(pool).__name__}"
        raise TypeError(msg)
    if amount <= 0:
        return pool
    return pool.swap(token_in, amount, now).pool_after


class Market:
    """Reference mids and the venues' pools, advanced in fixed steps; same seed, same market."""

    def __init__(
        self,
        seed: int = 42,
        pairs: Sequence[PairSpec] = DEFAULT_PAIRS,
        *,
        step_seconds: int = 1,
        deviation_bps: Decimal = DEVIATION_BPS,
        arbitrage_fraction: Decimal = ARBITRAGE_FRACTION,
    ) -> None:
        """Build every pool around its pair's starting mid, each venue slightly off it."""
        self.seed = seed
        self.step_seconds = step_seconds
        self.deviation_bps = deviation_bps
        self.arbitrage_fraction = arbitrage_fraction
        self.slot = 0
        self._specs = {spec.pair: spec for spec in pairs}
        self._mids = {spec.pair: spec.mid for spec in pairs}
        self._walks = {spec.pair: random.Random(f"{seed}:walk:{spec.pair}") for spec in pairs}
        self._noise = {
            (venue, spec.pair): random.Random(f"{seed}:{venue.value}:{spec.pair}")
            for spec in pairs
            for venue in Venue
        }
        self._targets: dict[tuple[Venue, Pair], Decimal] = {}
        self._draw_targets()
        self._pools: dict[tuple[Venue, Pair], Pool] = {}
        for spec in pairs:
            self._pools[(Venue.RAYDIUM, spec.pair)] = CpmmPool.from_mid(
                spec.base,
                spec.quote,
                self.venue_target(Venue.RAYDIUM, spec.pair),
                spec.raydium_depth,
            )
            self._pools[(Venue.METEORA, spec.pair)] = DlmmPool.from_mid(
                spec.base,
                spec.quote,
                self.venue_target(Venue.METEORA, spec.pair),
                spec.meteora_depth,
                bin_step=spec.bin_step,
                shape=spec.shape,
                radius=spec.radius,
                base_factor=spec.base_factor,
            )

    @property
    def now(self) -> int:
        """Market time in seconds: one step per slot."""
        return self.slot * self.step_seconds

    @property
    def pools(self) -> PoolBook:
        """A read-only view of every pool, by (venue, pair)."""
        return MappingProxyType(self._pools)

    def reference_mid(self, pair: Pair) -> Decimal:
        """The pair's reference mid, quote per base in whole tokens."""
        return self._mids[pair]

    def apply(self, venue: Venue, pool: Pool) -> None:
        """Record a pool state left by a fill, so the next quote sees it."""
        self._pools[(venue, pool.tokens)] = pool

    def step(self) -> None:
        """Advance one step: walk each mid, then let arbitrage pull every pool toward it."""
        self.slot += 1
        for pair, mid in self._mids.items():
            shock = _CTX.exp(self._specs[pair].sigma * _gauss(self._walks[pair]))
            self._mids[pair] = _CTX.multiply(mid, shock)
        self._draw_targets()
        for (venue, pair), pool in self._pools.items():
            target = self._targets[(venue, pair)]
            self._pools[(venue, pair)] = arbitrage(pool, target, self.now, self.arbitrage_fraction)

    def venue_target(self, venue: Venue, pair: Pair) -> Decimal:
        """The mid this venue drifts toward in this step: the reference, off by a few bps."""
        return self._targets[(venue, pair)]

    def _draw_targets(self) -> None:
        """Draw each venue's seeded deviation from the reference for the current step."""
        for (venue, pair), rng in self._noise.items():
            deviation = _gauss(rng) * self.deviation_bps / BPS
            self._targets[(venue, pair)] = _CTX.multiply(self._mids[pair], 1 + deviation)
