"""Follow one order over `/ws/{orderId}`: history first, then live, until the server closes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from services.client.http import ApiError, failure, unreachable, websocket_url

CLOSE_NORMAL = 1000
# Close codes the API uses to refuse or end a socket, as one line for the user.
_CLOSE_REASONS = {
    4401: "the API refused the credentials on the socket; pass --api-key or set OEE_API_KEY",
    4403: "the key lacks the scope to read orders",
    4404: "order not found",
    4429: "too many open sockets for this key",
    1013: "the API asked to reconnect later (it is catching up or overloaded)",
    1011: "the API failed while streaming",
}


def close_problem(code: int | None, reason: str = "") -> str | None:
    """None for a normal close; otherwise why the stream ended, in one line."""
    if code in (None, CLOSE_NORMAL):
        return None
    known = _CLOSE_REASONS.get(code)
    return f"{known or 'the socket closed'} (close code {code}{': ' + reason if reason else ''})"


async def follow(
    base_url: str,
    order_id: str,
    headers: Mapping[str, str],
    on_message: Callable[[dict[str, Any]], None],
    *,
    timeout: float,
) -> None:
    """Call `on_message` for every message of the order's socket; ApiError if it ends badly."""
    url = websocket_url(base_url, f"/ws/{order_id}")
    try:
        async with asyncio.timeout(timeout):
            async with connect(url, additional_headers=dict(headers), proxy=None) as socket:
                try:
                    async for raw in socket:
                        on_message(orjson.loads(raw))
                except ConnectionClosed:
                    pass  # reported below from the close frame
                code = socket.close_code
                reason = socket.close_reason or ""
    except InvalidStatus as exc:
        raise failure(exc.response.status_code, None, url) from None
    except (OSError, InvalidHandshake) as exc:
        raise unreachable(base_url, ConnectionRefusedError(str(exc))) from None
    except TimeoutError:
        raise ApiError(
            f"gave up watching {order_id} after {timeout:g} s; it may still finish"
            f" (`oee order show {order_id}`)",
            exit_code=2,
        ) from None
    problem = close_problem(code, reason)
    if problem:
        raise ApiError(problem, exit_code=2 if code in (1011, 1013) else 1)
