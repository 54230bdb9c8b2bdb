"""WebSockets: `/ws/orders` (all live events) and `/ws/{orderId}` (one order, history then live).

Both need a key (`orders:read`) sent as a header; a refused socket is accepted only
to receive an error message, then closed with 4401 (no or bad credential), 4403
(scope), 4429 (too many sockets for the key) or 1013 (credentials cannot be checked).
`/ws/{orderId}?since=N` resumes after sequence N (a reconnect, on any API process).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket

from services.api.auth.authenticator import AuthFailure
from services.api.auth.principal import Principal
from services.api.deps import FeedDep, ReadModelDep, SocketLimits, SocketPrincipal
from services.api.listing import parse_list_query, parse_since
from services.api.sockets import (
    CLOSE_FORBIDDEN,
    CLOSE_POLICY,
    CLOSE_TOO_MANY,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHORIZED,
    FirehoseFilter,
    refuse,
    serve_firehose,
    serve_order,
)
from services.api.validation import Rejection

router = APIRouter(tags=["websocket"])

_CLOSE_CODES = {401: CLOSE_UNAUTHORIZED, 403: CLOSE_FORBIDDEN}


@contextlib.asynccontextmanager
async def admitted(
    websocket: WebSocket, principal: Principal | AuthFailure, limits: SocketLimits
) -> AsyncIterator[Principal | None]:
    """The socket's principal while it is open; None when refused (and already closed)."""
    if isinstance(principal, AuthFailure):
        code = _CLOSE_CODES.get(principal.status, CLOSE_TRY_AGAIN)
        await refuse(websocket, principal.error, principal.message, code)
        yield None
        return
    if limits is not None and not limits.acquire(principal.limit_key):
        await refuse(
            websocket,
            "TOO_MANY_CONNECTIONS",
            f"At most {limits.limit} open sockets per key; close one first",
            CLOSE_TOO_MANY,
        )
        yield None
        return
    try:
        yield principal
    finally:
        if limits is not None:
            limits.release(principal.limit_key)


@router.websocket("/ws/orders")
async def all_orders(
    websocket: WebSocket,
    feed: FeedDep,
    read_model: ReadModelDep,
    principal: SocketPrincipal,
    limits: SocketLimits,
    status: Annotated[str | None, Query()] = None,
    token_in: Annotated[str | None, Query(alias="tokenIn")] = None,
    token_out: Annotated[str | None, Query(alias="tokenOut")] = None,
) -> None:
    """Live events of the caller's orders (an admin's: all); `status` may list several."""
    async with admitted(websocket, principal, limits) as admitted_as:
        if admitted_as is None:
            return
        statuses = frozenset(status.split(",")) if status else None
        for one in statuses or {None}:
            checked = parse_list_query(status=one, token_in=token_in, token_out=token_out)
            if isinstance(checked, Rejection):
                await websocket.close(1008, checked.error)
                return
        where = FirehoseFilter(statuses, token_in, token_out, admitted_as.visible_owner)
        await serve_firehose(websocket, where, feed, read_model)


@router.websocket("/ws/{order_id}")
async def one_order(
    websocket: WebSocket,
    order_id: str,
    feed: FeedDep,
    read_model: ReadModelDep,
    principal: SocketPrincipal,
    limits: SocketLimits,
    since: Annotated[str | None, Query()] = None,
) -> None:
    """Connected, the order's history, then its live events; closes 1000 after the final one.

    `since=N` (the last sequence the client received, on any API process) sends only the
    events after N: a client whose API process died resumes on another without a gap or
    a duplicate. A bad `since` gets an `INVALID_SINCE` error message and close 1008.
    """
    async with admitted(websocket, principal, limits) as admitted_as:
        if admitted_as is None:
            return
        after = parse_since(since)
        if isinstance(after, Rejection):
            await refuse(websocket, after.error, after.message, CLOSE_POLICY)
            return
        await serve_order(
            websocket, order_id, feed, read_model, admitted_as.visible_owner, since=after
        )
