"""WebSocket sessions: an order's history then its live events, exactly once each, in order.

The subscription is registered before the history is read, so nothing that
happens in between is lost; `SequenceMerge` drops what both sides delivered and
holds what ran ahead; a hole (the projector lagging the live consumer) is filled
from PostgreSQL. Each socket runs its sender, a disconnect watcher and an
overflow watcher side by side, so a slow client only ever hurts itself.

Overload degrades latency, never subscribers (issue 20): a socket's history reads take
turns for a share of the read pool (`ReadModel.history_turn`) and, when PostgreSQL is
saturated or down, wait and ask again instead of closing; a socket of an order the feed saw
submitted, or one whose later events the projector has not stored yet, waits as long as
that takes. Only the client leaving, or its own queue overflowing, ends it early.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from schemas.envelope import Envelope, utc_now
from schemas.events import OrderSubmitted
from services.api.auth.principal import BEARER_SUBPROTOCOL
from services.api.feed import LiveFeed, Subscription
from services.api.merge import SequenceMerge
from services.api.messages import connected_message, error_message, event_message
from services.api.read_model import ReadModel, ReadModelUnavailable
from services.common.metrics import WEBSOCKET_CLIENTS

log = logging.getLogger(__name__)
T = TypeVar("T")

# The projector may not have stored an order yet right after its 202.
NOT_FOUND_GRACE_SECONDS = 2.0
# Polls of the read model while a socket waits for its order's rows start this often and
# back off to the longest pause: thousands of waiting sockets polling every 100 ms were what
# saturated the read pool (bench/load.py --rate 500: 561 of 1,003 sockets closed with 1013).
_POLL_SECONDS = 0.1
_POLL_MAX_SECONDS = 2.0
# Events written before the socket subscribed reach it only through the read model. While
# the live feed is quiet, look there again after these pauses (about 10 s in all), then
# rely on the feed alone: a few queries per socket, not a poll for its whole life.
_QUIET_RECHECKS = (0.2, 0.4, 0.8, 1.6, 3.2, 4.0)

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008  # a request the server will not serve as asked (a bad `since`)
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013
CLOSE_NOT_FOUND = 4404
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_MANY = 4429


class StreamEnded(Exception):
    """The stream cannot go on; tell the client why, then close with `close_code`."""

    def __init__(self, error: str, message: str, close_code: int) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.close_code = close_code


async def order_events(
    order_id: uuid.UUID,
    live: Subscription,
    read_model: ReadModel,
    *,
    grace: float = NOT_FOUND_GRACE_SECONDS,
    visible_to: str | None = None,
    seen: Callable[[], bool] = lambda: False,
    since: int = 0,
) -> AsyncIterator[Envelope]:
    """Yield the order's events since+1..n exactly once, ending after its final event.

    `since` is the last sequence a client already has (0: none), so a client whose
    API process died resumes on any other without a gap or a duplicate. The merge
    still starts at 1: the submission (sequence 1) names the owner, checked whatever
    `since` is, and only the yield skips what the client has.
    With `visible_to`, an order of any other owner ends the stream as not found.
    `seen()` says whether the live feed saw the order submitted (and visible to the
    caller): such an order is waited for past the not-found grace.
    """
    merge: SequenceMerge[Envelope] = SequenceMerge()
    arrived = await _history_or_first_live(order_id, live, read_model, grace, seen)
    rechecks = iter(_QUIET_RECHECKS)
    while True:
        for envelope in arrived:
            for ready in merge.offer(envelope.sequence, envelope):
                # The merge releases sequence 1, the submission naming the owner, first.
                if ready.sequence == 1 and not _owned(ready, visible_to):
                    raise StreamEnded(
                        "ORDER_NOT_FOUND", f"Order {order_id} not found", CLOSE_NOT_FOUND
                    )
                if ready.sequence > since:
                    yield ready
                if ready.status.is_final:
                    return
        if merge.gap:
            arrived = await _stored(order_id, merge.gap, read_model)
            continue
        pause = next(rechecks, None)
        if pause is None:
            arrived = [await live.get()]
            continue
        try:
            arrived = [await asyncio.wait_for(live.get(), pause)]
        except TimeoutError:
            # The order may have moved on before we subscribed, with the projector
            # behind at our first read: the merge drops whatever was sent already.
            arrived = await _read(read_model, order_id)


def _owned(submission: Envelope, visible_to: str | None) -> bool:
    if visible_to is None:
        return True
    event = submission.payload
    return isinstance(event, OrderSubmitted) and event.owner == visible_to


async def _history_or_first_live(
    order_id: uuid.UUID,
    live: Subscription,
    read_model: ReadModel,
    grace: float,
    seen: Callable[[], bool],
) -> list[Envelope]:
    """The stored history; if there is none yet, whatever shows up first within `grace`.

    A socket opened right after the 202 subscribes after the submission went by on
    the feed, so its first live event is the routing one; under load both it and the
    projector can be later than `grace`. An order the feed saw submitted is real: it is
    waited for as long as it takes instead of being reported as not found.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    pause = _POLL_SECONDS
    while True:
        history = await _read(read_model, order_id)
        if history:
            return history
        remaining = deadline - loop.time()
        if remaining <= 0 and seen():
            deadline = remaining = math.inf
        if remaining <= 0:
            raise StreamEnded("ORDER_NOT_FOUND", f"Order {order_id} not found", CLOSE_NOT_FOUND)
        try:
            return [await asyncio.wait_for(live.get(), min(remaining, pause))]
        except TimeoutError:
            pause = min(pause * 2, _POLL_MAX_SECONDS)


