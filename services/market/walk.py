"""The market's prices: a seeded geometric random walk per pair, each venue a little off it.

Pure functions of (seed, pair, slot): no state but the price itself, so a restarted process
continues the same path from the last tick's reference, and two runs with one seed agree.

- **Volatility** is annualised (`OEE_MARKET_VOLATILITY`, 1.0 = 100 % a year, about what SOL
  shows): the per-slot standard deviation of the log price is `volatility * sqrt(slot / year)`,
  about 1.1 bps for 400 ms slots. Each slot's shock is a standard normal drawn from a
  `random.Random` seeded with (seed, pair, slot); the step is `exp(sigma z - sigma^2 / 2)`, so
  the price is a martingale. Volatility 0 never moves a price.
- **Venues drift apart and back**: each venue's target is the reference times `1 + d`, where `d`
  is smooth seeded noise: a normal value at every `knot_slots`-th slot (50 slots, 20 s), linearly
  interpolated between, with standard deviation `venue_spread * sigma * sqrt(knot_slots)` (twice
  what the walk moves in one knot interval, ~16 bps by default). Twice, because at once (~8 bps)
  the DLMM pair's lower fee and flat bins kept it the best venue for a 100 SOL sale for 10 minutes
  in 8 of 12 seeds (`services.market.simulate`); at twice, it changes 4 to 26 times in every one
  (`tests/unit/market/test_best_venue_changes.py`). Volatility 0 makes it 0.
- **Moves** (`oee market move`): the reference goes geometrically from where it was to the
  asked price over the asked number of slots, shocks suspended; then the walk resumes from there.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from decimal import Context, Decimal

SECONDS_PER_YEAR = 365 * 24 * 3600
DIGITS = Context(prec=12)  # prices are kept to 12 significant digits, so they do not grow
KNOT_SLOTS = 50
# A launched token's pair walks this many times as fast as the seeded market's (about 0.5 % a
# slot at the default volatility): a new token's first hours move tens of percent, and its
# autoSell take-profit or stop-loss must be reachable in a session, not a year.
LAUNCH_VOLATILITY_MULTIPLE = 50.0
VENUE_SPREAD = 2.0  # venue noise over the walk's own move per knot interval (see above)


def slot_sigma(annual_volatility: float, slot_ms: int) -> float:
    """The per-slot standard deviation of the log price for an annualised volatility."""
    if annual_volatility < 0 or slot_ms <= 0:
        msg = f"volatility must be >= 0 and slots positive, got {annual_volatility}, {slot_ms}"
        raise ValueError(msg)
    return annual_volatility * math.sqrt(slot_ms / 1000 / SECONDS_PER_YEAR)


def _normal(seed: int, *labels: object) -> float:
    """A standard normal that is a function of the seed and the labels alone."""
    return random.Random(":".join(map(str, (seed, *labels)))).gauss(0.0, 1.0)


def _price(value: float | Decimal) -> Decimal:
    return DIGITS.plus(Decimal(repr(value)) if isinstance(value, float) else value)


@dataclass(frozen=True, slots=True)
class Walk:
    """The seeded walk of every pair: `sigma` per slot, venue noise every `knot_slots`."""

    seed: int
    sigma: float
    knot_slots: int = KNOT_SLOTS
    venue_spread: float = VENUE_SPREAD

    def scaled(self, multiple: float) -> Walk:
        """The same seeded walk, `multiple` times as volatile (a launched token's pair)."""
        return replace(self, sigma=self.sigma * multiple)

    def step(self, price: Decimal, pair: str, slot: int) -> Decimal:
        """The reference after slot `slot`'s shock."""
        if self.sigma == 0:
            return price
        z = _normal(self.seed, "walk", pair, slot)
        return _price(price * Decimal(repr(math.exp(self.sigma * z - self.sigma**2 / 2))))

    def advance(self, price: Decimal, pair: str, after: int, to: int) -> Decimal:
        """The reference at slot `to`, stepping every slot after `after` (skipped slots too)."""
        for slot in range(after + 1, to + 1):
            price = self.step(price, pair, slot)
        return price

    def deviation(self, venue: str, pair: str, slot: int) -> float:
        """The venue's seeded offset from the reference at `slot`, a fraction (0.0008 = 8 bps)."""
        if self.sigma == 0:
            return 0.0
        knot, into = divmod(slot, self.knot_slots)
        a = _normal(self.seed, "venue", venue, pair, knot)
        b = _normal(self.seed, "venue", venue, pair, knot + 1)
        scale = self.venue_spread * self.sigma * math.sqrt(self.knot_slots)
        return (a + (b - a) * into / self.knot_slots) * scale

    def venue_target(self, reference: Decimal, venue: str, pair: str, slot: int) -> Decimal:
        """The price the background traders move this venue's pool toward at `slot`."""
        return _price(reference * Decimal(repr(1 + self.deviation(venue, pair, slot))))


@dataclass(frozen=True, slots=True)
class Move:
    """An admin move: from `start` at `start_slot` to `target` over `slots` slots."""

    start: Decimal
    target: Decimal
    start_slot: int
    slots: int

    def __post_init__(self) -> None:
        if self.start <= 0 or self.target <= 0 or self.slots < 1:
            msg = f"a move needs positive prices and at least one slot: {self}"
            raise ValueError(msg)

    def price(self, slot: int) -> Decimal:
        """The reference at `slot`: geometric interpolation, the target from the last slot on."""
        done = min(max(slot - self.start_slot, 0), self.slots)
        if done == self.slots:
            return self.target
        ratio = float(self.target / self.start) ** (done / self.slots)
        return _price(self.start * Decimal(repr(ratio)))

    def finished(self, slot: int) -> bool:
        return slot >= self.start_slot + self.slots

    @property
    def step_bps(self) -> Decimal:
        """How far the reference moves per slot, in bps: the flow must be allowed that much."""
        per_slot = abs(math.log(float(self.target / self.start))) / self.slots
        return Decimal(repr(per_slot * 10_000))
