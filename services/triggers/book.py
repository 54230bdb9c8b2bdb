"""The trigger book: every resting order in per-pair sorted indexes, and expiries in time order.

Pure (no I/O): the trigger engine process (`services/triggers/engine.py`) feeds it orders
from the log and prices from the market ticks, and appends what it returns to the log.

Every order sells `token_in` for `token_out`; a price is tokenOut per tokenIn. Each
direction (token_in, token_out) has two indexes of `(level, handle, entry)` keys, sorted
(`sortedcontainers.SortedList`, a B-tree-like list of lists: O(log n) insert, remove and
bisect, with ~tens of bytes of overhead per key):

- `above`: legs that fire when the price rises to their level or higher: a limit, a
  take-profit, an OCO's take-profit leg. A price p crosses the prefix with level <= p.
- `below`: legs that fire when the price falls to their level or lower: a stop, an OCO's
  stop-loss leg. A price p crosses the suffix with level >= p.

So a tick costs two bisections, O(log n), plus the k legs it actually crosses; a tick that
crosses nothing touches no order. Keys are floats (cheap to compare and store); a float
conversion is monotonic, so the float slice is a superset of the exact answer, and the legs
at its boundary are checked again against their exact Decimal level: a stop never fires
at a price above its trigger, a limit never at a price below its limit.

An OCO has a leg in each index; when either fires the order leaves the book, both legs,
so the other can never fire. Expiries are a heap of (time, handle, entry) with lazy
deletion (an entry no longer the book's is skipped).
"""

from __future__ import annotations

import heapq
import uuid
from dataclasses import dataclass
from datetime import datetime
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


class _Entry:
    """A resting order as the book holds it (slots: a million of them are held).

    Index keys are `(float level, handle, entry)`: the handle (unique, increasing) orders
    equal levels first come first served and makes the entry itself never compared, and
    the entry in the key saves a handle -> entry map (~100 bytes an order). The order id is
    held as its 128-bit int (44 bytes), not as a `uuid.UUID` (another 56)."""

    __slots__ = ("direction", "group", "handle", "legs", "order_id")

    def __init__(
        self,
        order_id: int,
        handle: int,
        direction: Direction,
        legs: tuple[Leg, ...],
    ) -> None:
        self.order_id = order_id
        self.handle = handle
        self.direction = direction
        self.legs = legs
        self.group: _Group | None = None  # a trailing stop's group


class _Group:
    """Trailing stops that share their best price seen (their anchor), by bps ascending.

    Every order's best price is the highest tick since it rested; a new high lifts every
    anchor below it to that price, so those groups merge (the smaller into the larger: an
    order moves O(log n) times in all). A group's highest stop level is its smallest bps's."""

    __slots__ = ("anchor", "orders", "serial")

    def __init__(self, anchor: Decimal, serial: int) -> None:
        self.anchor = anchor
        self.serial = serial
        self.orders: SortedList = SortedList()  # (bps, handle, entry)

    def level(self, bps: Decimal) -> Decimal:
        return self.anchor * (10_000 - bps) / 10_000

    def top(self) -> Decimal:
        return self.level(self.orders[0][0])


class _Indexes:
    __slots__ = ("above", "anchors", "below", "fragile")

    def __init__(self) -> None:
        self.above: SortedList = SortedList()  # (float level, handle, entry)
        self.below: SortedList = SortedList()
        self.anchors: SortedDict = SortedDict()  # trailing: anchor -> _Group
        self.fragile: SortedList = SortedList()  # trailing: (group's top level, serial, group)


