"""Every order validation rule, its code, and the original system's check order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from schemas.events import OrderType
from services.api.validation import (
    ExpiryPolicy,
    Rejection,
    ValidOrder,
    order_id_for,
    parse_body,
    too_large,
    validate_amendment,
    validate_order,
)

VALID: dict[str, Any] = {
    "tokenIn": "SOL",
    "tokenOut": "USDC",
    "amount": Decimal(10),
    "slippage": Decimal("0.01"),
}


def check(body: dict[str, Any], key: str | None = None) -> ValidOrder | Rejection:
    return validate_order(
        body,
        default_slippage=Decimal("0.005"),
        max_amount=Decimal(1_000_000),
        idempotency_key=key,
    )


def rejected(body: dict[str, Any], key: str | None = None) -> tuple[str, str, str | None]:
    result = check(body, key)
    assert isinstance(result, Rejection), result
    assert result.http_status == 400
    return result.error, result.code, result.field


def test_a_valid_order_passes_with_canonical_decimals() -> None:
    result = check({**VALID, "amount": "1.50", "slippage": Decimal("1E-2")})
    assert result == ValidOrder("SOL", "USDC", Decimal("1.5"), Decimal("0.01"), None)
    assert str(result.amount) == "1.5"


def test_slippage_defaults_and_keys_are_carried() -> None:
    result = check({**VALID, "slippage": None, "clientOrderId": "abc"})
    assert isinstance(result, ValidOrder)
    assert result.slippage == Decimal("0.005")
    assert result.client_order_id == "abc"
    keyed = check(VALID, key="k-1")
    assert isinstance(keyed, ValidOrder)
    assert keyed.client_order_id == "k-1"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"tokenIn": None}, ("MISSING_TOKEN_IN", "ERR_001", "tokenIn")),
        ({"tokenIn": ""}, ("MISSING_TOKEN_IN", "ERR_001", "tokenIn")),
        ({"tokenOut": None}, ("MISSING_TOKEN_OUT", "ERR_002", "tokenOut")),
        ({"amount": None}, ("MISSING_AMOUNT", "ERR_003", "amount")),
        ({"amount": True}, ("INVALID_AMOUNT_TYPE", "ERR_004", "amount")),
        ({"amount": "NaN"}, ("INVALID_AMOUNT_TYPE", "ERR_004", "amount")),
        ({"amount": "Infinity"}, ("INVALID_AMOUNT_TYPE", "ERR_004", "amount")),
        ({"amount": "ten"}, ("INVALID_AMOUNT_TYPE", "ERR_004", "amount")),
        ({"amount": " 1"}, ("INVALID_AMOUNT_TYPE", "ERR_004", "amount")),
        ({"amount": ""}, ("INVALID_AMOUNT_TYPE", "ERR_004", "amount")),
        ({"amount": [1]}, ("INVALID_AMOUNT_TYPE", "ERR_004", "amount")),
        ({"amount": Decimal(0)}, ("INVALID_AMOUNT", "ERR_005", "amount")),
        ({"amount": Decimal(-5)}, ("INVALID_AMOUNT", "ERR_005", "amount")),
        ({"amount": "-0"}, ("INVALID_AMOUNT", "ERR_005", "amount")),
        ({"amount": Decimal("1000000.1")}, ("INVALID_AMOUNT", "ERR_005", "amount")),
        ({"amount": "1e999999"}, ("INVALID_AMOUNT", "ERR_005", "amount")),
        ({"amount": Decimal("0.0000000001")}, ("INVALID_AMOUNT", "ERR_005", "amount")),
        (
            {"tokenIn": "USDC", "tokenOut": "SOL", "amount": "1.0000001"},
            ("INVALID_AMOUNT", "ERR_005", "amount"),
        ),
        ({"amount": "1e-999999999"}, ("INVALID_AMOUNT", "ERR_005", "amount")),
        ({"amount": "1." + "0" * 150 + "1"}, ("INVALID_AMOUNT", "ERR_005", "amount")),
        ({"slippage": "high"}, ("INVALID_SLIPPAGE_TYPE", "ERR_006", "slippage")),
        ({"slippage": False}, ("INVALID_SLIPPAGE_TYPE", "ERR_006", "slippage")),
        ({"slippage": Decimal(2)}, ("INVALID_SLIPPAGE_RANGE", "ERR_007", "slippage")),
        ({"slippage": Decimal("-0.01")}, ("INVALID_SLIPPAGE_RANGE", "ERR_007", "slippage")),
        ({"tokenIn": "sol"}, ("INVALID_TOKEN_IN", "ERR_008", "tokenIn")),
        ({"tokenIn": "S"}, ("INVALID_TOKEN_IN", "ERR_008", "tokenIn")),
        ({"tokenIn": 12}, ("INVALID_TOKEN_IN", "ERR_008", "tokenIn")),
        ({"tokenIn": "DOGE"}, ("INVALID_TOKEN_IN", "ERR_008", "tokenIn")),
        ({"tokenOut": "USDC!"}, ("INVALID_TOKEN_OUT", "ERR_009", "tokenOut")),
        ({"tokenOut": "ABCDEFGHIJK"}, ("INVALID_TOKEN_OUT", "ERR_009", "tokenOut")),
        ({"tokenOut": "DOGE"}, ("INVALID_TOKEN_OUT", "ERR_009", "tokenOut")),
        ({"tokenOut": "SOL"}, ("SAME_TOKEN_SWAP", "ERR_010", "tokenOut")),
        ({"clientOrderId": ""}, ("INVALID_CLIENT_ORDER_ID", "ERR_011", "clientOrderId")),
        ({"clientOrderId": "x" * 65}, ("INVALID_CLIENT_ORDER_ID", "ERR_011", "clientOrderId")),
        ({"clientOrderId": 7}, ("INVALID_CLIENT_ORDER_ID", "ERR_011", "clientOrderId")),
    ],
)
def test_each_rule_has_its_code(changes: dict[str, Any], expected: tuple[str, str, str]) -> None:
    assert rejected({**VALID, **changes}) == expected


def test_missing_keys_count_as_missing() -> None:
    assert rejected({})[0] == "MISSING_TOKEN_IN"
    assert rejected({"tokenIn": "SOL"})[0] == "MISSING_TOKEN_OUT"
    assert rejected({"tokenIn": "SOL", "tokenOut": "USDC"})[0] == "MISSING_AMOUNT"


def test_the_idempotency_key_is_checked_and_must_agree() -> None:
    assert rejected(VALID, key="y" * 65)[1] == "ERR_011"
    assert rejected({**VALID, "clientOrderId": "a"}, key="b")[:2] == (
        "CONFLICTING_CLIENT_ORDER_ID",
        "ERR_012",
    )
    assert isinstance(check({**VALID, "clientOrderId": "a"}, key="a"), ValidOrder)


def test_checks_run_in_the_original_order() -> None:
    """Break every rule, then mend one at a time: each time the next rule is reported."""
    body: dict[str, Any] = {"amount": "x", "slippage": "x", "tokenIn": None, "tokenOut": None}
    steps: list[dict[str, Any]] = [
        {"tokenIn": "sol"},
        {"tokenOut": "sol"},
        {"amount": Decimal(-1)},
        {"amount": Decimal(1)},
        {"slippage": Decimal(5)},
        {"slippage": Decimal("0.1")},
        {"tokenIn": "SOL"},
        {"tokenOut": "SOL"},
        {"tokenOut": "USDC"},
    ]
    seen = [rejected(body)[0]]
    for step in steps:
        body.update(step)
        result = check(body)
        seen.append(result.error if isinstance(result, Rejection) else "OK")
    assert seen == [
        "MISSING_TOKEN_IN",
        "MISSING_TOKEN_OUT",
        "INVALID_AMOUNT_TYPE",
        "INVALID_AMOUNT",
        "INVALID_SLIPPAGE_TYPE",
        "INVALID_SLIPPAGE_RANGE",
        "INVALID_TOKEN_IN",
        "INVALID_TOKEN_OUT",
        "SAME_TOKEN_SWAP",
        "OK",
    ]


def test_the_original_invalid_order_reports_the_amount_first() -> None:
    """The Postman collection's invalid order: amount -5 and slippage 2."""
    body = parse_body(b'{"tokenIn": "SOL", "tokenOut": "USDC", "amount": -5, "slippage": 2}')
    assert isinstance(body, dict)
    assert rejected(body)[:2] == ("INVALID_AMOUNT", "ERR_005")


