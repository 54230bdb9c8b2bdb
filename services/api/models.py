"""Request and response models of the public API: snake_case in Python, camelCase on the wire.

Money (amount, slippage, executedPrice, amountOut, fee) is a JSON *string* holding
an exact decimal ("10", "0.01", "1523.402113"), never a float. Times are UTC ISO 8601.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from services.api.messages import camelize


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class OrderAccepted(CamelModel):
    order_id: uuid.UUID
    status: Literal["pending", "open"] = "pending"  # open: a conditional order, resting
    message: str = "Order received and queued"
    websocket_url: str
    estimated_processing_time: str = "2-5 seconds"


JSON = "application/json"
_QUEUED = OrderAccepted.model_fields["message"].default
_PROCESSING_TIME = OrderAccepted.model_fields["estimated_processing_time"].default


def accepted_json(order_id: uuid.UUID, status: str = "pending", message: str = _QUEUED) -> bytes:
    """The 202's body: `OrderAccepted` as its model would serialize it, without building one
    (the model stays the documented response; a unit test holds the two equal)."""
    return orjson.dumps(
        {
            "orderId": str(order_id),
            "status": status,
            "message": message,
            "websocketUrl": f"/ws/{order_id}",
            "estimatedProcessingTime": _PROCESSING_TIME,
        }
    )


class ErrorBody(BaseModel):
    error: str
    message: str | None = None
    code: str | None = None
    field: str | None = None


class OrderOut(CamelModel):
    id: uuid.UUID
    token_in: str
    token_out: str
    amount: Decimal
    slippage: Decimal
    status: str
    selected_dex: str | None
    executed_price: Decimal | None
    amount_out: Decimal | None
    fee: Decimal | None
    tx_hash: str | None
    quotes: list[dict[str, Any]]
    route: dict[str, Any] | None
    error: str | None
    error_code: str | None
    attempts: int
    client_order_id: str | None
    created_at: datetime
    updated_at: datetime
    # Conditional orders (issue 17); a market order has the defaults.
    order_type: str = "market"
    limit_price: Decimal | None = None
    trigger_price: Decimal | None = None
    take_profit_price: Decimal | None = None
    stop_loss_price: Decimal | None = None
    trailing_bps: int | None = None
    expires_at: datetime | None = None
    allow_partial: bool = True
    triggered_leg: str | None = None
    triggered_slot: int | None = None
    triggered_price: Decimal | None = None
    filled_amount: Decimal = Decimal(0)
    # Sniper orders and the priority lane (issue 18, migration 0011); others have the defaults.
    max_price: Decimal | None = None
    checks: dict[str, Any] | None = None
    only_at_launch: bool = False
    auto_sell: dict[str, Any] | None = None
    priority: str = "normal"

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> OrderOut:
        return cls.model_validate(
            {
                **row,
                "quotes": camelize(row.get("quotes") or []),
                "route": camelize(row["route"]) if row.get("route") else None,
                "checks": camelize(row["checks"]) if row.get("checks") else None,
                "auto_sell": camelize(row["auto_sell"]) if row.get("auto_sell") else None,
            }
        )


class OrderList(CamelModel):
    orders: list[OrderOut]
    total: int
    next_cursor: str | None


class EventOut(CamelModel):
    event_id: uuid.UUID
    type: str
    version: int
    sequence: int
    status: str
    occurred_at: datetime
    producer: str
    payload: dict[str, Any]
    hash: str
    prev_hash: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> EventOut:
        return cls.model_validate({**row, "payload": camelize(row["payload"])})


class OrderEvents(CamelModel):
    order_id: uuid.UUID
    events: list[EventOut]


class DependencyHealth(CamelModel):
    status: Literal["up", "down"]
    latency_ms: int | None = None
    error: str | None = None
    url: str | None = Field(default=None, description="The chain's JSON-RPC endpoint")
    slot: int | None = Field(default=None, description="The chain's current slot")


class Health(CamelModel):
    status: Literal["ok", "degraded"]
    dependencies: dict[str, DependencyHealth]
    # Whether requests need a key: lets a client (the dashboard) ask for one before it is refused.
    auth: Literal["enabled", "disabled"]
    uptime: int = Field(description="Seconds since this process started")
    timestamp: datetime


class QuoteOut(CamelModel):
    """A route plan for a market order, computed now, placing nothing."""

    token_in: str
    token_out: str
    amount: Decimal
    slippage: Decimal
    amount_out: Decimal = Field(description="Expected amount out, net of fees and price impact")
    min_amount_out: Decimal = Field(description="The least a fill may give after slippage")
    price_impact: Decimal
    market_slot: int = Field(description="Chain slot of the pool state it was computed from")
    quoted_at: float = Field(description="Unix time of the quote")
    reason: str
    route: dict[str, Any] = Field(description="The plan: kind, legs (venue, share, in, out, fee)")
    quotes: list[dict[str, Any]] = Field(description="Each venue alone for the whole amount")