async def _stored(order_id: uuid.UUID, wanted: range, read_model: ReadModel) -> list[Envelope]:
    """Poll the read model until it holds every sequence in `wanted` (the live feed showed
    later ones, so these are on the log and the projector will store them)."""
    pause = _POLL_SECONDS
    while True:
        found = await _read(read_model, order_id, list(wanted))
        if len(found) == len(wanted):
            return found
        await asyncio.sleep(pause)
        pause = min(pause * 2, _POLL_MAX_SECONDS)


# Reads still running for sockets that have gone (see `detached`): held so they finish.
_DETACHED: set[asyncio.Task[Any]] = set()


async def detached(query: Coroutine[Any, Any, T]) -> T:
    """Await a read-model query in a task of its own, which a leaving client does not cancel.

    Why: cancelled while it waits for a pooled connection, psycopg_pool's waiting
    client keeps the CancelledError, whose traceback holds every frame up to the
    socket handler: a reference cycle that kept each such socket (transport,
    buffers, deflate state) alive until a full garbage collection, which a large
    heap rarely runs, so the API's memory grew with every socket closed during the
    not-found grace. Detached, the query ends by itself (within the pool timeout)
    and none of its frames refer to the socket; a query cancelled mid-statement
    also no longer costs a pooled connection.
    """
    task = asyncio.create_task(query)
    _DETACHED.add(task)
    task.add_done_callback(_forget)
    return await asyncio.shield(task)


def _forget(task: asyncio.Task[Any]) -> None:
    _DETACHED.discard(task)
    if not task.cancelled():
        task.exception()  # mark it retrieved: a caller still waiting has had it already


async def _read(
    read_model: ReadModel, order_id: uuid.UUID, sequences: list[int] | None = None
) -> list[Envelope]:
    """The order's stored events (only `sequences` if given), waiting for a turn and, while
    PostgreSQL is saturated or down, trying again with backoff: never giving up on the socket."""
    pause = _POLL_SECONDS
    while True:
        try:
            async with read_model.history_turn():
                return await detached(read_model.envelopes(order_id, sequences))
        except ReadModelUnavailable as exc:
            log.debug("history of %s unavailable (%s); trying again", order_id, exc)
        await asyncio.sleep(pause)
        pause = min(pause * 2, _POLL_MAX_SECONDS)


async def send(websocket: WebSocket, message: dict[str, Any]) -> None:
    await websocket.send_text(orjson.dumps(message).decode())


async def _until_disconnect(websocket: WebSocket) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


async def _close(websocket: WebSocket, code: int, reason: str = "") -> None:
    # The client may be gone or stuck; closing must not hang the handler.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code, reason), 1.0)


class Overflowing(Protocol):
    """A socket's inbox that gives up on a client too slow to keep up."""

    def on_overflow(self, callback: Callable[[], None]) -> None: ...


