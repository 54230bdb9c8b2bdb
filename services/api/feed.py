"""The live side of the sockets: one log consumer per API process, fanned out to bounded queues.

The consumer (a `TopicTail`: no group, committed records only) starts at the end of the
log: history comes from the read model. It never waits on a socket: a subscriber whose
queue is full is marked overflowed and dropped, and its socket closes with 1013.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import OrderedDict
from collections.abc import Iterator

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.codec import UndecodableEvent, decode
from schemas.envelope import Envelope
from schemas.events import OrderRouted, OrderSubmitted
from services.api.inbox import Inbox
from services.api.tail import TopicTail
from services.common.kafka import batch_fetches_while_busy

Pair = tuple[str, str]
# How many orders' pairs the firehose filter remembers without asking PostgreSQL.
_PAIR_CACHE_SIZE = 100_000


# One socket's bounded inbox of envelopes.
Subscription = Inbox[Envelope]


class LiveFeed(TopicTail):
    """Consumes the orders topic from its end and hands each event to the order's subscribers."""

    def __init__(self, servers: str, topic: str, queue_size: int) -> None:
        super().__init__(servers, topic, name="oee-api-feed")
        self.queue_size = queue_size
        self._by_order: dict[uuid.UUID, set[Subscription]] = {}
        self._firehose: set[Subscription] = set()
        self._pairs: OrderedDict[uuid.UUID, Pair] = OrderedDict()
        # Whose each order is (None: the anonymous owner), for the firehose's ownership filter.
        self._owners: OrderedDict[uuid.UUID, str | None] = OrderedDict()
        # The last sequence fanned out per order: a record at or below it is a duplicate, or a
        # proposal that lost its sequence to another writer (a cancel racing a trigger), which
        # every reader drops; sockets never show it.
        self._sequences: OrderedDict[uuid.UUID, int] = OrderedDict()

    async def position(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        """Pin each position to the current end: every event written after start() is seen."""
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)  # resolve "end" now, not at the first fetch
        batch_fetches_while_busy(consumer)

    def take(self, value: bytes | None) -> None:
        try:
            envelope = decode(value)
        except UndecodableEvent:
            return  # the projector dead-letters it; sockets have nothing to show
        self.publish(envelope)

    def publish(self, envelope: Envelope) -> None:
        """Fan one event out to the order's subscribers and the firehose."""
        last = self._sequences.get(envelope.order_id)
        if last is not None and envelope.sequence <= last:
            return
        self._sequences[envelope.order_id] = envelope.sequence
        self._sequences.move_to_end(envelope.order_id)
        if len(self._sequences) > _PAIR_CACHE_SIZE:
            self._sequences.popitem(last=False)
        self._remember_pair(envelope)
        for subscription in list(self._by_order.get(envelope.order_id, ())):
            subscription.offer(envelope)
        for subscription in list(self._firehose):
            subscription.offer(envelope)

    def _remember_pair(self, envelope: Envelope) -> None:
        event = envelope.payload
        if isinstance(event, OrderSubmitted):
            pair = (event.token_in, event.token_out)
            self.remember_owner(envelope.order_id, event.owner)
        elif isinstance(event, OrderRouted) and event.plan.legs:
            pair = (event.plan.legs[0].token_in, event.plan.legs[-1].token_out)
        else:
            return
        self.remember_pair(envelope.order_id, pair)

    def remember_pair(self, order_id: uuid.UUID, pair: Pair) -> None:
        self._pairs[order_id] = pair
        self._pairs.move_to_end(order_id)
        if len(self._pairs) > _PAIR_CACHE_SIZE:
            self._pairs.popitem(last=False)

    def pair_of(self, order_id: uuid.UUID) -> Pair | None:
        return self._pairs.get(order_id)

    def remember_owner(self, order_id: uuid.UUID, owner: str | None) -> None:
        self._owners[order_id] = owner
        self._owners.move_to_end(order_id)
        if len(self._owners) > _PAIR_CACHE_SIZE:
            self._owners.popitem(last=False)

    def owner_of(self, order_id: uuid.UUID) -> tuple[bool, str | None]:
        """(known, owner): whether this process saw the order's submission, and its owner."""
        if order_id in self._owners:
            return True, self._owners[order_id]
        return False, None

    @contextlib.contextmanager
    def subscribed(self, order_id: uuid.UUID | None) -> Iterator[Subscription]:
        """Buffer an order's events (every event, for None) from now until the block ends."""
        subscription = Subscription(self.queue_size)
        watchers = (
            self._firehose if order_id is None else self._by_order.setdefault(order_id, set())
        )
        watchers.add(subscription)
        try:
            yield subscription
        finally:
            watchers.discard(subscription)
            if order_id is not None and not watchers:
                self._by_order.pop(order_id, None)
