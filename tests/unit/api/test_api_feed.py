"""Fan-out never waits: a full subscriber is marked overflowed, the others still get everything."""

from __future__ import annotations

import uuid
from decimal import Decimal

from schemas.envelope import Envelope, genesis_hash
from schemas.events import OrderSubmitted
from services.api.feed import LiveFeed


def submitted(order_id: uuid.UUID, sequence: int = 1) -> Envelope:
    return Envelope.new(
        order_id=order_id,
        sequence=sequence,
        producer="api",
        prev_hash=genesis_hash(order_id),
        payload=OrderSubmitted(
            token_in="SOL", token_out="USDC", amount=Decimal(1), slippage=Decimal(0)
        ),
    )


async def test_overflow_drops_only_the_slow_subscriber() -> None:
    feed = LiveFeed("127.0.0.1:1", "orders", queue_size=2)  # never started: publish is pure fan-out
    watched, other = uuid.uuid4(), uuid.uuid4()
    with feed.subscribed(watched) as slow, feed.subscribed(None) as firehose:
        for sequence in range(1, 4):
            feed.publish(submitted(watched, sequence))
        assert slow.overflowed
        assert firehose.overflowed
        with feed.subscribed(watched) as fresh:
            feed.publish(submitted(other))
            assert fresh.get_nowait() is None  # another order's event
            feed.publish(submitted(watched, 4))
            assert fresh.get_nowait() is not None
            assert not fresh.overflowed
    assert feed.pair_of(watched) == ("SOL", "USDC")
    assert not feed._by_order
    assert not feed._firehose
    await feed.stop()


async def test_a_record_at_a_sequence_already_fanned_out_is_not_shown() -> None:
    """A duplicate, or a proposal that lost its sequence (a cancel racing a trigger)."""
    feed = LiveFeed("127.0.0.1:1", "orders", queue_size=10)
    order = uuid.uuid4()
    with feed.subscribed(order) as live:
        feed.publish(submitted(order, 1))
        feed.publish(submitted(order, 2))
        feed.publish(submitted(order, 2))  # the loser at sequence 2
        feed.publish(submitted(order, 1))
        assert [e.sequence for e in iter(live.get_nowait, None)] == [1, 2]
    await feed.stop()
