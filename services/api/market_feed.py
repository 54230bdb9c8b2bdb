"""The live side of the market sockets: one `market.ticks` consumer per API process.

Like the order feed (`feed.py`) it is a `TopicTail`: no group, committed records only; it
never waits on a socket (a full inbox drops that subscriber), and fans out per pair.
It also keeps each pair's most recent ticks in memory (`RECENT_TICKS`), starting a
little before the topic's end: a socket whose latest stored tick is behind the live
feed (the projector lagging) fills the gap from there, so ticks reach it in sequence
order, without a hole or a repeat.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.market import MarketTick, UndecodableMarketRecord, decode_market
from services.api.inbox import Inbox
from services.api.tail import TopicTail

RECENT_TICKS = 500  # per pair: over three minutes of 400 ms slots

Numbered = tuple[int, MarketTick]


# One socket's bounded inbox of (sequence, tick).
TickSubscription = Inbox[Numbered]


class MarketFeed(TopicTail):
    """Consumes `market.ticks` and hands each tick to its pair's subscribers."""

    def __init__(self, servers: str, topic: str, queue_size: int) -> None:
        super().__init__(servers, topic, name="oee-api-market-feed")
        self.queue_size = queue_size
        self._recent: dict[str, deque[Numbered]] = {}
        self._by_pair: dict[str, set[TickSubscription]] = {}

    async def position(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        """A little before the partitions' ends, so recent ticks are at hand."""
        if tps:
            begin = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                # A partition holds several pairs: a generous window of records.
                consumer.seek(tp, max(begin[tp], ends[tp] - 4 * RECENT_TICKS))

    def take(self, value: bytes | None) -> None:
        try:
            decoded = decode_market(value)
        except UndecodableMarketRecord:
            return  # the market projector dead-letters it
        if isinstance(decoded.payload, MarketTick):
            self.publish(decoded.sequence, decoded.payload)

    def publish(self, sequence: int, tick: MarketTick) -> None:
        recent = self._recent.setdefault(tick.pair, deque(maxlen=RECENT_TICKS))
        if recent and sequence <= recent[-1][0]:
            return  # a redelivery: already passed on
        recent.append((sequence, tick))
        for subscription in list(self._by_pair.get(tick.pair, ())):
            subscription.offer((sequence, tick))

    def recent(self, pair: str, after: int) -> list[Numbered]:
        """The pair's ticks in memory with a sequence above `after`, in order."""
        return [item for item in self._recent.get(pair, ()) if item[0] > after]

    def reaches_back_to(self, pair: str, sequence: int) -> bool:
        """Whether the ticks in memory go back to `sequence`: then every later tick the feed
        read is among them, and a jump after it is the topic's own."""
        recent = self._recent.get(pair)
        return bool(recent) and recent[0][0] <= sequence  # type: ignore[index]

    @contextlib.contextmanager
    def subscribed(self, pair: str) -> Iterator[tuple[TickSubscription, list[Numbered]]]:
        """Register for the pair's live ticks; also the ticks in memory at that moment.

        Both are taken without an await in between, so together they hold every tick
        the feed has seen and will see, each once or (at the seam) twice.
        """
        subscription = TickSubscription(self.queue_size)
        watchers = self._by_pair.setdefault(pair, set())
        watchers.add(subscription)
        try:
            yield subscription, list(self._recent.get(pair, ()))
        finally:
            watchers.discard(subscription)
            if not watchers:
                self._by_pair.pop(pair, None)
