"""The trigger engine's decisions, pure: order events and ticks in, proposals out.

`TriggerCore` folds the order log with the one fold (`evolve`) for every conditional order
that is not final, keeps the resting ones in the `TriggerBook`, and turns market ticks and
the clock into *proposals*: `OrderTriggered` / `OrderExpired` envelopes carrying the order's
expected next sequence and the hash of its last event. The process appends them; whether a
proposal becomes the order's history is decided by the log alone: if a cancel, an amend or
another engine's proposal took that sequence first, every reader (router, projector, replay,
this core) drops it as a duplicate. So a cancel and a trigger racing end one way only, and
two engines running at once cannot trigger an order twice.

While a proposal is in flight the order is out of the book (nothing is proposed for it
twice); when the log shows the order's next event, whoever wrote it, the core folds it and
rests the order again if it still rests (an amend won), or forgets it (it triggered, was
cancelled, or ended).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from schemas.chain import ChainEvent
from schemas.envelope import Envelope
from schemas.events import (
    OrderEvent,
    OrderExpired,
    OrderFailed,
    OrderSubmitted,
    OrderTriggered,
    OrderType,
)
from schemas.market import MarketTick
from services.domain.launches import NO_LAUNCHES, Launches, fold_chain
from services.domain.order import OrderState, OutOfSequence, evolve, pack, unpack
from services.triggers.book import Direction, TriggerBook, legs_of
from services.triggers.snipers import Fail, Fire, decide_snipe, submission_order

PRODUCER = "triggers"
# A limit the mid said crossed but no route filled (the router put it back, OrderOpened) is
# proposed again only at a better price than that trigger's, or this many slots later
# (~10 s at 400 ms): not once per tick while the market stays where it could not fill.
RETRIGGER_AFTER_SLOTS = 25


@dataclass(frozen=True)
class Price:
    """The best price a tick offers one direction, tokenOut per tokenIn."""

    pair: str
    slot: int
    at: datetime
    value: Decimal


def tick_prices(tick: MarketTick) -> dict[Direction, Price]:
    """Both directions of a tick's pair at the best venue mid (the reference if no venue).

    Selling the base, the best mid is the highest; selling the quote, the lowest (inverted).
    The mid only says which orders *might* cross; the router's precise quote decides a fill.
    """
    mids = [venue.mid for venue in tick.venues] or [tick.reference]
    return {
        (tick.base, tick.quote): Price(tick.pair, tick.slot, tick.at, max(mids)),
        (tick.quote, tick.base): Price(tick.pair, tick.slot, tick.at, Decimal(1) / min(mids)),
    }


class TriggerCore:
    """Conditional orders by id, the book of the resting ones, and proposals in flight."""

    def __init__(self, producer: str = PRODUCER) -> None:
        self.producer = producer
        self.book = TriggerBook()
        # Conditional orders not final, packed (`pack`: sparse, values shared), by the order
        # id's int (44 bytes; a `UUID` key would be another 56): a million states at rest.
        self.orders: dict[int, tuple[object, ...]] = {}
        self.in_flight: dict[uuid.UUID, int] = {}  # order -> the sequence proposed
        self.prices: dict[Direction, Price] = {}
        self._values: dict[object, object] = {}  # one object per distinct shared value
        # Snipers (issue 18): the launches the chain's events describe, and the armed snipers
        # by the token they wait for (ids only; a stale id is skipped when looked at).
        self.launches: Launches = NO_LAUNCHES
        self.snipers: dict[str, dict[uuid.UUID, None]] = {}
        # The next rank of each launch (by pool): how many of its snipers have fired, here or
        # (seen on the log, or loaded at recovery) by another engine, so ranks are not reused.
        self.next_rank: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.orders)

    @property
    def resting(self) -> int:
        return len(self.book)

    def apply(
        self, envelope: Envelope, event_hash: str, now: datetime, *, propose: bool = True
    ) -> list[Envelope]:
        """Fold one record of the order log; a newly resting order is checked at the last price.

        Returns proposals (a resting order whose price the last tick already crossed, or whose
        expiry passed). Without `propose` (catching up on the log: later records may have
        decided the order already) the order only goes into the book; `on_clock` after the
        catch-up expires what is due."""
        order_id = envelope.order_id
        packed = self.orders.get(order_id.int)
        known = None if packed is None else unpack(packed)
        if known is None:
            event = envelope.payload
            if not (
                envelope.sequence == 1
                and isinstance(event, OrderSubmitted)
                and event.order_type.is_conditional
            ):
                return []  # a market order, or one that ended before this core's start
        elif envelope.sequence <= known.sequence:
            return []  # a duplicate, or a proposal that lost its sequence
        try:
            state = evolve(known, envelope, event_hash)
        except OutOfSequence:
            return []  # parked by the projector's dead letters; nothing to act on here
        proposed = self.in_flight.get(order_id)
        if proposed is not None and envelope.sequence >= proposed:
            del self.in_flight[order_id]  # the log has decided our proposal, one way or other
        if state.is_final:
            self.orders.pop(order_id.int, None)
            self.book.remove(order_id)
            self.in_flight.pop(order_id, None)
            return []
        self.orders[order_id.int] = pack(state, self._share, _kept_fields(state))
        self._count_rank(state)
        if not state.status.is_resting or order_id in self.in_flight:
            self.book.remove(order_id)
            return []
        return self._rest(state, now, cross=propose, expire=propose)

    def _share(self, value: object) -> object:
        """One object per distinct value many orders repeat (tokens, owner, prices, masks).

        Keyed by type and text: 150 == Decimal(150) and Decimal("1") == Decimal("1.0"),
        which one dict keyed by value would mix up."""
        return self._values.setdefault((type(value), str(value)), value)

    def load(self, state: OrderState) -> None:
        """Take a conditional order not final as the read model recorded it (recovery): no
        proposal yet, later records of the log are folded onto it with `apply`."""
        self.orders[state.order_id.int] = pack(state, self._share, _kept_fields(state))
        self._count_rank(state)
        if state.status.is_resting:
            self._rest(state, state.updated_at, cross=False, expire=False)

    def _count_rank(self, state: OrderState) -> None:
        """A fired sniper's rank is taken: the launch's next sniper ranks after it."""
        launch = state.launch
        if launch is not None and launch.rank is not None:
            taken = self.next_rank.get(launch.pool, 0)
            self.next_rank[launch.pool] = max(taken, launch.rank + 1)

    def _rest(
        self, state: OrderState, now: datetime, *, cross: bool = True, expire: bool = True
    ) -> list[Envelope]:
        if expire and state.expires_at is not None and state.expires_at <= now:
            return [self._propose(state, OrderExpired(expires_at=state.expires_at), now)]
        if state.order_type is OrderType.SNIPER:
            return self._arm(state, now, cross=cross)
        direction = (state.token_in, state.token_out)
        legs = legs_of(
            state.order_type,
            limit_price=state.limit_price,
            trigger_price=state.trigger_price,
            take_profit_price=state.take_profit_price,
            stop_loss_price=state.stop_loss_price,
            trailing_bps=state.trailing_bps,
        )
        self.book.add(state.order_id, direction, legs, state.expires_at)
        price = self.prices.get(direction)
        return [] if price is None or not cross else self._cross(direction, price, now)

    def _arm(self, state: OrderState, now: datetime, *, cross: bool) -> list[Envelope]:
        """Hold a sniper (its expiry in the book, no price legs) until its token's launch."""
        self.book.add(state.order_id, (state.token_in, state.token_out), (), state.expires_at)
        self.snipers.setdefault(state.token_out, {})[state.order_id] = None
        if not cross:
            return []
        decision = decide_snipe(state, self.launches.get(state.token_out), arriving=True)
        return [] if decision is None else [self._snipe(state, decision, now)]

    def _snipe(self, state: OrderState, decision: Fire | Fail, now: datetime) -> Envelope:
        self.snipers.get(state.token_out, {}).pop(state.order_id, None)
        if isinstance(decision, Fail):
            event: OrderEvent = OrderFailed(
                code=decision.code, error=decision.error, retryable=False, attempts=0
            )
        else:
            # Its rank in the launch: the snipers of a sweep are decided in submission order,
            # and one arriving after the launch ranks after every earlier one.
            rank = self.next_rank.get(decision.launch.pool, 0)
            self.next_rank[decision.launch.pool] = rank + 1
            event = OrderTriggered(
                leg="launch",
                pair=decision.pair,
                slot=decision.slot,
                price=decision.level,
                level=decision.level,
                launch=decision.launch.model_copy(update={"rank": rank}),
            )
        return self._propose(state, event, now)

    def on_chain_event(
        self, event: ChainEvent, now: datetime, *, propose: bool = True
    ) -> list[Envelope]:
        """Fold a chain event; proposals for the snipers of its token, in submission order."""
        self.launches = fold_chain(self.launches, event)
        return self.sweep_snipers(now, symbols=(event.symbol,)) if propose else []

    def sweep_snipers(
        self, now: datetime, symbols: tuple[str, ...] | None = None
    ) -> list[Envelope]:
        """Decide every armed sniper of these tokens (all: after recovery) on the launches."""
        proposals = []
        for symbol in symbols if symbols is not None else tuple(self.snipers):
            armed = self.snipers.get(symbol, {})
            states = []
            for order_id in list(armed):
                packed = self.orders.get(order_id.int)
                if packed is None or order_id in self.in_flight:
                    armed.pop(order_id, None)  # ended, or already proposed
                    continue
                states.append(unpack(packed))
            token = self.launches.get(symbol)
            for state in submission_order(states):
                decision = decide_snipe(state, token, arriving=False)
                if decision is not None:
                    proposals.append(self._snipe(state, decision, now))
        return proposals

    def on_tick(self, tick: MarketTick, now: datetime) -> list[Envelope]:
        """Proposals for every resting order the tick's prices cross."""
        proposals: list[Envelope] = []
        for direction, price in tick_prices(tick).items():
            self.prices[direction] = price
            proposals += self._cross(direction, price, now)
        return proposals

    def _cross(self, direction: Direction, price: Price, now: datetime) -> list[Envelope]:
        proposals = []
        for crossing in self.book.on_tick(direction, price.value):
            state = unpack(self.orders[crossing.order_id.int])
            if _tried_here(state, price):
                self._rest(state, now, cross=False, expire=False)  # back, for a later tick
                continue
            if state.expires_at is not None and state.expires_at <= now:
                # Expired before its expiry timer ran: it ends expired, never triggered late.
                proposals.append(
                    self._propose(state, OrderExpired(expires_at=state.expires_at), now)
                )
                continue
            proposals.append(
                self._propose(
                    state,
                    OrderTriggered(
                        leg=crossing.leg,
                        pair=price.pair,
                        slot=price.slot,
                        price=price.value,
                        level=crossing.level,
                    ),
                    now,
                )
            )
        return proposals

    def on_clock(self, now: datetime) -> list[Envelope]:
        """Proposals for every resting order whose expiry is at or before `now`."""
        proposals = []
        for order_id in self.book.due(now):
            state = unpack(self.orders[order_id.int])
            assert state.expires_at is not None
            proposals.append(self._propose(state, OrderExpired(expires_at=state.expires_at), now))
        return proposals

    def _propose(self, state: OrderState, event: OrderEvent, now: datetime) -> Envelope:
        self.book.remove(state.order_id)
        self.in_flight[state.order_id] = state.sequence + 1
        return Envelope.new(
            order_id=state.order_id,
            sequence=state.sequence + 1,
            producer=self.producer,
            prev_hash=state.last_hash,
            payload=event,
            occurred_at=now,
        )


