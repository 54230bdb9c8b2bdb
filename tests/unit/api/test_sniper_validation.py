"""A sniper order's contract: its fields, their codes, the higher default slippage, a tokenOut
that need not exist yet (only its format is checked), and the priority field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from schemas import codec
from schemas.events import AutoSell, OrderSubmitted, OrderType, SniperChecks
from services.api.publisher import submission
from services.api.validation import (
    SNIPER_DEFAULT_SLIPPAGE,
    ExpiryPolicy,
    Rejection,
    ValidOrder,
    validate_amendment,
    validate_order,
)

NOW = datetime(2026, 3, 1, tzinfo=UTC)
POLICY = ExpiryPolicy(now=NOW, default=timedelta(days=7), maximum=timedelta(days=90))
SNIPE: dict[str, Any] = {
    "orderType": "sniper",
    "tokenIn": "SOL",
    "tokenOut": "MEME",
    "amount": Decimal(2),
    "maxPrice": "0.000001",
}


def snipe(**changes: Any) -> ValidOrder | Rejection:
    return validate_order(
        {**SNIPE, **changes},
        default_slippage=Decimal("0.005"),
        max_amount=Decimal(1_000_000),
        expiry=POLICY,
    )


def test_a_sniper_on_a_token_not_launched_yet_gets_the_defaults() -> None:
    order = snipe()
    assert isinstance(order, ValidOrder)
    assert order.order_type is OrderType.SNIPER
    assert order.token_out == "MEME"
    assert order.slippage == SNIPER_DEFAULT_SLIPPAGE > Decimal("0.005")
    assert order.checks == SniperChecks(mint_renounced=True, freeze_renounced=True)
    assert (order.only_at_launch, order.auto_sell, order.priority) == (False, None, "normal")
    assert order.expires_at == NOW + timedelta(days=7)


def test_every_sniper_field_is_carried_to_its_submission() -> None:
    order = snipe(
        slippage="0.3",
        checks={"mintRenounced": True, "freezeRenounced": False, "lpBurned": True,
                "minLiquidity": "50"},
        onlyAtLaunch=True,
        autoSell={"takeProfitPct": Decimal(100), "stopLossPct": "30"},
        priority="high",
        expiresAt="2026-03-01T01:00:00Z",
    )  # fmt: skip
    assert isinstance(order, ValidOrder)
    envelope = submission(uuid.uuid4(), order, "owner-1")
    event = envelope.payload
    assert isinstance(event, OrderSubmitted)
    assert event.slippage == Decimal("0.3")
    assert event.max_price == Decimal("0.000001")
    assert event.checks == SniperChecks(
        mint_renounced=True, freeze_renounced=False, lp_burned=True, min_liquidity=Decimal(50)
    )
    assert event.only_at_launch is True
    assert event.auto_sell == AutoSell(take_profit_pct=Decimal(100), stop_loss_pct=Decimal(30))
    assert event.priority == "high"
    assert envelope.status.value == "open"  # armed
    assert codec.decode(codec.encode(envelope)) == envelope  # through the log and back


@pytest.mark.parametrize(
    ("changes", "error", "code", "field"),
    [
        ({"tokenOut": "meme"}, "INVALID_TOKEN_OUT", "ERR_009", "tokenOut"),
        ({"tokenOut": "TOOLONGSYMBOL"}, "INVALID_TOKEN_OUT", "ERR_009", "tokenOut"),
        ({"tokenIn": "MEME"}, "INVALID_TOKEN_IN", "ERR_008", "tokenIn"),
        ({"maxPrice": None}, "MISSING_MAX_PRICE", "ERR_050", "maxPrice"),
        ({"maxPrice": "0"}, "INVALID_MAX_PRICE", "ERR_051", "maxPrice"),
        ({"maxPrice": "cheap"}, "INVALID_MAX_PRICE", "ERR_051", "maxPrice"),
        ({"checks": []}, "INVALID_CHECKS", "ERR_052", "checks"),
        ({"checks": {"mintRenounced": "yes"}}, "INVALID_CHECKS", "ERR_052", "checks"),
        ({"checks": {"honeypot": True}}, "INVALID_CHECKS", "ERR_052", "checks"),
        ({"checks": {"minLiquidity": "-1"}}, "INVALID_CHECKS", "ERR_052", "checks"),
        ({"onlyAtLaunch": 1}, "INVALID_FLAG", "ERR_045", "onlyAtLaunch"),
        ({"autoSell": {"takeProfitPct": 100}}, "INVALID_AUTO_SELL", "ERR_053", "autoSell"),
        ({"autoSell": {"takeProfitPct": 100, "stopLossPct": 100}}, "INVALID_AUTO_SELL", "ERR_053",
         "autoSell"),
        ({"autoSell": {"takeProfitPct": 0, "stopLossPct": 30}}, "INVALID_AUTO_SELL", "ERR_053",
         "autoSell"),
        ({"priority": "urgent"}, "INVALID_PRIORITY", "ERR_054", "priority"),
        ({"limitPrice": "1"}, "FIELD_NOT_ALLOWED", "ERR_044", "limitPrice"),
        ({"slippage": "1.5"}, "INVALID_SLIPPAGE_RANGE", "ERR_007", "slippage"),
        ({"expiresAt": "2026-02-28T00:00:00Z"}, "EXPIRES_AT_IN_PAST", "ERR_041", "expiresAt"),
    ],
)  # fmt: skip
def test_each_bad_sniper_field_has_its_code(
    changes: dict[str, Any], error: str, code: str, field: str
) -> None:
    result = snipe(**changes)
    assert isinstance(result, Rejection), result
    assert (result.error, result.code, result.field) == (error, code, field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"orderType": "limit", "limitPrice": "1", "checks": {}}, "checks"),
        ({"onlyAtLaunch": True}, "onlyAtLaunch"),
        ({"autoSell": {"takeProfitPct": "1", "stopLossPct": "1"}}, "autoSell"),
        ({"maxPrice": "1"}, "maxPrice"),
    ],
)
def test_sniper_fields_on_other_orders_are_not_allowed(body: dict[str, Any], field: str) -> None:
    result = validate_order(
        {"tokenIn": "SOL", "tokenOut": "USDC", "amount": Decimal(1), **body},
        default_slippage=Decimal("0.005"),
        max_amount=Decimal(1_000_000),
        expiry=POLICY,
    )
    assert isinstance(result, Rejection)
    assert (result.code, result.field) == ("ERR_044", field)


def test_other_orders_need_a_known_token_out_and_high_priority_is_for_market_and_sniper() -> None:
    unknown = validate_order(
        {"tokenIn": "SOL", "tokenOut": "MEME", "amount": Decimal(1)},
        default_slippage=Decimal("0.005"),
        max_amount=Decimal(1_000_000),
        expiry=POLICY,
    )
    assert isinstance(unknown, Rejection)
    assert unknown.code == "ERR_009"
    base = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": Decimal(1), "priority": "high"}
    market = validate_order(base, default_slippage=Decimal("0.005"), max_amount=Decimal(10))
    assert isinstance(market, ValidOrder)
    assert market.priority == "high"
    assert market.slippage == Decimal("0.005")  # the market default is unchanged
    limit = validate_order(
        {**base, "orderType": "limit", "limitPrice": "1"},
        default_slippage=Decimal("0.005"),
        max_amount=Decimal(10),
        expiry=POLICY,
    )
    assert isinstance(limit, Rejection)
    assert limit.code == "ERR_054"


def test_max_price_is_not_amendable() -> None:
    refused = validate_amendment({"maxPrice": "2"}, OrderType.SNIPER, POLICY)
    assert isinstance(refused, Rejection)
    assert refused.code == "ERR_044"
    later = validate_amendment({"expiresAt": "2026-03-02T00:00:00Z"}, OrderType.SNIPER, POLICY)
    assert later == {"expires_at": datetime(2026, 3, 2, tzinfo=UTC)}


def test_a_v2_submission_reads_as_v3_with_one_lane_and_no_sniper_fields() -> None:
    order = validate_order(
        {"tokenIn": "SOL", "tokenOut": "USDC", "amount": Decimal(1)},
        default_slippage=Decimal("0.005"),
        max_amount=Decimal(10),
    )
    assert isinstance(order, ValidOrder)
    wire = orjson.loads(codec.encode(submission(uuid.uuid4(), order, None)))
    for name in ("max_price", "checks", "only_at_launch", "auto_sell", "priority"):
        del wire["payload"][name]
    wire["version"] = 2
    event = codec.decode(orjson.dumps(wire)).payload
    assert isinstance(event, OrderSubmitted)
    assert (event.priority, event.max_price, event.checks, event.only_at_launch) == (
        "normal",
        None,
        None,
        False,
    )