class TriggerBook:
    """Resting orders by direction and level, and by expiry."""

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}  # by the order id's int
        self._indexes: dict[Direction, _Indexes] = {}
        self._expiries: list[tuple[float, int, _Entry]] = []
        self._next_handle = 0
        self._values: dict[object, object] = {}
        # Float keys apart: 150.0 == Decimal(150) (same hash), so one dict would mix them.
        self._floats: dict[float, float] = {}
        self._last: dict[Direction, Decimal] = {}  # the last price per direction

    def _shared(self, value: T) -> T:
        """One object per distinct (immutable) value, however many orders hold it. Grows
        with the distinct levels ever rested (a few per price tick), not with orders."""
        return self._values.setdefault(value, value)  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, order_id: object) -> bool:
        return isinstance(order_id, uuid.UUID) and order_id.int in self._entries

    def add(
        self,
        order_id: uuid.UUID,
        direction: Direction,
        legs: tuple[Leg, ...],
        expires_at: datetime | None = None,
    ) -> None:
        """Rest an order (replacing what the book held for it, as after an amend)."""
        self.remove(order_id)
        key = order_id.int
        handle = self._next_handle
        self._next_handle += 1
        expires = expires_at.timestamp() if expires_at is not None else None
        # Directions and legs are shared by every order with the same ones (prices cluster):
        # one tuple and one Decimal per distinct level, not per order.
        direction = self._shared(direction)
        legs = self._shared(tuple(self._shared(leg) for leg in legs))
        entry = _Entry(key, handle, direction, legs)  # its expiry is in the heap only
        self._entries[key] = entry
        if legs:
            indexes = self._indexes.get(direction)
            if indexes is None:
                indexes = self._indexes[direction] = _Indexes()
            for leg in legs:
                if leg.side == "trail":
                    self._trail(indexes, entry, leg)
                else:
                    level = float(leg.level)
                    level = self._floats.setdefault(level, level)  # one per distinct level
                    getattr(indexes, leg.side).add((level, handle, entry))
        if expires is not None:
            heapq.heappush(self._expiries, (expires, handle, entry))

    def remove(self, order_id: uuid.UUID) -> bool:
        """Take an order out of the book (it triggered, was cancelled, expired or finished)."""
        return self._remove(order_id.int)

    def _remove(self, key: int) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        indexes = self._indexes.get(entry.direction)
        if indexes is not None:
            for leg in entry.legs:
                if leg.side == "trail":
                    self._untrail(indexes, entry, leg)
                else:
                    getattr(indexes, leg.side).discard((float(leg.level), entry.handle, entry))
        return True  # its expiry stays in the heap; `due` skips entries no longer held

    # --- trailing stops ---------------------------------------------------------------------

    def _trail(self, indexes: _Indexes, entry: _Entry, leg: Leg) -> None:
        """Rest a trailing stop anchored at the last price (0 before any: the next tick)."""
        anchor = self._last.get(entry.direction, Decimal(0))
        group = indexes.anchors.get(anchor)
        if group is None:
            group = indexes.anchors[anchor] = _Group(anchor, entry.handle)
        else:
            indexes.fragile.discard((group.top(), group.serial, group))
        group.orders.add((leg.level, entry.handle, entry))
        indexes.fragile.add((group.top(), group.serial, group))
        entry.group = group

    def _untrail(self, indexes: _Indexes, entry: _Entry, leg: Leg) -> None:
        group = entry.group
        if group is None:
            return  # fired: already out of its group
        indexes.fragile.discard((group.top(), group.serial, group))
        group.orders.discard((leg.level, entry.handle, entry))
        entry.group = None
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
                for key in group.orders:
                    key[2].group = target
                target.orders.update(group.orders)
        target.anchor = price
        indexes.anchors[price] = target
        indexes.fragile.add((target.top(), target.serial, target))

    def _fire_trailing(self, indexes: _Indexes, price: Decimal) -> list[tuple[_Entry, Leg]]:
        crossed: list[tuple[_Entry, Leg]] = []
        fragile = indexes.fragile
        while fragile and fragile[-1][0] >= price:
            _, _, group = fragile.pop()
            while group.orders and group.level(group.orders[0][0]) >= price:
                bps, _, entry = group.orders.pop(0)
                crossed.append((entry, Leg("trailingStop", "trail", group.level(bps))))
                entry.group = None
            if group.orders:
                fragile.add((group.top(), group.serial, group))
            else:
                del indexes.anchors[group.anchor]
        return crossed

    def on_tick(self, direction: Direction, price: Decimal) -> list[Crossing]:
        """Every order of `direction` whose leg `price` crosses, taken out of the book.

        O(log n) to find them plus O(k log n) to remove the k crossed."""
        self._last[direction] = price
        indexes = self._indexes.get(direction)
        if indexes is None:
            return []
        p = float(price)
        crossed: list[tuple[_Entry, Leg]] = []
        if indexes.anchors:
            self._lift(indexes, price)
            crossed += self._fire_trailing(indexes, price)
        above = indexes.above
        end = above.bisect_right((p, float("inf")))
        if end:
            for _, _, entry in above[:end]:
                leg = _leg(entry, "above")
                if price >= leg.level:  # exact: float ties are checked again
                    crossed.append((entry, leg))
        below = indexes.below
        start = below.bisect_left((p, -1))
        if start < len(below):
            for _, _, entry in below[start:]:
                leg = _leg(entry, "below")
                if price <= leg.level:
                    crossed.append((entry, leg))
        result: list[Crossing] = []
        for entry, leg in crossed:
            if self._remove(entry.order_id):  # an OCO crossed on both sides fires once
                result.append(Crossing(uuid.UUID(int=entry.order_id), leg.name, leg.level, price))
        return result

    def due(self, now: datetime) -> list[uuid.UUID]:
        """Orders whose expiry is at or before `now`, in expiry order, taken out of the book."""
        limit = now.timestamp()
        expired: list[uuid.UUID] = []
        while self._expiries and self._expiries[0][0] <= limit:
            _, _, entry = heapq.heappop(self._expiries)
            if self._holds(entry):
                self._remove(entry.order_id)
                expired.append(uuid.UUID(int=entry.order_id))
        return expired

    def _holds(self, entry: _Entry) -> bool:
        """Whether `entry` is still how the book holds its order (not removed nor replaced)."""
        return self._entries.get(entry.order_id) is entry

    def next_expiry(self) -> float | None:
        """The earliest expiry still held (a POSIX time), for the engine's timer."""
        while self._expiries:
            at, _, entry = self._expiries[0]
            if self._holds(entry):
                return at
            heapq.heappop(self._expiries)  # stale: removed or re-added since
        return None


def _leg(entry: _Entry, side: Side) -> Leg:
    for leg in entry.legs:
        if leg.side == side:
            return leg
    raise KeyError(side)  # pragma: no cover - an index key always has its leg