def test_bodies_parse_numbers_as_exact_decimals() -> None:
    body = parse_body(b'{"amount": 0.1, "n": 10}')
    assert body == {"amount": Decimal("0.1"), "n": Decimal(10)}


@pytest.mark.parametrize(
    ("raw", "error", "code"),
    [
        (b"", "MISSING_BODY", "ERR_020"),
        (b"  \n", "MISSING_BODY", "ERR_020"),
        (b"{", "INVALID_JSON", "ERR_021"),
        (b'{"amount": NaN}', "INVALID_JSON", "ERR_021"),
        (b'{"amount": Infinity}', "INVALID_JSON", "ERR_021"),
        (b"\xff\xfe", "INVALID_JSON", "ERR_021"),
        (b"[1]", "INVALID_BODY", "ERR_022"),
        (b'"SOL"', "INVALID_BODY", "ERR_022"),
        (b"null", "INVALID_BODY", "ERR_022"),
    ],
)
def test_body_level_problems(raw: bytes, error: str, code: str) -> None:
    result = parse_body(raw)
    assert isinstance(result, Rejection)
    assert (result.error, result.code, result.http_status) == (error, code, 400)


def test_too_large_is_a_413() -> None:
    result = too_large(16)
    assert (result.error, result.code, result.http_status) == ("PAYLOAD_TOO_LARGE", "ERR_023", 413)


