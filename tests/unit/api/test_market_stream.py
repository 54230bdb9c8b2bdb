"""The market socket's stream: latest tick first, then each tick once, in order, gaps filled."""

from __future__ import annotations

import pytest

from services.api.market_feed import MarketFeed, Numbered
from services.api.market_sockets import market_ticks
from services.api.sockets import StreamEnded
from tests.market_builders import tick


def feed_with(*sequences: int) -> MarketFeed:
    feed = MarketFeed("127.0.0.1:1", "market.ticks", 100)
    for sequence in sequences:
        feed.publish(sequence, tick(sequence))
    return feed


async def take(feed: MarketFeed, stored: Numbered | None, live: list[int], count: int) -> list[int]:
    with feed.subscribed("SOL-USDC") as (subscription, recent):
        for sequence in live:
            subscription.offer((sequence, tick(sequence)))

        async def latest() -> Numbered | None:
            return stored

        got: list[int] = []
        async for sequence, _ in market_ticks("SOL-USDC", subscription, recent, latest, feed):
            got.append(sequence)
            if len(got) == count:
                return got
    return got


async def test_the_newer_of_stored_and_fed_comes_first_then_no_repeat() -> None:
    assert await take(feed_with(), (3, tick(3)), [2, 3, 4, 4, 5], 3) == [3, 4, 5]
    assert await take(feed_with(4, 5), (3, tick(3)), [5, 6], 2) == [5, 6]


async def test_a_gap_is_filled_from_the_recent_ticks() -> None:
    feed = feed_with(1, 2, 3, 4, 5)  # the feed read 4 and 5 before this socket subscribed
    with feed.subscribed("SOL-USDC") as (subscription, _):
        subscription.offer((6, tick(6)))

        async def stored() -> Numbered | None:
            return (3, tick(3))

        got = []
        async for sequence, _ in market_ticks("SOL-USDC", subscription, [], stored, feed):
            got.append(sequence)
            if sequence == 6:
                break
    assert got == [3, 4, 5, 6]


async def test_a_gap_beyond_the_recent_ticks_ends_the_stream() -> None:
    # The feed (just started) holds nothing before 10 while the stored tick is 3.
    feed = feed_with()
    with feed.subscribed("SOL-USDC") as (subscription, recent):
        feed.publish(10, tick(10))

        async def stored() -> Numbered | None:
            return (3, tick(3))

        got: list[int] = []

        async def drain() -> None:
            async for sequence, _ in market_ticks("SOL-USDC", subscription, recent, stored, feed):
                got.append(sequence)

        with pytest.raises(StreamEnded, match="no longer at hand"):
            await drain()
    assert got == [3]


async def test_a_jump_in_the_topic_itself_is_passed_on() -> None:
    feed = feed_with(3)
    with feed.subscribed("SOL-USDC") as (subscription, recent):
        feed.publish(6, tick(6))  # the feed saw 3 then 6: the topic has nothing between

        async def stored() -> Numbered | None:
            return None

        got = []
        async for sequence, _ in market_ticks("SOL-USDC", subscription, recent, stored, feed):
            got.append(sequence)
            if sequence == 6:
                break
    assert got == [3, 6]
