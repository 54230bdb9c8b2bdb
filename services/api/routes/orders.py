"""`/api/orders`: submit an order onto the log, read orders and their events from the read model."""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, status

from services.api.deps import PublisherDep, Reader, ReadModelDep, SettingsDep, Submitter
from services.api.errors import ApiError
from services.api.listing import parse_list_query
from services.api.models import (
    ErrorBody,
    EventOut,
    OrderAccepted,
    OrderEvents,
    OrderList,
    OrderOut,
)
from services.api.publisher import submission
from services.api.validation import (
    Rejection,
    order_body_schema,
    order_id_for,
    parse_body,
    too_large,
    validate_order,
)
from services.common.metrics import ACCEPT, observe_stage

router = APIRouter(prefix="/api/orders", tags=["orders"])

_AUTH_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
}
_ERRORS: dict[int | str, dict[str, object]] = {400: {"model": ErrorBody}, **_AUTH_ERRORS}


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refusing more than `limit` bytes whatever Content-Length claims."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdecimal() and int(declared) > limit:
        raise ApiError.rejected(too_large(limit))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError.rejected(too_large(limit))
    return bytes(body)


@router.post(
    "/execute",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OrderAccepted,
    responses={
        **_ERRORS,
        413: {"model": ErrorBody},
        429: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": order_body_schema()}},
        }
    },
)
async def execute_order(
    request: Request,
    settings: SettingsDep,
    publisher: PublisherDep,
    principal: Submitter,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> OrderAccepted:
    """Accept a market order: answered only once its OrderSubmitted event is on the log.

    Checked in this order: credentials (401/403), the key's rate limit (429), the body (400/413).
    """
    began = time.perf_counter()
    body = parse_body(await read_limited(request, settings.max_body_bytes))
    order = (
        body
        if isinstance(body, Rejection)
        else validate_order(
            body,
            default_slippage=settings.default_slippage,
            max_amount=settings.max_order_amount,
            idempotency_key=idempotency_key,
        )
    )
    if isinstance(order, Rejection):
        raise ApiError.rejected(order)
    # The key's id (None with authentication disabled); keyed ids are derived per owner, so
    # two keys reusing a clientOrderId get two orders, and neither can learn of the other's.
    order_id = order_id_for(order.client_order_id, principal.owner)
    await publisher.publish(submission(order_id, order, principal.owner))
    observe_stage(ACCEPT, time.perf_counter() - began)
    return OrderAccepted(order_id=order_id, websocket_url=f"/ws/{order_id}")


@router.get("", response_model=OrderList, responses=_ERRORS)
async def list_orders(
    read_model: ReadModelDep,
    principal: Reader,
    status_: Annotated[str | None, Query(alias="status")] = None,
    token_in: Annotated[str | None, Query(alias="tokenIn")] = None,
    token_out: Annotated[str | None, Query(alias="tokenOut")] = None,
    created_from: Annotated[
        str | None, Query(alias="from", description="ISO 8601, inclusive")
    ] = None,
    created_to: Annotated[str | None, Query(alias="to", description="ISO 8601, exclusive")] = None,
    limit: Annotated[str | None, Query(description="1..200, default 20")] = None,
    cursor: Annotated[str | None, Query(description="nextCursor of the previous page")] = None,
) -> OrderList:
    """The caller's orders (an admin's: all) newest first, filtered, one keyset page at a time."""
    query = parse_list_query(status_, token_in, token_out, created_from, created_to, limit, cursor)
    if isinstance(query, Rejection):
        raise ApiError.rejected(query)
    where = dataclasses.replace(query.where, owner=principal.visible_owner)
    page = await read_model.orders(where, query.limit, query.after)
    return OrderList(
        orders=[OrderOut.from_row(row) for row in page.rows],
        total=page.total,
        next_cursor=page.next_cursor,
    )


def _order_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ApiError.not_found("ORDER_NOT_FOUND", f"Order {text} not found") from None


_NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"model": ErrorBody}, **_AUTH_ERRORS}


@router.get("/{order_id}", response_model=OrderOut, responses=_NOT_FOUND)
async def get_order(order_id: str, read_model: ReadModelDep, principal: Reader) -> OrderOut:
    """The order's current state as the projector last stored it."""
    row = await read_model.order(_order_id(order_id))
    # Another owner's order is answered exactly like a missing one: 404 confirms nothing.
    if row is None or not principal.may_see(row["owner"]):
        raise ApiError.not_found("ORDER_NOT_FOUND", f"Order {order_id} not found")
    return OrderOut.from_row(row)


@router.get("/{order_id}/events", response_model=OrderEvents, responses=_NOT_FOUND)
async def order_events(order_id: str, read_model: ReadModelDep, principal: Reader) -> OrderEvents:
    """Every stored event of the order, in sequence order: its audit trail."""
    found = _order_id(order_id)
    if not principal.is_admin:
        # The projector writes an order's row and its events in one transaction.
        row = await read_model.order(found)
        if row is None or not principal.may_see(row["owner"]):
            raise ApiError.not_found("ORDER_NOT_FOUND", f"Order {order_id} not found")
    rows = await read_model.event_rows(found)
    if not rows:
        raise ApiError.not_found("ORDER_NOT_FOUND", f"Order {order_id} not found")
    return OrderEvents(order_id=found, events=[EventOut.from_row(row) for row in rows])