def test_keyed_order_ids_are_stable_per_owner() -> None:
    assert order_id_for("k", None) == order_id_for("k", None)
    assert order_id_for("k", None) != order_id_for("k", "alice")
    assert order_id_for("k", None) != order_id_for("j", None)
    assert order_id_for(None, None).version == 4
    assert order_id_for("k", None).version == 5
    assert isinstance(order_id_for("k", None), uuid.UUID)


# --- Conditional orders (issue 17) ------------------------------------------------------------

NOW = datetime(2026, 3, 1, tzinfo=UTC)
POLICY = ExpiryPolicy(now=NOW, default=timedelta(days=7), maximum=timedelta(days=90))


def conditional(extra: dict[str, Any]) -> ValidOrder | Rejection:
    return validate_order(
        {**VALID, **extra},
        default_slippage=Decimal("0.005"),
        max_amount=Decimal(1_000_000),
        expiry=POLICY,
    )


@pytest.mark.parametrize(
    ("extra", "error", "code", "field"),
    [
        ({"orderType": "iceberg"}, "INVALID_ORDER_TYPE", "ERR_030", "orderType"),
        ({"orderType": 7}, "INVALID_ORDER_TYPE", "ERR_030", "orderType"),
        ({"orderType": "limit"}, "MISSING_LIMIT_PRICE", "ERR_031", "limitPrice"),
        ({"orderType": "limit", "limitPrice": "0"}, "INVALID_LIMIT_PRICE", "ERR_032", "limitPrice"),
        ({"orderType": "limit", "limitPrice": "x"}, "INVALID_LIMIT_PRICE", "ERR_032", "limitPrice"),
        ({"orderType": "limit", "limitPrice": "1e999999"}, "INVALID_LIMIT_PRICE", "ERR_032",
         "limitPrice"),
        ({"orderType": "limit", "limitPrice": "1e-99"}, "INVALID_LIMIT_PRICE", "ERR_032",
         "limitPrice"),
        ({"orderType": "takeProfit"}, "MISSING_LIMIT_PRICE", "ERR_031", "limitPrice"),
        ({"orderType": "stop"}, "MISSING_TRIGGER_PRICE", "ERR_033", "triggerPrice"),
        ({"orderType": "stop", "triggerPrice": "-1"}, "INVALID_TRIGGER_PRICE", "ERR_034",
         "triggerPrice"),
        ({"orderType": "oco", "stopLossPrice": "1"}, "MISSING_TAKE_PROFIT_PRICE", "ERR_035",
         "takeProfitPrice"),
        ({"orderType": "oco", "takeProfitPrice": "0", "stopLossPrice": "1"},
         "INVALID_TAKE_PROFIT_PRICE", "ERR_036", "takeProfitPrice"),
        ({"orderType": "oco", "takeProfitPrice": "2"}, "MISSING_STOP_LOSS_PRICE", "ERR_037",
         "stopLossPrice"),
        ({"orderType": "oco", "takeProfitPrice": "2", "stopLossPrice": "2"},
         "INVALID_STOP_LOSS_PRICE", "ERR_038", "stopLossPrice"),
        ({"orderType": "trailingStop"}, "INVALID_TRAILING_BPS", "ERR_039", "trailingBps"),
        ({"orderType": "trailingStop", "trailingBps": Decimal("1.5")}, "INVALID_TRAILING_BPS",
         "ERR_039", "trailingBps"),
        ({"orderType": "limit", "limitPrice": "1", "expiresAt": "tomorrow"},
         "INVALID_EXPIRES_AT", "ERR_040", "expiresAt"),
        ({"orderType": "limit", "limitPrice": "1", "expiresAt": "2026-03-02T00:00:00"},
         "INVALID_EXPIRES_AT", "ERR_040", "expiresAt"),  # no zone
        ({"orderType": "limit", "limitPrice": "1", "expiresAt": "2026-02-28T00:00:00Z"},
         "EXPIRES_AT_IN_PAST", "ERR_041", "expiresAt"),
        ({"orderType": "limit", "limitPrice": "1", "expiresAt": "2026-06-01T00:00:00Z"},
         "EXPIRES_AT_TOO_FAR", "ERR_042", "expiresAt"),
        ({"limitPrice": "1"}, "FIELD_NOT_ALLOWED", "ERR_044", "limitPrice"),
        ({"expiresAt": "2026-03-02T00:00:00Z"}, "FIELD_NOT_ALLOWED", "ERR_044", "expiresAt"),
        ({"orderType": "stop", "triggerPrice": "1", "limitPrice": "1"}, "FIELD_NOT_ALLOWED",
         "ERR_044", "limitPrice"),
        ({"orderType": "stop", "triggerPrice": "1", "postOnly": True}, "FIELD_NOT_ALLOWED",
         "ERR_044", "postOnly"),
        ({"orderType": "limit", "limitPrice": "1", "allowPartial": "yes"}, "INVALID_FLAG",
         "ERR_045", "allowPartial"),
    ],
)  # fmt: skip
def test_each_bad_conditional_field_has_its_code(
    extra: dict[str, Any], error: str, code: str, field: str
) -> None:
    result = conditional(extra)
    assert isinstance(result, Rejection), result
    assert (result.error, result.code, result.field) == (error, code, field)