# What the core reads of a state (to rest, cross, expire and propose) and what the fold
# needs to go on (status, sequence, hash): the rest (amounts, owner, times, the market
# path's details) is the router's and the read model's, and left out of the million held.
_KEPT_FIELDS = frozenset(
    {
        "order_id", "token_in", "token_out", "status", "sequence", "last_hash", "order_type",
        "limit_price", "trigger_price", "take_profit_price", "stop_loss_price", "trailing_bps",
        "expires_at", "triggered_leg", "triggered_slot", "triggered_price",
    }
)  # fmt: skip
# A sniper also needs its own fields and, for the submission order of a launch's
# snipers, when it was submitted; other orders do without them (48 bytes each a datetime).
_SNIPER_KEPT_FIELDS = _KEPT_FIELDS | {
    "created_at", "max_price", "checks", "only_at_launch", "auto_sell", "priority", "launch",
}  # fmt: skip


def _kept_fields(state: OrderState) -> frozenset[str]:
    return _SNIPER_KEPT_FIELDS if state.order_type is OrderType.SNIPER else _KEPT_FIELDS


def _tried_here(state: OrderState, price: Price) -> bool:
    """Whether the order was triggered at this price or better, recently, and not filled."""
    if state.triggered_leg is not None or state.triggered_slot is None:
        return False  # never triggered, or not put back since
    if state.triggered_price is None or price.value > state.triggered_price:
        return False
    return price.slot < state.triggered_slot + RETRIGGER_AFTER_SLOTS
