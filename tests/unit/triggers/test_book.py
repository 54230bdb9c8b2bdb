"""The trigger book against a brute-force model, over random markets and random orders.

Acceptance of issue 17: a limit never fills (triggers) below its limit, a stop never triggers
before its price is crossed, an OCO never fires both legs, and nothing crossed is missed.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import OrderType
from services.triggers.book import Crossing, Leg, TriggerBook, legs_of

SOL_USDC = ("SOL", "USDC")
USDC_SOL = ("USDC", "SOL")
T0 = datetime(2026, 3, 1, tzinfo=UTC)

# Prices on a coarse grid plus values that tie as floats but differ as Decimals.
grid = st.integers(min_value=90, max_value=110).map(Decimal)
near = st.sampled_from(
    [Decimal("100.00000000000000001"), Decimal("99.99999999999999999"), Decimal("100")]
)
prices = st.one_of(grid, near)


@dataclass(frozen=True)
class Order:
    order_id: uuid.UUID
    direction: tuple[str, str]
    legs: tuple[Leg, ...]


@st.composite
def orders(draw: st.DrawFn) -> Order:
    kind = draw(st.sampled_from([OrderType.LIMIT, OrderType.STOP, OrderType.OCO,
                                 OrderType.TAKE_PROFIT]))  # fmt: skip
    legs = legs_of(
        kind,
        limit_price=draw(prices),
        trigger_price=draw(prices),
        take_profit_price=draw(prices),
        stop_loss_price=draw(prices),
    )
    return Order(uuid.UUID(int=draw(st.integers(0, 2**64))), draw(st.sampled_from(
        [SOL_USDC, USDC_SOL])), legs)  # fmt: skip


def crosses(leg: Leg, price: Decimal) -> bool:
    return price >= leg.level if leg.side == "above" else price <= leg.level


Step = tuple[str, object]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("add"), orders()),
            st.tuples(st.just("tick"), st.tuples(st.sampled_from([SOL_USDC, USDC_SOL]), prices)),
            st.tuples(st.just("cancel"), st.integers(0, 50)),
        ),
        max_size=60,
    )
)
def test_the_book_fires_exactly_what_the_price_crosses(steps: list[Step]) -> None:
    book = TriggerBook()
    model: dict[uuid.UUID, Order] = {}
    fired: list[Crossing] = []
    added: list[uuid.UUID] = []
    for kind, value in steps:
        if kind == "add":
            assert isinstance(value, Order)
            if value.order_id in model or value.order_id in {c.order_id for c in fired}:
                continue
            book.add(value.order_id, value.direction, value.legs)
            model[value.order_id] = value
            added.append(value.order_id)
        elif kind == "cancel":
            assert isinstance(value, int)
            if added:
                order_id = added[value % len(added)]
                assert book.remove(order_id) == (model.pop(order_id, None) is not None)
        else:
            assert isinstance(value, tuple)
            direction: tuple[str, str] = value[0]
            price: Decimal = value[1]
            crossings = book.on_tick(direction, price)
            expected = {
                o.order_id
                for o in model.values()
                if o.direction == direction and any(crosses(leg, price) for leg in o.legs)
            }
            assert {c.order_id for c in crossings} == expected  # nothing missed, nothing extra
            for crossing in crossings:
                leg = next(leg for leg in model[crossing.order_id].legs if leg.name == crossing.leg)
                # A limit / take-profit never below its level, a stop never above its trigger.
                assert crosses(leg, crossing.price), crossing
                del model[crossing.order_id]
            fired += crossings
        assert len(book) == len(model)
    # An order (an OCO included: two legs) fires at most once, ever.
    assert len({c.order_id for c in fired}) == len(fired)


@settings(max_examples=100, deadline=None)
@given(st.lists(prices, min_size=1, max_size=40), prices, prices)
def test_a_stop_fires_at_the_first_price_at_or_below_it_and_a_limit_at_or_above(
    path: list[Decimal], stop: Decimal, limit: Decimal
) -> None:
    book = TriggerBook()
    stop_id, limit_id = uuid.UUID(int=1), uuid.UUID(int=2)
    book.add(stop_id, SOL_USDC, legs_of(OrderType.STOP, trigger_price=stop))
    book.add(limit_id, SOL_USDC, legs_of(OrderType.LIMIT, limit_price=limit))
    fired_at: dict[uuid.UUID, int] = {}
    for i, price in enumerate(path):
        for crossing in book.on_tick(SOL_USDC, price):
            fired_at[crossing.order_id] = i
    first_stop = next((i for i, p in enumerate(path) if p <= stop), None)
    first_limit = next((i for i, p in enumerate(path) if p >= limit), None)
    assert fired_at.get(stop_id) == first_stop
    assert fired_at.get(limit_id) == first_limit


def test_an_oco_fires_one_leg_and_leaves_the_book() -> None:
    book = TriggerBook()
    oco = uuid.uuid4()
    book.add(oco, SOL_USDC, legs_of(OrderType.OCO, take_profit_price=Decimal(110),
                                     stop_loss_price=Decimal(90)))  # fmt: skip
    assert book.on_tick(SOL_USDC, Decimal(100)) == []
    (crossing,) = book.on_tick(SOL_USDC, Decimal(89))
    assert (crossing.leg, crossing.level) == ("stopLoss", Decimal(90))
    assert book.on_tick(SOL_USDC, Decimal(120)) == []
    assert len(book) == 0


def test_expiries_come_due_in_time_order_and_amends_move_them() -> None:
    book = TriggerBook()
    a, b, c = uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)
    legs = legs_of(OrderType.LIMIT, limit_price=Decimal(200))
    book.add(a, SOL_USDC, legs, T0 + timedelta(seconds=30))
    book.add(b, SOL_USDC, legs, T0 + timedelta(seconds=10))
    book.add(c, SOL_USDC, legs, T0 + timedelta(seconds=20))
    book.add(c, SOL_USDC, legs, T0 + timedelta(seconds=40))  # amended: later
    book.remove(a)
    assert book.next_expiry() == (T0 + timedelta(seconds=10)).timestamp()
    assert book.due(T0 + timedelta(seconds=25)) == [b]
    assert book.due(T0 + timedelta(seconds=39)) == []
    assert book.due(T0 + timedelta(seconds=40)) == [c]
    assert book.next_expiry() is None
    assert len(book) == 0


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.integers(1, 3000)),
            st.tuples(st.just("tick"), st.integers(80, 120).map(Decimal)),
            st.tuples(st.just("cancel"), st.integers(0, 50)),
        ),
        max_size=80,
    )
)
def test_trailing_stops_fire_exactly_when_the_price_falls_their_bps_below_the_best_seen(
    steps: list[tuple[str, object]],
) -> None:
    """Against a model that remembers each order's best price since it rested."""
    book = TriggerBook()
    best: dict[uuid.UUID, Decimal] = {}  # the model: order -> best price seen
    bps_of: dict[uuid.UUID, int] = {}
    last: Decimal | None = None
    ids = (uuid.UUID(int=n) for n in itertools.count(1))
    added: list[uuid.UUID] = []
    for kind, value in steps:
        if kind == "add":
            assert isinstance(value, int)
            order_id = next(ids)
            book.add(order_id, SOL_USDC, legs_of(OrderType.TRAILING_STOP, trailing_bps=value))
            best[order_id] = last if last is not None else Decimal(0)
            bps_of[order_id] = value
            added.append(order_id)
        elif kind == "cancel":
            assert isinstance(value, int)
            if added:
                order_id = added[value % len(added)]
                assert book.remove(order_id) == (best.pop(order_id, None) is not None)
        else:
            assert isinstance(value, Decimal)
            price = value
            last = price
            for order_id in best:
                best[order_id] = max(best[order_id], price)
            expected = {
                order_id
                for order_id, anchor in best.items()
                if price <= anchor * (10_000 - bps_of[order_id]) / 10_000
            }
            crossings = book.on_tick(SOL_USDC, price)
            assert {c.order_id for c in crossings} == expected
            for crossing in crossings:
                anchor = best.pop(crossing.order_id)
                assert crossing.leg == "trailingStop"
                assert crossing.level == anchor * (10_000 - bps_of[crossing.order_id]) / 10_000
                assert price <= crossing.level  # never before its (trailing) price is crossed
        assert len(book) == len(best)


