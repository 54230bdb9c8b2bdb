"""Pure routing: pick the venue, the split or the two-hop path that pays the trader most.

Amounts are integer base units. A split is only taken when it beats the best single
venue by more than a threshold, because a second swap costs a second instruction.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum

from services.domain.tokens import get_token
from services.venues.pool import InsufficientLiquidityError, Pool, PoolBook, Timestamp, Venue

__all__ = [
    "InsufficientLiquidityError",
    "Leg",
    "NoRouteError",
    "Route",
    "RouteKind",
    "RoutingError",
    "VenueOffer",
    "plan_route",
    "pools_for_pair",
]

BPS = Decimal(10_000)
HUB = "USDC"  # two-hop routes go through the token every pair quotes against
# The split is searched to 1/256 of the amount: near the optimum the loss is quadratic
# in the error, under 0.01 bps for orders that move a pool less than 10 %.
_SPLIT_RESOLUTION = 256
# Splits are skipped when moving 1/1024 of the amount off the best venue loses; by
# concavity the gain given up is then a small fraction of a bps.
_SPLIT_PROBE = 1024


class RoutingError(Exception):
    """No acceptable route for the order."""


class NoRouteError(RoutingError):
    """No allowed venue has a pool for the pair, directly or through the hub."""


class RouteKind(StrEnum):
    """The shape of a route plan."""

    SINGLE = "single"
    SPLIT = "split"
    MULTIHOP = "multihop"


@dataclass(frozen=True, slots=True)
class VenueOffer:
    """What one venue alone offers for the whole order, or why it cannot fill it."""

    venue: Venue
    amount_out: int
    fee: int  # token_in base units; a second hop's fee is valued at the first hop's rate
    price_impact: Decimal
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Leg:
    """One swap of a plan: a venue, a hop, and its share of that hop's input."""

    venue: Venue
    token_in: str
    token_out: str
    amount_in: int
    amount_out: int
    fee: int  # token_in base units
    share: Decimal


@dataclass(frozen=True, slots=True)
class Route:
    """The chosen execution in base units, with the offers it was chosen from and why.

    The event contract's `events.RoutePlan` is its Decimal twin; `pricing.quote` converts.
    """

    kind: RouteKind
    token_in: str
    token_out: str
    amount_in: int
    legs: tuple[Leg, ...]
    amount_out: int
    min_amount_out: int
    price_impact: Decimal  # against the best spot price among the venues, fees included
    split_improvement_bps: Decimal  # best split (or hop mix) over the best single venue
    offers: tuple[VenueOffer, ...]  # each venue alone, for the whole order
    reason: str


@dataclass(frozen=True, slots=True)
class _Hop:
    legs: tuple[Leg, ...]
    amount_out: int
    spot: Decimal  # best mid among the venues, whole tokens out per whole token in
    offers: tuple[VenueOffer, ...]
    improvement_bps: Decimal


def pools_for_pair(
    book: PoolBook, token_a: str, token_b: str, venues: Collection[Venue]
) -> dict[Venue, Pool]:
    """Collect the allowed venues' pools for a pair, whichever way round the pool lists it."""
    found: dict[Venue, Pool] = {}
    for venue in venues:
        pool = book.get((venue, (token_a, token_b))) or book.get((venue, (token_b, token_a)))
        if pool is not None:
            found[venue] = pool
    return found


def plan_route(
    book: PoolBook,
    token_in: str,
    token_out: str,
    amount_in: int,
    *,
    slippage: Decimal,
    split_threshold_bps: Decimal,
    now: Timestamp,
    venues: Collection[Venue] = tuple(Venue),
) -> Route:
    """Route an order over the allowed venues: best single venue, a split, or two hops."""
    if amount_in <= 0 or token_in == token_out or not 0 <= slippage < 1:
        msg = f"cannot route {amount_in} {token_in} -> {token_out} at slippage {slippage}"
        raise ValueError(msg)
    direct = pools_for_pair(book, token_in, token_out, venues)
    if direct:
        hop = _route_hop(direct, token_in, token_out, amount_in, split_threshold_bps, now)
        kind = RouteKind.SPLIT if len(hop.legs) > 1 else RouteKind.SINGLE
        return _plan(kind, token_in, token_out, amount_in, (hop,), hop.offers, slippage)
    first = pools_for_pair(book, token_in, HUB, venues)
    second = pools_for_pair(book, HUB, token_out, venues)
    if HUB in (token_in, token_out) or not first or not second:
        msg = f"no pool for {token_in}/{token_out} on {', '.join(sorted(venues))}"
        raise NoRouteError(msg)
    hop1 = _route_hop(first, token_in, HUB, amount_in, split_threshold_bps, now)
    hop2 = _route_hop(second, HUB, token_out, hop1.amount_out, split_threshold_bps, now)
    offers = _two_hop_offers(first, second, token_in, amount_in, now)
    return _plan(RouteKind.MULTIHOP, token_in, token_out, amount_in, (hop1, hop2), offers, slippage)


