"""WebSockets: `/ws/orders` (all live events) and `/ws/{orderId}` (one order, history then live).

Both need a key (`orders:read`) sent as a header; a refused socket is accepted only
to receive an error message, then closed with 4401 (no or bad credential), 4403
(scope), 4429 (too many sockets for the key) or 1013 (credentials cannot be checked).
`/ws/{orderId}?since=N` resumes after sequence N (a reconnect, on any API process).

They are served by `OrderSockets`, an ASGI layer in front of the FastAPI app, not by
FastAPI's router: a socket lives for minutes, and every frame of FastAPI's middleware
stack, routing and dependency solving that leads to a handler stays alive with it (about
10 KB a socket of the ~37 KB the app's objects cost, tracemalloc). WebSocket routes have
no OpenAPI operation, so nothing documented changes. `/ws/markets/{pair}` (few sockets)
stays a FastAPI route and shares `admitted`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, WebSocket
from starlette.types import Receive, Scope, Send

from services.api.auth.authenticator import AuthFailure
from services.api.auth.principal import Principal
from services.api.deps import SocketLimits, socket_limits, socket_principal
from services.api.listing import parse_list_query, parse_since
from services.api.runtime import ApiRuntime
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


async def all_orders(websocket: WebSocket, runtime: ApiRuntime) -> None:
    """Live events of the caller's orders (an admin's: all); `status` may list several."""
    principal = await socket_principal(runtime, websocket.headers)
    async with admitted(websocket, principal, socket_limits(runtime)) as admitted_as:
        if admitted_as is None:
            return
        query = websocket.query_params
        status, token_in, token_out = (
            query.get("status"),
            query.get("tokenIn"),
            query.get("tokenOut"),
        )
        statuses = frozenset(status.split(",")) if status else None
        for one in statuses or {None}:
            checked = parse_list_query(status=one, token_in=token_in, token_out=token_out)
            if isinstance(checked, Rejection):
                await websocket.close(1008, checked.error)
                return
        where = FirehoseFilter(statuses, token_in, token_out, admitted_as.visible_owner)
        await serve_firehose(websocket, where, runtime.feed, runtime.read_model)


async def one_order(websocket: WebSocket, runtime: ApiRuntime, order_id: str) -> None:
    """Connected, the order's history, then its live events; closes 1000 after the final one.

    `since=N` (the last sequence the client received, on any API process) sends only the
    events after N: a client whose API process died resumes on another without a gap or
    a duplicate. A bad `since` gets an `INVALID_SINCE` error message and close 1008.
    """
    principal = await socket_principal(runtime, websocket.headers)
    async with admitted(websocket, principal, socket_limits(runtime)) as admitted_as:
        if admitted_as is None:
            return
        after = parse_since(websocket.query_params.get("since"))
        if isinstance(after, Rejection):
            await refuse(websocket, after.error, after.message, CLOSE_POLICY)
            return
        await serve_order(
            websocket,
            order_id,
            runtime.feed,
            runtime.read_model,
            admitted_as.visible_owner,
            since=after,
        )


class OrderSockets:
    """ASGI: `/ws/orders` and `/ws/{orderId}` here, everything else (HTTP, lifespan,
    `/ws/markets/...`) to the FastAPI app."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            path: str = scope["path"]
            rest = path.removeprefix("/ws/")
            if rest != path and rest and "/" not in rest:
                websocket = WebSocket(scope, receive, send)
                runtime: ApiRuntime = self.app.state.runtime
                if rest == "orders":
                    await all_orders(websocket, runtime)
                else:
                    await one_order(websocket, runtime, rest)
                return
        await self.app(scope, receive, send)
