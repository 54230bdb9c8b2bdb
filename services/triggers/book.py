"""The trigger book: every resting order in per-pair sorted indexes, and expiries in time order.

Pure (no I/O): the trigger engine process (`services/triggers/engine.py`) feeds it orders
from the log and prices from the market ticks, and appends what it returns to the log.

Every order sells `token_in` for `token_out`; a price is tokenOut per tokenIn. Each
direction (token_in, token_out) has two level indexes, columnar: the distinct float levels
sorted (`sortedcontainers.SortedList`) and, per level, the ids resting there in arrival
order (a dict as an ordered set), so an order costs a slot in its level's dict, not an
object and a key tuple of its own:

- `above`: legs that fire when the price rises to their level or higher: a limit, a
  take-profit, an OCO's take-profit leg. A price p crosses the levels <= p.
- `below`: legs that fire when the price falls to their level or lower: a stop, an OCO's
  stop-loss leg. A price p crosses the levels >= p.

So a tick costs two bisections, O(log L) over the L distinct levels, plus the k legs it
actually crosses; a tick that crosses nothing touches no order. Levels are floats (cheap to
compare and store); a float conversion is monotonic, so the float slice is a superset of
the exact answer, and every leg in it is checked again against its exact Decimal level: a
stop never fires at a price above its trigger, a limit never at a price below its limit.
Equal levels fire first come first served (an amend rests again: last).

An OCO has a leg in each index; when either fires the order leaves the book, both legs,
so the other can never fire. What an order rests with (direction and legs) is interned, one
`_Placement` for every order with the same ones; per order the book holds one int (that
placement's index and the expiry). Expiries are a heap of ints (`expiry µs << 128 | id`)
with lazy deletion (one no longer the order's held expiry is skipped).
"""

from __future__ import annotations

import heapq
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal, TypeVar

from sortedcontainers import SortedDict, SortedList

from schemas.events import OrderType, TriggerLeg

Direction = tuple[str, str]  # (token_in, token_out)
T = TypeVar("T")
Side = Literal["above", "below", "trail"]


@dataclass(frozen=True, slots=True)
class Leg:
    """One price of an order that can trigger it."""

    name: TriggerLeg
    side: Side
    level: Decimal


@dataclass(frozen=True, slots=True)
class Crossing:
    """An order whose leg the price crossed: the engine proposes its trigger."""

    order_id: uuid.UUID
    leg: TriggerLeg
    level: Decimal
    price: Decimal


def legs_of(
    order_type: OrderType,
    *,
    limit_price: Decimal | None = None,
    trigger_price: Decimal | None = None,
    take_profit_price: Decimal | None = None,
    stop_loss_price: Decimal | None = None,
    trailing_bps: int | None = None,
) -> tuple[Leg, ...]:
    """The legs an order of this type rests with (a trailing stop's level is its bps)."""
    if order_type is OrderType.TRAILING_STOP and trailing_bps is not None:
        return (Leg("trailingStop", "trail", Decimal(trailing_bps)),)
    if order_type is OrderType.LIMIT and limit_price is not None:
        return (Leg("limit", "above", limit_price),)
    if order_type is OrderType.TAKE_PROFIT and limit_price is not None:
        return (Leg("takeProfit", "above", limit_price),)
    if order_type is OrderType.STOP and trigger_price is not None:
        return (Leg("stop", "below", trigger_price),)
    if order_type is OrderType.OCO and take_profit_price is not None and stop_loss_price:
        return (
            Leg("takeProfit", "above", take_profit_price),
            Leg("stopLoss", "below", stop_loss_price),
        )
    return ()


_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ID_BITS = 128  # an order id's int
_ID_MASK = (1 << _ID_BITS) - 1
_PLACEMENT_BITS = 32  # a held order's placement index, below its expiry