def test_a_trailing_stop_follows_the_best_price_up_and_fires_on_the_way_down() -> None:
    book = TriggerBook()
    order = uuid.uuid4()
    book.on_tick(SOL_USDC, Decimal(100))
    book.add(order, SOL_USDC, legs_of(OrderType.TRAILING_STOP, trailing_bps=500))  # 5 %
    assert book.on_tick(SOL_USDC, Decimal(96)) == []  # 100 -> stop 95
    assert book.on_tick(SOL_USDC, Decimal(120)) == []  # best 120 -> stop 114
    assert book.on_tick(SOL_USDC, Decimal(115)) == []
    (crossing,) = book.on_tick(SOL_USDC, Decimal(114))
    assert crossing.level == Decimal(114)


@dataclass(frozen=True)
class Resting:
    order: Order
    expires: int | None  # seconds after T0
    arrival: int


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.tuples(orders(), st.none() | st.integers(0, 30))),
            st.tuples(st.just("tick"), st.tuples(st.sampled_from([SOL_USDC, USDC_SOL]), prices)),
            st.tuples(st.just("cancel"), st.integers(0, 3)),
            st.tuples(st.just("clock"), st.integers(0, 30)),
            st.tuples(st.just("peek"), st.none()),
        ),
        min_size=20,
        max_size=80,
    )
)
def test_the_columnar_book_matches_a_naive_model_through_amends_expiries_and_ticks(
    steps: list[Step],
) -> None:
    """Ids come from a pool of 4, so most adds amend (replace) a resting order: its legs,
    direction and expiry move. Crossings come in the indexes' order (above then below, by
    level, equal levels first come first served); expiries in time order."""
    book = TriggerBook()
    model: dict[uuid.UUID, Resting] = {}
    arrivals = itertools.count()
    now = 0
    for kind, value in steps:
        if kind == "add":
            assert isinstance(value, tuple)
            order, expires = value
            order_id = uuid.UUID(int=order.order_id.int % 4)
            order = Order(order_id, order.direction, order.legs)
            book.add(order_id, order.direction, order.legs,
                     None if expires is None else T0 + timedelta(seconds=expires))  # fmt: skip
            model[order_id] = Resting(order, expires, next(arrivals))
        elif kind == "cancel":
            assert isinstance(value, int)
            order_id = uuid.UUID(int=value)
            assert book.remove(order_id) == (model.pop(order_id, None) is not None)
        elif kind == "clock":
            assert isinstance(value, int)
            now = max(now, value)
            due = book.due(T0 + timedelta(seconds=now))
            expected = {
                order_id
                for order_id, r in model.items()
                if r.expires is not None and r.expires <= now
            }
            assert set(due) == expected
            assert len(due) == len(expected)
            times = [model.pop(order_id).expires for order_id in due]
            assert times == sorted(times)  # type: ignore[type-var]
        elif kind == "peek":  # not after every step: it drops stale expiries at the heap's top
            held = [T0.timestamp() + r.expires for r in model.values() if r.expires is not None]
            assert book.next_expiry() == (min(held) if held else None)
        else:
            assert isinstance(value, tuple)
            direction, price = value
            expected_order: list[tuple[uuid.UUID, str, Decimal]] = []
            for side in ("above", "below"):
                legs = sorted(
                    (float(leg.level), r.arrival, order_id, leg)
                    for order_id, r in model.items()
                    if r.order.direction == direction
                    for leg in r.order.legs
                    if leg.side == side and crosses(leg, price)
                )
                for *_, order_id, leg in legs:
                    if order_id not in {o for o, _, _ in expected_order}:  # an OCO fires once
                        expected_order.append((order_id, leg.name, leg.level))
            crossings = book.on_tick(direction, price)
            assert [(c.order_id, c.leg, c.level) for c in crossings] == expected_order
            assert all(c.price == price for c in crossings)
            for crossing in crossings:
                del model[crossing.order_id]
        assert len(book) == len(model)
        assert all((order_id in book) == (order_id in model)
                   for order_id in (uuid.UUID(int=n) for n in range(4)))  # fmt: skip
        for indexes in book._indexes.values():  # no empty level kept, levels sorted
            for index in (indexes.above, indexes.below):
                assert list(index.levels) == sorted(index.at)
                assert all(index.at.values())