async def run_session(
    websocket: WebSocket,
    order_id: uuid.UUID | None,
    live: Overflowing,
    pump: Callable[[], Coroutine[Any, Any, None]],
    kind: str | None = None,
) -> None:
    """Run `pump` until it ends, the client leaves, or the client's queue overflows.

    The pump runs in the socket's own task, which the client's leaving or an overflow
    cancels: one task per socket fewer than running it beside a watcher (about 1 KB each,
    tracemalloc, with 5,000 sockets held by one process)."""
    clients = WEBSOCKET_CLIENTS.labels(kind or ("firehose" if order_id is None else "order"))
    clients.inc()
    session = asyncio.current_task()
    assert session is not None
    stopped_by: list[str] = []  # why the session was cancelled: "left" or "overflow"
    pumping = True

    def stop(reason: str) -> None:
        if pumping and not stopped_by:
            stopped_by.append(reason)
            session.cancel()

    def left(task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved: a broken connection is a client that left too
        stop("left")

    leaver = asyncio.create_task(_until_disconnect(websocket))
    leaver.add_done_callback(left)
    live.on_overflow(lambda: stop("overflow"))
    failure: BaseException | None = None
    try:
        await pump()
    except asyncio.CancelledError:
        if not stopped_by:
            raise  # the server is stopping: not ours to handle
        session.uncancel()
    except Exception as exc:
        failure = exc
    finally:
        pumping = False
        clients.dec()
        leaver.cancel()
    await asyncio.wait({leaver})  # its end, never its exception; our own cancel still propagates
    if stopped_by == ["left"] or isinstance(failure, WebSocketDisconnect):
        return  # the client left: nothing to close
    if stopped_by == ["overflow"]:
        await _close(websocket, CLOSE_TRY_AGAIN, "client too slow: update queue overflowed")
    elif isinstance(failure, StreamEnded):
        with contextlib.suppress(Exception):
            await send(
                websocket,
                error_message(
                    str(order_id) if order_id else None, failure.error, failure.message, utc_now()
                ),
            )
        await _close(websocket, failure.close_code, failure.error)
    elif failure is not None:
        log.error("socket for %s failed", order_id, exc_info=failure)
        await _close(websocket, CLOSE_INTERNAL, "internal error")
    else:
        await _close(websocket, CLOSE_NORMAL, "order finished")


async def accept(websocket: WebSocket) -> None:
    """Accept once, answering a browser's `bearer` subprotocol (its way to send a key)."""
    if websocket.client_state is not WebSocketState.CONNECTING:
        return
    offered = websocket.scope.get("subprotocols") or ()
    await websocket.accept(BEARER_SUBPROTOCOL if BEARER_SUBPROTOCOL in offered else None)


async def refuse(websocket: WebSocket, error: str, message: str, close_code: int) -> None:
    """Accept only to say why, then close: the client sees the reason, not a bare handshake 403."""
    await accept(websocket)
    with contextlib.suppress(Exception):
        await send(websocket, error_message(None, error, message, utc_now()))
    await _close(websocket, close_code, error)


async def serve_order(
    websocket: WebSocket,
    order_text: str,
    feed: LiveFeed,
    read_model: ReadModel,
    visible_to: str | None = None,
    since: int = 0,
) -> None:
    """`/ws/{orderId}`: connected, history, live events, close 1000 after the final one.

    With `since`, only the events after that sequence (a reconnecting client's resume).
    With `visible_to`, another owner's order is reported and closed exactly as a missing one.
    """
    await accept(websocket)
    try:
        order_id = uuid.UUID(order_text)
    except ValueError:
        await send(
            websocket, error_message(order_text, "ORDER_NOT_FOUND", "Not an order id", utc_now())
        )
        await _close(websocket, CLOSE_NOT_FOUND, "ORDER_NOT_FOUND")
        return
    await send(websocket, connected_message(order_id, utc_now()))
    with feed.subscribed(order_id) as live:

        def seen() -> bool:
            known, owner = feed.owner_of(order_id)
            return known and (visible_to is None or owner == visible_to)

        async def pump() -> None:
            events = order_events(
                order_id, live, read_model, visible_to=visible_to, seen=seen, since=since
            )
            async for envelope in events:
                await send(websocket, event_message(envelope))

        await run_session(websocket, order_id, live, pump)


@dataclass(frozen=True)
class FirehoseFilter:
    """Which live events a firehose socket wants; None means any."""

    statuses: frozenset[str] | None = None
    token_in: str | None = None
    token_out: str | None = None
    owner: str | None = None  # only this owner's orders (from the caller's key)


async def _wanted(
    envelope: Envelope, where: FirehoseFilter, feed: LiveFeed, read_model: ReadModel
) -> bool:
    if where.statuses is not None and envelope.status.value not in where.statuses:
        return False
    owner = where.owner
    if owner is not None and not await _owned_by(envelope.order_id, owner, feed, read_model):
        return False
    if where.token_in is None and where.token_out is None:
        return True
    pair = feed.pair_of(envelope.order_id)
    if pair is None:
        # Submitted before this process started and not routed since: ask the read model.
        with contextlib.suppress(ReadModelUnavailable):
            pair = await detached(read_model.pair(envelope.order_id))
        if pair is None:
            return False
        feed.remember_pair(envelope.order_id, pair)
    return where.token_in in (None, pair[0]) and where.token_out in (None, pair[1])


async def _owned_by(order_id: uuid.UUID, owner: str, feed: LiveFeed, read_model: ReadModel) -> bool:
    known, found = feed.owner_of(order_id)
    if not known:
        # Submitted before this process started: ask the read model; unknown there too
        # (the projector behind), the event is not shown: never someone else's by mistake.
        row = None
        with contextlib.suppress(ReadModelUnavailable):
            row = await detached(read_model.order(order_id))
        if row is None:
            return False
        found = row["owner"]
        feed.remember_owner(order_id, found)
    return found == owner


async def serve_firehose(
    websocket: WebSocket, where: FirehoseFilter, feed: LiveFeed, read_model: ReadModel
) -> None:
    """`/ws/orders`: every live event of every order, filtered; never ends by itself."""
    await accept(websocket)
    await send(websocket, connected_message(None, utc_now()))
    with feed.subscribed(None) as live:

        async def pump() -> None:
            while True:
                envelope = await live.get()
                if await _wanted(envelope, where, feed, read_model):
                    await send(websocket, event_message(envelope))

        await run_session(websocket, None, live, pump)