class _Placement:
    """Where an order rests: its direction, legs and their index keys. Interned: one for
    every order with the same ones (prices cluster), so it costs nothing per order."""

    __slots__ = ("direction", "index", "keys", "legs")

    def __init__(self, index: int, direction: Direction, legs: tuple[Leg, ...]) -> None:
        self.index = index
        self.direction = direction
        self.legs = legs
        # (side, float level, leg) of each leg in a level index (trailing legs are in groups).
        self.keys = tuple((leg.side, float(leg.level), leg) for leg in legs if leg.side != "trail")


class _Trail:
    """A trailing stop's place in its group (trailing stops only)."""

    __slots__ = ("group", "key")

    def __init__(self, group: _Group | None, key: tuple[Decimal, int, int]) -> None:
        self.group = group
        self.key = key


class _Group:
    """Trailing stops that share their best price seen (their anchor), by bps ascending.

    Every order's best price is the highest tick since it rested; a new high lifts every
    anchor below it to that price, so those groups merge (the smaller into the larger: an
    order moves O(log n) times in all). A group's highest stop level is its smallest bps's."""

    __slots__ = ("anchor", "orders", "serial")

    def __init__(self, anchor: Decimal, serial: int) -> None:
        self.anchor = anchor
        self.serial = serial
        self.orders: SortedList = SortedList()  # (bps, serial, order id)

    def level(self, bps: Decimal) -> Decimal:
        return self.anchor * (10_000 - bps) / 10_000

    def top(self) -> Decimal:
        return self.level(self.orders[0][0])


class _LevelIndex:
    """One side of one direction, columnar: the distinct float levels sorted, and per level
    the ids resting there in arrival order (a dict used as an ordered set: O(1) removal).
    No object per order: an order costs one slot in its level's dict."""

    __slots__ = ("at", "levels")

    def __init__(self) -> None:
        self.levels: SortedList = SortedList()  # distinct float levels
        self.at: dict[float, dict[int, None]] = {}  # level -> ids, first come first

    def add(self, level: float, key: int) -> None:
        ids = self.at.get(level)
        if ids is None:
            ids = self.at[level] = {}
            self.levels.add(level)
        ids[key] = None

    def discard(self, level: float, key: int) -> None:
        ids = self.at.get(level)
        if ids is None or ids.pop(key, 0) is not None:
            return
        if not ids:
            del self.at[level]
            self.levels.remove(level)


class _Indexes:
    __slots__ = ("above", "anchors", "below", "fragile")

    def __init__(self) -> None:
        self.above = _LevelIndex()
        self.below = _LevelIndex()
        self.anchors: SortedDict = SortedDict()  # trailing: anchor -> _Group
        self.fragile: SortedList = SortedList()  # trailing: (group's top level, serial, group)

    def side(self, side: Side) -> _LevelIndex:
        return self.above if side == "above" else self.below


