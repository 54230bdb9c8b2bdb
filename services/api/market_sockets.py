"""`/ws/markets/{pair}`: the latest tick at once, then every tick live, in sequence order.

The subscription and the feed's recent ticks are taken together (no await between),
then the latest stored tick is read: the first message is the newer of the two. Live
ticks at or below what was sent are dropped; a jump is filled from the feed's recent
ticks. If those no longer reach back far enough the socket says so and closes 1013
rather than skip a tick silently; a jump the topic itself has is passed on (the
sequence numbers show it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket

from schemas.envelope import utc_now
from schemas.market import MarketTick
from services.api.market_feed import MarketFeed, Numbered, TickSubscription
from services.api.markets import tick_json, tick_text
from services.api.messages import iso
from services.api.read_model import ReadModelUnavailable
from services.api.sockets import CLOSE_TRY_AGAIN, StreamEnded, accept, run_session, send


async def market_ticks(
    pair: str,
    live: TickSubscription,
    recent: list[Numbered],
    stored: Callable[[], Awaitable[Numbered | None]],
    feed: MarketFeed,
) -> AsyncIterator[Numbered]:
    """Yield the pair's latest tick, then each later one once, in sequence order."""
    try:
        latest = await stored()
    except ReadModelUnavailable:
        latest = None  # the live feed still has something to show
    candidates = [item for item in (latest, recent[-1] if recent else None) if item is not None]
    first = max(candidates, key=lambda item: item[0]) if candidates else await live.get()
    yield first
    last = first[0]
    while True:
        sequence, tick = await live.get()
        if sequence <= last:
            continue
        if sequence > last + 1:
            for missed in feed.recent(pair, last):
                if missed[0] >= sequence:
                    break
                yield missed
                last = missed[0]
            if sequence > last + 1 and not feed.reaches_back_to(pair, last):
                raise StreamEnded(
                    "TICKS_UNAVAILABLE",
                    f"Ticks {last + 1}..{sequence - 1} of {pair} are no longer at hand; reconnect",
                    CLOSE_TRY_AGAIN,
                )
        yield sequence, tick
        last = sequence


def tick_message(sequence: int, tick: MarketTick) -> dict[str, Any]:
    return {"type": "tick", **tick_json(sequence, tick), "message": tick_text(tick)}


async def serve_market(
    websocket: WebSocket,
    pair: str,
    feed: MarketFeed,
    stored: Callable[[], Awaitable[Numbered | None]],
) -> None:
    await accept(websocket)
    await send(
        websocket,
        {
            "pair": pair,
            "status": "connected",
            "message": f"Connected; streaming {pair} ticks",
            "timestamp": iso(utc_now()),
        },
    )
    with feed.subscribed(pair) as (live, recent):

        async def pump() -> None:
            async for sequence, tick in market_ticks(pair, live, recent, stored, feed):
                await send(websocket, tick_message(sequence, tick))

        await run_session(websocket, None, live, pump, kind="market")
