"""WebSockets: `/ws/orders` (all live events) and `/ws/{orderId}` (one order, history then live)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, WebSocket

from services.api.deps import FeedDep, ReadModelDep
from services.api.listing import parse_list_query
from services.api.sockets import FirehoseFilter, serve_firehose, serve_order
from services.api.validation import Rejection

router = APIRouter(tags=["websocket"])


@router.websocket("/ws/orders")
async def all_orders(
    websocket: WebSocket,
    feed: FeedDep,
    read_model: ReadModelDep,
    status: Annotated[str | None, Query()] = None,
    token_in: Annotated[str | None, Query(alias="tokenIn")] = None,
    token_out: Annotated[str | None, Query(alias="tokenOut")] = None,
) -> None:
    """Live events of all orders; `status` may list several, comma-separated."""
    statuses = frozenset(status.split(",")) if status else None
    for one in statuses or {None}:
        checked = parse_list_query(status=one, token_in=token_in, token_out=token_out)
        if isinstance(checked, Rejection):
            await websocket.close(1008, checked.error)
            return
    await serve_firehose(websocket, FirehoseFilter(statuses, token_in, token_out), feed, read_model)


@router.websocket("/ws/{order_id}")
async def one_order(
    websocket: WebSocket, order_id: str, feed: FeedDep, read_model: ReadModelDep
) -> None:
    """Connected, the order's history, then its live events; closes 1000 after the final one."""
    await serve_order(websocket, order_id, feed, read_model)