class TriggerBook:
    """Resting orders by direction and level, and by expiry.

    Per order only: its id's int (the key everywhere), one int in `_held` (its placement's
    index and its expiry), one slot in each of its levels' dicts and one int in the expiry
    heap. Directions, legs and levels are interned, one object per distinct value."""

    def __init__(self) -> None:
        # id int -> placement index | (expiry in µs since the epoch + 1) << 32 (0: none).
        self._held: dict[int, int] = {}
        self._placements: list[_Placement] = []
        self._placement_of: dict[tuple[Direction, tuple[Leg, ...]], _Placement] = {}
        self._indexes: dict[Direction, _Indexes] = {}
        # Expiries: a heap of `expiry µs << 128 | id`, lazily deleted (an int no longer
        # matching its order's held expiry is skipped).
        self._expiries: list[int] = []
        self._trails: dict[int, _Trail] = {}  # trailing stops: id -> place in its group
        self._next_serial = 0  # trailing stops: arrival order among equal bps
        self._values: dict[object, object] = {}
        self._last: dict[Direction, Decimal] = {}  # the last price per direction

    def _shared(self, value: T) -> T:
        """One object per distinct (immutable) value, however many orders hold it. Grows
        with the distinct levels ever rested (a few per price tick), not with orders."""
        return self._values.setdefault(value, value)  # type: ignore[return-value]

    def _placement(self, direction: Direction, legs: tuple[Leg, ...]) -> _Placement:
        direction = self._shared(direction)
        legs = tuple(self._shared(leg) for leg in legs)
        placement = self._placement_of.get((direction, legs))
        if placement is None:
            placement = _Placement(len(self._placements), direction, legs)
            self._placements.append(placement)
            self._placement_of[(direction, legs)] = placement
        return placement

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, order_id: object) -> bool:
        return isinstance(order_id, uuid.UUID) and order_id.int in self._held

    def add(
        self,
        order_id: uuid.UUID | int,
        direction: Direction,
        legs: tuple[Leg, ...],
        expires_at: datetime | None = None,
    ) -> None:
        """Rest an order (replacing what the book held for it, as after an amend). The id
        may be given as its int (the holder's own, so one int object serves both)."""
        key = order_id if isinstance(order_id, int) else order_id.int
        self._remove(key)
        placement = self._placement(direction, legs)
        held = placement.index
        if expires_at is not None:
            expiry = max((expires_at - _EPOCH) // _US, 0)  # before 1970: due at once
            held |= (expiry + 1) << _PLACEMENT_BITS
            heapq.heappush(self._expiries, expiry << _ID_BITS | key)
        self._held[key] = held
        if placement.legs:
            indexes = self._indexes.get(placement.direction)
            if indexes is None:
                indexes = self._indexes[placement.direction] = _Indexes()
            for side, level, _ in placement.keys:
                indexes.side(side).add(level, key)
            for leg in placement.legs:
                if leg.side == "trail":
                    self._trail(indexes, placement.direction, key, leg)

    def remove(self, order_id: uuid.UUID) -> bool:
        """Take an order out of the book (it triggered, was cancelled, expired or finished)."""
        return self._remove(order_id.int)

    def _remove(self, key: int) -> bool:
        held = self._held.pop(key, None)
        if held is None:
            return False
        placement = self._placements[held & ((1 << _PLACEMENT_BITS) - 1)]
        indexes = self._indexes.get(placement.direction)
        if indexes is not None:
            for side, level, _ in placement.keys:
                indexes.side(side).discard(level, key)
            if key in self._trails:
                self._untrail(indexes, key)
        return True  # its expiry stays in the heap; `due` skips those no longer held

    # --- trailing stops ---------------------------------------------------------------------

    def _trail(self, indexes: _Indexes, direction: Direction, key: int, leg: Leg) -> None:
        """Rest a trailing stop anchored at the last price (0 before any: the next tick)."""
        anchor = self._last.get(direction, Decimal(0))
        serial = self._next_serial
        self._next_serial += 1
        group = indexes.anchors.get(anchor)
        if group is None:
            group = indexes.anchors[anchor] = _Group(anchor, serial)
        else:
            indexes.fragile.discard((group.top(), group.serial, group))
        place = (leg.level, serial, key)
        group.orders.add(place)
        indexes.fragile.add((group.top(), group.serial, group))
        self._trails[key] = _Trail(group, place)

    def _untrail(self, indexes: _Indexes, key: int) -> None:
        trail = self._trails.pop(key)
        group = trail.group
        if group is None:
            return  # fired: already out of its group
        indexes.fragile.discard((group.top(), group.serial, group))
        group.orders.discard(trail.key)
        if group.orders:
            indexes.fragile.add((group.top(), group.serial, group))
        else:
            del indexes.anchors[group.anchor]

    def _lift(self, indexes: _Indexes, price: Decimal) -> None:
        """A new high: every anchor below `price` becomes `price` (their groups merge)."""
        lower = list(indexes.anchors.irange(maximum=price, inclusive=(True, False)))
        if not lower:
            return
        groups = [indexes.anchors.pop(anchor) for anchor in lower]
        existing = indexes.anchors.get(price)
        if existing is not None:
            groups.append(existing)
        for group in groups:
            indexes.fragile.discard((group.top(), group.serial, group))
        target = max(groups, key=lambda group: len(group.orders))
        for group in groups:
            if group is not target:
                for place in group.orders:
                    self._trails[place[2]].group = target
                target.orders.update(group.orders)
        target.anchor = price
        indexes.anchors[price] = target
        indexes.fragile.add((target.top(), target.serial, target))

    def _fire_trailing(self, indexes: _Indexes, price: Decimal) -> list[tuple[int, Leg]]:
        crossed: list[tuple[int, Leg]] = []
        fragile = indexes.fragile
        while fragile and fragile[-1][0] >= price:
            _, _, group = fragile.pop()
            while group.orders and group.level(group.orders[0][0]) >= price:
                bps, _, key = group.orders.pop(0)
                crossed.append((key, Leg("trailingStop", "trail", group.level(bps))))
                self._trails[key].group = None
            if group.orders:
                fragile.add((group.top(), group.serial, group))
            else:
                del indexes.anchors[group.anchor]
        return crossed

    def on_tick(self, direction: Direction, price: Decimal) -> list[Crossing]:
        """Every order of `direction` whose leg `price` crosses, taken out of the book.

        O(log L) to find them (L distinct levels) plus O(k) to remove the k crossed (and
        O(log L) per level emptied)."""
        self._last[direction] = price
        indexes = self._indexes.get(direction)
        if indexes is None:
            return []
        p = float(price)
        crossed: list[tuple[int, Leg]] = []
        if indexes.anchors:
            self._lift(indexes, price)
            crossed += self._fire_trailing(indexes, price)
        above = indexes.above
        end = above.levels.bisect_right(p)
        if end:
            for level in above.levels[:end]:
                for key in above.at[level]:
                    leg = self._leg(key, "above", level)
                    if price >= leg.level:  # exact: float ties are checked again
                        crossed.append((key, leg))
        below = indexes.below
        start = below.levels.bisect_left(p)
        if start < len(below.levels):
            for level in below.levels[start:]:
                for key in below.at[level]:
                    leg = self._leg(key, "below", level)
                    if price <= leg.level:
                        crossed.append((key, leg))
        result: list[Crossing] = []
        for key, leg in crossed:
            if self._remove(key):  # an OCO crossed on both sides fires once
                result.append(Crossing(uuid.UUID(int=key), leg.name, leg.level, price))
        return result

    def _leg(self, key: int, side: Side, level: float) -> Leg:
        placement = self._placements[self._held[key] & ((1 << _PLACEMENT_BITS) - 1)]
        for leg_side, leg_level, leg in placement.keys:
            if leg_side == side and leg_level == level:
                return leg
        raise KeyError(side)  # pragma: no cover - an index holds only its orders' legs

    def due(self, now: datetime) -> list[uuid.UUID]:
        """Orders whose expiry is at or before `now`, in expiry order, taken out of the book."""
        limit = (now - _EPOCH) // _US
        expired: list[uuid.UUID] = []
        expiries = self._expiries
        while expiries and expiries[0] >> _ID_BITS <= limit:
            item = heapq.heappop(expiries)
            key = item & _ID_MASK
            if self._expiry_held(key) == item >> _ID_BITS:
                self._remove(key)
                expired.append(uuid.UUID(int=key))
        return expired

    def _expiry_held(self, key: int) -> int | None:
        """The expiry (µs) the book holds for this order, if it holds one."""
        held = self._held.get(key)
        if held is None or held >> _PLACEMENT_BITS == 0:
            return None
        return (held >> _PLACEMENT_BITS) - 1

    def next_expiry(self) -> float | None:
        """The earliest expiry still held (a POSIX time), for the engine's timer."""
        expiries = self._expiries
        while expiries:
            item = expiries[0]
            at = item >> _ID_BITS
            if self._expiry_held(item & _ID_MASK) == at:
                return at / 10**6  # as `datetime.timestamp()` computes it: the same float
            heapq.heappop(expiries)  # stale: removed or re-added since
        return None
