"""`/api/orders`: submit an order onto the log, read orders and their events from the read model."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from schemas.events import OrderAmended, OrderCancelled, OrderType
from services.api.auth.authenticator import insufficient_scope
from services.api.auth.principal import ORDERS_PRIORITY
from services.api.decisions import Decision, OutcomeUnknown, propose_on_resting
from services.api.deps import (
    SECURITY_OPENAPI,
    PublisherDep,
    Reader,
    ReadModelDep,
    SettingsDep,
    Submitter,
    admit_submission,
    authenticate,
)
from services.api.errors import ApiError
from services.api.listing import parse_list_query
from services.api.models import (
    JSON,
    ErrorBody,
    EventOut,
    OrderAccepted,
    OrderEvents,
    OrderList,
    OrderOut,
    accepted_json,
)
from services.api.publisher import submission
from services.api.quotes import Quoter
from services.api.runtime import ApiRuntime
from services.api.validation import (
    ExpiryPolicy,
    Rejection,
    ValidOrder,
    order_body_schema,
    order_id_for,
    parse_body,
    too_large,
    validate_amendment,
    validate_order,
)
from services.common.metrics import ACCEPT, observe_stage
from services.common.settings import Settings
from services.venues.pool import Venue

router = APIRouter(prefix="/api/orders", tags=["orders"])

_AUTH_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
}
_ERRORS: dict[int | str, dict[str, object]] = {400: {"model": ErrorBody}, **_AUTH_ERRORS}


async def read_limited(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes whatever Content-Length claims
    (413 at once when it claims more). ClientDisconnect if the client went away mid-body."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdecimal() and int(declared) > limit:
        raise ApiError.rejected(too_large(limit))
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk: bytes = message.get("body", b"")
        body += chunk
        if len(body) > limit:
            raise ApiError.rejected(too_large(limit))
        if not message.get("more_body", False):
            return body


# The Idempotency-Key header as the route declared it when FastAPI read it for us.
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Idempotency-Key"},
}


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
        "security": SECURITY_OPENAPI,
        "parameters": [_IDEMPOTENCY_KEY],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": order_body_schema()}},
        },
    },
)
async def execute_order(request: Request) -> Response:
    """Accept an order: answered only once its OrderSubmitted event is on the log.

    Without `orderType` a market order (executed at once, `pending`); with a conditional type
    it rests (`open`) until the trigger engine sees its price crossed, or it expires.
    Checked in this order: credentials (401/403), the key's rate limit (429), the body (400/413).
    """
    runtime: ApiRuntime = request.app.state.runtime
    headers = request.headers
    accepted = await accept_order(
        runtime, headers, lambda limit: read_limited(request.receive, headers, limit)
    )
    return Response(accepted, status_code=status.HTTP_202_ACCEPTED, media_type=JSON)


async def accept_order(
    runtime: ApiRuntime,
    headers: Mapping[str, str],
    read_body: Callable[[int], Awaitable[bytes]],
) -> bytes:
    """The 202's body once the order's OrderSubmitted is on the log; else raises what
    `errors.error_response` answers (ApiError, LogUnavailable, ChainUnavailableError).

    Shared by the FastAPI route (which documents the operation) and `OrderIntake` (which
    serves it). The body is read only after the credentials and the rate limit passed.
    """
    settings = runtime.settings
    began = time.perf_counter()
    principal = await authenticate(runtime, headers)
    admit_submission(runtime, principal)
    body = parse_body(await read_body(settings.max_body_bytes))
    order = (
        body
        if isinstance(body, Rejection)
        else validate_order(
            body,
            default_slippage=settings.default_slippage,
            max_amount=settings.max_order_amount,
            idempotency_key=headers.get("idempotency-key"),
            expiry=expiry_policy(settings),
        )
    )
    if isinstance(order, Rejection):
        raise ApiError.rejected(order)
    if order.priority == "high" and not principal.allows(ORDERS_PRIORITY):
        failure = insufficient_scope(ORDERS_PRIORITY)
        raise ApiError(failure.status, failure.body(), failure.headers)
    if order.post_only:
        await _refuse_if_marketable(order, runtime.quoter)
    # The key's id (None with authentication disabled); keyed ids are derived per owner, so
    # two keys reusing a clientOrderId get two orders, and neither can learn of the other's.
    order_id = order_id_for(order.client_order_id, principal.owner)
    await runtime.publisher.publish(submission(order_id, order, principal.owner))
    observe_stage(ACCEPT, time.perf_counter() - began)
    if order.order_type.is_conditional:
        return accepted_json(
            order_id,
            "open",
            f"{order.order_type.value} order open until"
            f" {order.expires_at.isoformat() if order.expires_at else 'cancelled'}",
        )
    return accepted_json(order_id)


def expiry_policy(settings: Settings) -> ExpiryPolicy:
    return ExpiryPolicy(
        now=datetime.now(UTC),
        default=timedelta(seconds=settings.default_order_expiry_seconds),
        maximum=timedelta(seconds=settings.max_order_expiry_seconds),
    )


async def _refuse_if_marketable(order: ValidOrder, quoter: Quoter) -> None:
    """postOnly: a limit the market would fill now is refused (400), as a maker-only order is."""
    assert order.limit_price is not None
    quote = await quoter.quote(
        order.token_in, order.token_out, order.amount, order.slippage, list(Venue)
    )
    if quote.plan.amount_out >= order.amount * order.limit_price:
        raise ApiError.rejected(
            Rejection(
                "POST_ONLY_WOULD_FILL",
                f"limitPrice {order.limit_price} is marketable now (the best route gives"
                f" {(quote.plan.amount_out / order.amount).quantize(Decimal('1e-9'))})",
                "ERR_043",
                "limitPrice",
            )
        )


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


_DECIDED: dict[int | str, dict[str, object]] = {
    **_NOT_FOUND,
    400: {"model": ErrorBody},
    409: {"model": ErrorBody},
    503: {"model": ErrorBody},
}


async def _owned_row(read_model: ReadModelDep, principal: Submitter, text: str) -> dict[str, Any]:
    row = await read_model.order(_order_id(text))
    if row is None or not principal.may_see(row["owner"]):
        raise ApiError.not_found("ORDER_NOT_FOUND", f"Order {text} not found")
    return row


def _answer(decision: Decision, order_id: str, verb: str) -> OrderOut:
    if decision.applied and decision.row is not None:
        return OrderOut.from_row(decision.row)
    code = decision.code or "CONFLICT"
    if code == "ALREADY_CANCELLED":
        code = "ALREADY_FINAL"
    raise ApiError(
        409,
        {
            "error": code,
            "message": f"Order {order_id} is {decision.status}: it can no longer be {verb}",
            "code": code,
            "field": None,
        },
    )


async def _decide(
    read_model: ReadModelDep,
    publisher: PublisherDep,
    settings: SettingsDep,
    order_id: uuid.UUID,
    event: OrderCancelled | OrderAmended,
) -> Decision:
    try:
        return await propose_on_resting(
            read_model, publisher, order_id, event, timeout=settings.produce_timeout_seconds
        )
    except OutcomeUnknown as exc:
        raise ApiError(
            503,
            {"error": "OUTCOME_PENDING", "message": f"{exc}; GET the order for the outcome"},
            {"Retry-After": "1"},
        ) from None


@router.delete("/{order_id}", response_model=OrderOut, responses=_DECIDED)
async def cancel_order(
    order_id: str,
    read_model: ReadModelDep,
    publisher: PublisherDep,
    settings: SettingsDep,
    principal: Submitter,
) -> OrderOut:
    """Cancel a resting order: 200 with the cancelled order, or 409 ALREADY_TRIGGERED /
    ALREADY_FINAL, as the order log decided (a racing trigger and this cancel end one way)."""
    row = await _owned_row(read_model, principal, order_id)
    decision = await _decide(
        read_model, publisher, settings, row["id"], OrderCancelled(by=principal.owner)
    )
    if decision.code == "ALREADY_CANCELLED" and decision.row is not None:
        return OrderOut.from_row(decision.row)  # cancelling twice: the same answer
    return _answer(decision, order_id, "cancelled")


@router.patch(
    "/{order_id}",
    response_model=OrderOut,
    responses=_DECIDED,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            name: order_body_schema()["properties"][name]
                            for name in (
                                "limitPrice",
                                "triggerPrice",
                                "takeProfitPrice",
                                "stopLossPrice",
                                "trailingBps",
                                "expiresAt",
                            )
                        },
                    }
                }
            },
        }
    },
)
async def amend_order(
    order_id: str,
    request: Request,
    read_model: ReadModelDep,
    publisher: PublisherDep,
    settings: SettingsDep,
    principal: Submitter,
) -> OrderOut:
    """Change a resting order's prices (those its type has) or expiry, in place."""
    row = await _owned_row(read_model, principal, order_id)
    body = parse_body(await read_limited(request.receive, request.headers, settings.max_body_bytes))
    if isinstance(body, Rejection):
        raise ApiError.rejected(body)
    changes = validate_amendment(body, OrderType(row["order_type"]), expiry_policy(settings))
    if isinstance(changes, Rejection):
        raise ApiError.rejected(changes)
    decision = await _decide(
        read_model, publisher, settings, row["id"], OrderAmended(**changes, by=principal.owner)
    )
    return _answer(decision, order_id, "amended")