def test_a_conditional_order_gets_its_prices_and_a_default_expiry() -> None:
    result = conditional({"orderType": "oco", "takeProfitPrice": "180.50",
                          "stopLossPrice": "1.2E2"})  # fmt: skip
    assert isinstance(result, ValidOrder)
    assert (result.take_profit_price, result.stop_loss_price) == (Decimal("180.5"), Decimal(120))
    assert result.expires_at == NOW + timedelta(days=7)
    market = conditional({})
    assert isinstance(market, ValidOrder)
    assert market.expires_at is None
    assert market.order_type.value == "market"


def test_without_an_expiry_policy_only_market_orders_pass() -> None:
    assert isinstance(check({**VALID, "orderType": "market"}), ValidOrder)
    assert rejected({**VALID, "orderType": "limit", "limitPrice": "1"})[0] == "INVALID_ORDER_TYPE"


def test_an_amendment_takes_the_prices_of_its_type_and_an_expiry() -> None:
    changes = validate_amendment({"limitPrice": "150"}, OrderType.LIMIT, POLICY)
    assert changes == {"limit_price": Decimal(150)}
    refused = validate_amendment({"triggerPrice": "150"}, OrderType.LIMIT, POLICY)
    assert isinstance(refused, Rejection)
    assert refused.error == "FIELD_NOT_ALLOWED"
    nothing = validate_amendment({}, OrderType.STOP, POLICY)
    assert isinstance(nothing, Rejection)
    assert nothing.error == "NOTHING_TO_AMEND"