def _offer(venue: Venue, pool: Pool, token_in: str, amount_in: int, now: Timestamp) -> VenueOffer:
    """Ask one pool for the whole amount; a pool that cannot fill it yields an error offer."""
    try:
        result = pool.swap(token_in, amount_in, now)
    except InsufficientLiquidityError as error:
        return VenueOffer(venue, 0, 0, Decimal(0), str(error))
    return VenueOffer(venue, result.amount_out, result.fee, result.price_impact)


def _route_hop(
    pools: Mapping[Venue, Pool],
    token_in: str,
    token_out: str,
    amount_in: int,
    split_threshold_bps: Decimal,
    now: Timestamp,
) -> _Hop:
    """Route one pair: best single venue, or the best split if it clears the threshold."""
    spot = max(pool.mid_price(token_in) for pool in pools.values())
    offers = tuple(_offer(v, p, token_in, amount_in, now) for v, p in pools.items())
    filled = [q for q in offers if q.error is None and q.amount_out > 0]
    best = max(filled, key=lambda q: q.amount_out, default=None)
    best_out = best.amount_out if best else 0

    split: tuple[int, int] | None = None
    if len(pools) == 2:
        (venue_a, pool_a), (venue_b, pool_b) = pools.items()
        split = _best_split(pool_a, pool_b, token_in, amount_in, now, best)
    improvement = Decimal(0)
    if split is not None and best is not None:
        improvement = max(Decimal(0), (split[1] - best_out) * BPS / best_out)
    take_split = split is not None and (best is None or improvement > split_threshold_bps)

    if take_split and split is not None:
        a = split[0]
        legs = tuple(
            _leg(venue, pool, token_in, token_out, share_in, amount_in, now)
            for venue, pool, share_in in ((venue_a, pool_a, a), (venue_b, pool_b, amount_in - a))
        )
        return _Hop(legs, sum(leg.amount_out for leg in legs), spot, offers, improvement)
    if best is None:
        errors = "; ".join(q.error or f"{q.venue} pays nothing" for q in offers)
        raise InsufficientLiquidityError(errors)
    leg = Leg(best.venue, token_in, token_out, amount_in, best.amount_out, best.fee, Decimal(1))
    return _Hop((leg,), best_out, spot, offers, improvement)


def _leg(
    venue: Venue,
    pool: Pool,
    token_in: str,
    token_out: str,
    amount: int,
    total: int,
    now: Timestamp,
) -> Leg:
    """Quote one venue's part of a split."""
    result = pool.swap(token_in, amount, now)
    share = Decimal(amount) / Decimal(total)
    return Leg(venue, token_in, token_out, amount, result.amount_out, result.fee, share)


