"""The seeded market the chain's genesis is built from: per pair a reference mid, and each
venue's pool a few bps off it with its own depth (`services/chain/svm/seeded.py` creates these
pools with the real programs).

Everything is reproducible from the seed: each (venue, pair) draws from its own
`random.Random`, so adding a pair does not change the others. Prices move on the chain only, by
trading: the random walk and arbitrage of the simulated chain are gone with it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Context, Decimal
from types import MappingProxyType

from services.venues.cpmm import CpmmPool
from services.venues.dlmm import DlmmPool, LiquidityShape
from services.venues.pool import Pair, Pool, PoolBook, Venue

BPS = Decimal(10_000)
_CTX = Context(prec=28)
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


class Market:
    """Reference mids and the venues' pools at genesis; same seed, same market."""

    def __init__(
        self,
        seed: int = 42,
        pairs: Sequence[PairSpec] = DEFAULT_PAIRS,
        *,
        deviation_bps: Decimal = DEVIATION_BPS,
    ) -> None:
        """Build every pool around its pair's mid, each venue slightly off it."""
        self.seed = seed
        self.deviation_bps = deviation_bps
        self.slot = 0
        self._specs = {spec.pair: spec for spec in pairs}
        self._mids = {spec.pair: spec.mid for spec in pairs}
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
    def pools(self) -> PoolBook:
        """A read-only view of every pool, by (venue, pair)."""
        return MappingProxyType(self._pools)

    def reference_mid(self, pair: Pair) -> Decimal:
        """The pair's reference mid, quote per base in whole tokens."""
        return self._mids[pair]

    def venue_target(self, venue: Venue, pair: Pair) -> Decimal:
        """The mid this venue's pool starts at: the reference, off by a few bps."""
        return self._targets[(venue, pair)]

    def _draw_targets(self) -> None:
        """Draw each venue's seeded deviation from the reference."""
        for (venue, pair), rng in self._noise.items():
            deviation = _gauss(rng) * self.deviation_bps / BPS
            self._targets[(venue, pair)] = _CTX.multiply(self._mids[pair], 1 + deviation)
