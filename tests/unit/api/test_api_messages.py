"""Event -> WebSocket message: the original shape, camelCase details, human messages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from schemas.envelope import Envelope, genesis_hash
from schemas.events import (
    FailureCode,
    OrderCompleted,
    OrderEvent,
    OrderFailed,
    OrderRetrying,
    OrderRouted,
    OrderSubmitted,
    TransactionBuilt,
    TransactionSubmitted,
    VenueQuote,
)
from services.api.messages import camelize, connected_message, error_message, event_message
from services.api.models import OrderAccepted, accepted_json
from tests.builders import leg, route_plan

ORDER = uuid.UUID("00000000-0000-4000-8000-000000000001")
AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
TX = "5" * 88
PLAN = route_plan(
    (leg(amount_in=10, amount_out="1500.5", fee="0.03"),),
    amount_out="1500.5",
    min_amount_out="1485.495",
    price_impact="0.001",
    market_slot=7,
    quoted_at=1.5,
)


def message(event: OrderEvent, sequence: int = 2) -> dict[str, object]:
    envelope = Envelope.new(
        order_id=ORDER,
        sequence=sequence,
        producer="router",
        prev_hash=genesis_hash(ORDER),
        payload=event,
        occurred_at=AT,
    )
    return event_message(envelope)


def test_every_message_has_the_original_fields_plus_sequence_and_type() -> None:
    got = message(
        OrderSubmitted(
            token_in="SOL", token_out="USDC", amount=Decimal(10), slippage=Decimal("0.01")
        ),
        sequence=1,
    )
    assert got == {
        "orderId": str(ORDER),
        "status": "pending",
        "message": "Order received and queued",
        "timestamp": "2025-01-02T03:04:05Z",
        "sequence": 1,
        "type": "OrderSubmitted",
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amount": "10",
        "slippage": "0.01",
        "clientOrderId": None,
        "owner": None,
    }


def test_routing_names_the_venues_and_carries_quotes_and_route() -> None:
    quote = VenueQuote(
        venue="RAYDIUM", amount_out=Decimal(1499), fee=Decimal("0.025"), price_impact=Decimal(0)
    )
    got = message(OrderRouted(attempt=1, quotes=(quote,), plan=PLAN, reason="best output"))
    assert got["status"] == "routing"
    assert got["message"] == (
        "Comparing prices on Raydium and Meteora: routing via Meteora (best output)"
    )
    assert got["selectedDex"] == "METEORA"
    assert got["route"] == got["plan"]
    assert got["quotes"] == [
        {"venue": "RAYDIUM", "amountOut": "1499", "fee": "0.025", "priceImpact": "0", "error": None}
    ]
    route = got["route"]
    assert isinstance(route, dict)
    assert route["minAmountOut"] == "1485.495"
    assert route["legs"][0]["tokenIn"] == "SOL"


@pytest.mark.parametrize(
    ("event", "status", "text"),
    [
        (
            TransactionBuilt(attempt=1, min_amount_out=Decimal(1)),
            "building",
            "Building transaction",
        ),
        (TransactionSubmitted(attempt=1, tx_hash=TX), "submitted", "Transaction submitted"),
        (
            OrderRetrying(
                attempt=1,
                code=FailureCode.VENUE_UNAVAILABLE,
                error="Raydium timed out",
                delay_seconds=Decimal("2.0"),
            ),
            "retrying",
            "Retrying in 2s after VENUE_UNAVAILABLE: Raydium timed out",
        ),
        (
            OrderCompleted(
                tx_hash=TX,
                selected_dex="METEORA",
                amount_in=Decimal(10),
                amount_out=Decimal("1500.5"),
                executed_price=Decimal("150.05"),
                fee=Decimal("0.03"),
            ),
            "completed",
            "Swap completed",
        ),
        (
            OrderFailed(
                code=FailureCode.SLIPPAGE_EXCEEDED,
                error="price moved 2%",
                retryable=False,
                attempts=3,
            ),
            "failed",
            "Order failed: price moved 2%",
        ),
    ],
)
def test_status_words_and_messages(event: OrderEvent, status: str, text: str) -> None:
    got = message(event)
    assert (got["status"], got["message"], got["type"]) == (status, text, event.TYPE)


def test_details_are_camel_case_and_money_stays_a_string() -> None:
    got = message(
        OrderCompleted(
            tx_hash=TX,
            selected_dex="RAYDIUM",
            amount_in=Decimal(10),
            amount_out=Decimal("1500.123456"),
            executed_price=Decimal("150.0123456"),
            fee=Decimal("0.03"),
        )
    )
    assert got["txHash"] == TX
    assert got["selectedDex"] == "RAYDIUM"
    assert got["amountOut"] == "1500.123456"
    assert got["executedPrice"] == "150.0123456"
    retry = message(
        OrderRetrying(
            attempt=2, code=FailureCode.VENUE_TIMEOUT, error="x", delay_seconds=Decimal(4)
        )
    )
    assert (retry["attempt"], retry["delaySeconds"], retry["code"]) == (2, "4", "VENUE_TIMEOUT")


def test_connected_and_error_messages() -> None:
    assert connected_message(ORDER, AT)["status"] == "connected"
    assert connected_message(ORDER, AT)["orderId"] == str(ORDER)
    assert connected_message(None, AT)["orderId"] is None
    assert error_message("x", "ORDER_NOT_FOUND", "nope", AT) == {
        "orderId": "x",
        "status": "error",
        "error": "ORDER_NOT_FOUND",
        "message": "nope",
        "timestamp": "2025-01-02T03:04:05Z",
    }


def test_camelize_is_recursive() -> None:
    assert camelize({"a_b": [{"c_d_e": 1}], "f": None}) == {"aB": [{"cDE": 1}], "f": None}


def test_the_202_body_is_the_documented_order_accepted_model_byte_for_byte() -> None:
    order_id = uuid.uuid4()
    for args, model in (
        ((order_id,), OrderAccepted(order_id=order_id, websocket_url=f"/ws/{order_id}")),
        (
            (order_id, "open", "limit order open until cancelled"),
            OrderAccepted(
                order_id=order_id,
                status="open",
                message="limit order open until cancelled",
                websocket_url=f"/ws/{order_id}",
            ),
        ),
    ):
        assert accepted_json(*args) == orjson.dumps(model.model_dump(mode="json", by_alias=True))