def _best_split(
    pool_a: Pool,
    pool_b: Pool,
    token_in: str,
    amount: int,
    now: Timestamp,
    best: VenueOffer | None,
) -> tuple[int, int] | None:
    """Find `a` in [1, amount - 1] maximising out_a(a) + out_b(amount - a).

    Both outputs are concave in their input, so the sum is concave and a ternary search
    converges. A venue that runs dry scores below zero, sloping toward the feasible side,
    which keeps the function unimodal. Returns (a, total out), or None when no split
    beats sending everything to one venue.
    """
    seen: dict[int, int] = {}

    def value(a: int) -> int:
        if a not in seen:
            try:
                out_a = pool_a.amount_out(token_in, a, now)
            except InsufficientLiquidityError:
                seen[a] = -1 - a
                return seen[a]
            try:
                seen[a] = out_a + pool_b.amount_out(token_in, amount - a, now)
            except InsufficientLiquidityError:
                seen[a] = -1 - (amount - a)
        return seen[a]

    if amount < 2:
        return None
    if best is not None:
        sliver = max(1, amount // _SPLIT_PROBE)
        inward = amount - sliver if best.venue is pool_a.venue else sliver
        if value(inward) <= best.amount_out:
            return None
    # At least 2: with three points left the thirds are empty, and equal values would leave
    # the bracket as it is, forever (an order of a few base units on two like pools).
    step = max(2, amount // _SPLIT_RESOLUTION)
    lo, hi = 1, amount - 1
    while hi - lo > step:
        third = (hi - lo) // 3
        m1, m2 = lo + third, hi - third
        v1, v2 = value(m1), value(m2)
        if v1 < v2:
            lo = m1 + 1
        elif v1 > v2:
            hi = m2 - 1
        else:  # equal values of a concave function bracket its maximum
            lo, hi = m1, m2
    for a in (lo, (lo + hi) // 2, hi):
        value(a)
    a, total = max(seen.items(), key=lambda item: item[1])
    return (a, total) if total > 0 else None


def _two_hop_offers(
    first: Mapping[Venue, Pool],
    second: Mapping[Venue, Pool],
    token_in: str,
    amount_in: int,
    now: Timestamp,
) -> tuple[VenueOffer, ...]:
    """Quote each venue alone for both hops, so a two-hop route still compares venues."""
    offers = []
    for venue in first.keys() & second.keys():
        hop1 = _offer(venue, first[venue], token_in, amount_in, now)
        if hop1.error is not None or hop1.amount_out == 0:
            offers.append(hop1)
            continue
        hop2 = _offer(venue, second[venue], HUB, hop1.amount_out, now)
        fee = hop1.fee + -(-hop2.fee * amount_in // hop1.amount_out)
        impact = 1 - (1 - hop1.price_impact) * (1 - hop2.price_impact)
        offers.append(VenueOffer(venue, hop2.amount_out, fee, impact, hop2.error))
    return tuple(sorted(offers, key=lambda q: q.venue.value))


def _plan(
    kind: RouteKind,
    token_in: str,
    token_out: str,
    amount_in: int,
    hops: tuple[_Hop, ...],
    offers: tuple[VenueOffer, ...],
    slippage: Decimal,
) -> Route:
    """Assemble the plan: totals, the slippage floor, impact, and the reason it won."""
    amount_out = hops[-1].amount_out
    if amount_out <= 0:
        msg = f"{amount_in} {token_in} buys no {token_out}: the amount is too small"
        raise InsufficientLiquidityError(msg)
    min_out = int((amount_out * (1 - slippage)).to_integral_value(ROUND_FLOOR))
    spot = Decimal(1)
    for hop in hops:
        spot *= hop.spot
    shift = get_token(token_in).decimals - get_token(token_out).decimals
    executed = (Decimal(amount_out) / amount_in).scaleb(shift)
    filled = sorted((q for q in offers if q.error is None), key=lambda q: -q.amount_out)
    best_single = filled[0].amount_out if filled else 0
    if kind is RouteKind.MULTIHOP:
        gain = (amount_out - best_single) * BPS / best_single if best_single else Decimal(0)
        improvement = max(Decimal(0), gain)
    else:
        improvement = hops[0].improvement_bps
    legs = tuple(leg for hop in hops for leg in hop.legs)
    return Route(
        kind=kind,
        token_in=token_in,
        token_out=token_out,
        amount_in=amount_in,
        legs=legs,
        amount_out=amount_out,
        min_amount_out=min_out,
        price_impact=1 - executed / spot,
        split_improvement_bps=improvement.quantize(Decimal("0.01")),
        offers=offers,
        reason=_reason(kind, legs, filled, improvement),
    )


def _reason(
    kind: RouteKind, legs: tuple[Leg, ...], filled: list[VenueOffer], improvement: Decimal
) -> str:
    """Say in one line why this route won, for the routing event and the client."""
    gain = f"{improvement:.1f} bps"
    if kind is RouteKind.MULTIHOP:
        path = ", ".join(
            f"{leg.token_in}->{leg.token_out} {leg.share:.0%} on {leg.venue}" for leg in legs
        )
        return f"no direct pool; two hops through {HUB}: {path} ({gain} over one venue)"
    if kind is RouteKind.SPLIT:
        parts = " / ".join(f"{leg.share:.0%} {leg.venue}" for leg in legs)
        alone = f"{filled[0].venue} alone" if filled else "any venue alone, which runs dry"
        return f"split {parts} gives {gain} more than {alone}"
    winner = legs[0].venue
    if len(filled) < 2:
        return f"only {winner} can fill the order"
    runner_up = filled[1]
    edge = (filled[0].amount_out - runner_up.amount_out) * BPS / runner_up.amount_out
    reason = f"{winner} gives {edge:.1f} bps more than {runner_up.venue}"
    if improvement > 0:
        reason += f"; a split would gain only {gain}"
    return reason
