"""Each leg's input and minimum out (`pricing.guards`): the order's slippage guard, per swap.

Properties over single, split and two-hop routes (either hop split): the transaction never
pays less than the slippage allows, a hop never spends more than the previous hop guaranteed,
and a first hop's allowance is never more than the order's.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.pricing.guards import LegGuard, hop_keep, leg_guards


@dataclass(frozen=True, slots=True)
class Planned:
    hop: int
    amount_in: int
    amount_out: int


@dataclass(frozen=True, slots=True)
class Route:
    legs: tuple[Planned, ...]
    slippage: Decimal
    min_amount_out: int  # as `routing._plan` floors it


@st.composite
def routes(
    draw: st.DrawFn, hops: int | None = None, smallest: int = 1, least_slippage: str = "0"
) -> Route:
    """A planned route: one or two hops of one or two legs each (every amount at least
    `smallest`); a hop after the first spends exactly what the previous one quoted, split by
    its legs' planned inputs."""
    count = hops if hops is not None else draw(st.integers(min_value=1, max_value=2))
    units = st.integers(min_value=smallest, max_value=10**15)
    legs: list[Planned] = []
    amount_in = draw(units)
    for hop in range(count):
        split = amount_in >= 2 * smallest and draw(st.booleans())
        outs = draw(st.lists(units, min_size=1 + split, max_size=1 + split))
        if split:
            first = draw(st.integers(min_value=smallest, max_value=amount_in - smallest))
            ins = [first, amount_in - first]
        else:
            ins = [amount_in]
        legs += [Planned(hop, a, o) for a, o in zip(ins, outs, strict=True)]
        amount_in = sum(outs)
    slippage = draw(
        st.decimals(min_value=Decimal(least_slippage), max_value=Decimal("0.5"), places=4)
    )
    quoted = sum(leg.amount_out for leg in legs if leg.hop == count - 1)
    floor = int((quoted * (1 - slippage)).to_integral_value(ROUND_FLOOR))
    return Route(tuple(legs), slippage, floor)


def hop_total(route: Route, guards: tuple[LegGuard, ...], hop: int, field: str) -> int:
    return sum(
        getattr(g, field) for leg, g in zip(route.legs, guards, strict=True) if leg.hop == hop
    )


@settings(max_examples=300, deadline=None)
@given(routes())
def test_the_transaction_never_pays_less_than_the_slippage_allows(route: Route) -> None:
    guards = leg_guards(route.legs, route.min_amount_out)
    last = max(leg.hop for leg in route.legs)
    quoted = sum(leg.amount_out for leg in route.legs if leg.hop == last)
    assert hop_total(route, guards, last, "min_out") >= route.min_amount_out
    assert route.min_amount_out >= quoted * (1 - route.slippage) - 1


@settings(max_examples=300, deadline=None)
@given(routes())
def test_a_hop_never_spends_more_than_the_previous_hop_guaranteed(route: Route) -> None:
    guards = leg_guards(route.legs, route.min_amount_out)
    for leg, guard in zip(route.legs, guards, strict=True):
        assert 0 <= guard.amount_in <= leg.amount_in  # never more than planned
        if leg.hop == 0:
            assert guard.amount_in == leg.amount_in  # the order's own input, untouched
    if max(leg.hop for leg in route.legs) == 1:
        assert hop_total(route, guards, 1, "amount_in") <= hop_total(route, guards, 0, "min_out")


@settings(max_examples=300, deadline=None)
@given(routes(hops=2))
def test_a_first_hops_allowance_is_its_share_of_the_orders(route: Route) -> None:
    guards = leg_guards(route.legs, route.min_amount_out)
    order_keep = Decimal(route.min_amount_out) / sum(
        leg.amount_out for leg in route.legs if leg.hop == 1
    )
    for leg, guard in zip(route.legs, guards, strict=True):
        if leg.hop == 0:
            # Never more than quoted; never less than the order's own share of the quote.
            assert guard.min_out <= leg.amount_out
            assert guard.min_out >= leg.amount_out * min(order_keep, Decimal(1)) - 1


@settings(max_examples=300, deadline=None)
@given(routes(hops=2, smallest=10**6, least_slippage="0.001"))
def test_a_first_hop_at_its_minimum_leaves_the_second_hop_its_share(route: Route) -> None:
    # The first hop pays exactly its minimum; the second hop pays at its quoted rate for the
    # smaller input it spends: the last hop's minimums still hold, so the allowance the first
    # hop used does not fail the order.
    guards = leg_guards(route.legs, route.min_amount_out)
    for leg, guard in zip(route.legs, guards, strict=True):
        if leg.hop == 1:
            at_quoted_rate = guard.amount_in * leg.amount_out // leg.amount_in
            assert at_quoted_rate >= guard.min_out


def test_a_two_hop_at_one_percent_keeps_the_square_root_of_it_per_hop() -> None:
    legs = (Planned(0, 10**9, 150_000_000), Planned(1, 150_000_000, 166_000_000))
    guards = leg_guards(legs, 164_340_000)  # 1 % below 166_000_000
    assert guards == (
        LegGuard(10**9, 149_248_115),  # floor(150_000_000 x sqrt(0.99))
        LegGuard(149_248_115, 164_340_000),
    )


def test_without_slippage_every_hop_must_pay_its_quote() -> None:
    legs = (Planned(0, 100, 50), Planned(1, 30, 20), Planned(1, 20, 14))
    assert leg_guards(legs, 34) == (LegGuard(100, 50), LegGuard(30, 20), LegGuard(20, 14))


def test_a_single_hop_spends_its_plan_and_shares_the_min_out_by_quote() -> None:
    legs = (Planned(0, 6, 600), Planned(0, 4, 401))
    assert leg_guards(legs, 951) == (LegGuard(6, 571), LegGuard(4, 381))


@pytest.mark.parametrize(
    ("quoted", "minimum", "hops", "keep"),
    [(100, 81, 2, Decimal("0.9")), (100, 81, 1, Decimal("0.81")), (100, 200, 2, Decimal(1))],
)
def test_each_hop_keeps_the_nth_root_of_the_orders_share(
    quoted: int, minimum: int, hops: int, keep: Decimal
) -> None:
    assert hop_keep(quoted, minimum, hops) == keep


@pytest.mark.parametrize("legs", [(), (Planned(0, 10, 0),)])
def test_a_route_with_nothing_to_guard_is_refused(legs: tuple[Planned, ...]) -> None:
    with pytest.raises(ValueError, match=r"no quoted output|without legs"):
        leg_guards(legs, 1)
