"""Pure request validation: a raw order body -> a validated order, or a typed rejection.

The field checks keep the original system's error names and its check order, so a
client that relied on which error comes first still sees the same one:

    ERR_001 MISSING_TOKEN_IN        tokenIn absent, null or ""
    ERR_002 MISSING_TOKEN_OUT       tokenOut absent, null or ""
    ERR_003 MISSING_AMOUNT          amount absent or null
    ERR_004 INVALID_AMOUNT_TYPE     not a JSON number or decimal string (true, "NaN", "1e", ...)
    ERR_005 INVALID_AMOUNT          <= 0, above max_order_amount, or finer than tokenIn's base unit
    ERR_006 INVALID_SLIPPAGE_TYPE   slippage present but not a number / decimal string
    ERR_007 INVALID_SLIPPAGE_RANGE  slippage outside [0, 1]
    ERR_008 INVALID_TOKEN_IN        not ^[A-Z0-9]{2,10}$, or a token the engine does not trade
    ERR_009 INVALID_TOKEN_OUT       same, for tokenOut
    ERR_010 SAME_TOKEN_SWAP         tokenIn == tokenOut
    ERR_011 INVALID_CLIENT_ORDER_ID clientOrderId / Idempotency-Key not a 1..64 character string
    ERR_012 CONFLICTING_CLIENT_ORDER_ID  clientOrderId and Idempotency-Key both given and different

Conditional orders (issue 17), checked after the fields above; nothing is written for any:

    ERR_030 INVALID_ORDER_TYPE      orderType not one of market, limit, stop, takeProfit, oco,
                                    trailingStop
    ERR_031 MISSING_LIMIT_PRICE     limit / takeProfit without limitPrice
    ERR_032 INVALID_LIMIT_PRICE     limitPrice not a number, <= 0, above 1e12 or finer than 1e-18
                                    (the same bounds for every price below)
    ERR_033 MISSING_TRIGGER_PRICE   stop without triggerPrice
    ERR_034 INVALID_TRIGGER_PRICE   triggerPrice not a number, or <= 0
    ERR_035 MISSING_TAKE_PROFIT_PRICE  oco without takeProfitPrice
    ERR_036 INVALID_TAKE_PROFIT_PRICE  takeProfitPrice not a number, or <= 0
    ERR_037 MISSING_STOP_LOSS_PRICE    oco without stopLossPrice
    ERR_038 INVALID_STOP_LOSS_PRICE    stopLossPrice not a number, <= 0, or >= takeProfitPrice
    ERR_039 INVALID_TRAILING_BPS    trailingStop without trailingBps, or not an integer in 1..9999
    ERR_040 INVALID_EXPIRES_AT      expiresAt not an ISO 8601 time with a zone
    ERR_041 EXPIRES_AT_IN_PAST      expiresAt at or before now
    ERR_042 EXPIRES_AT_TOO_FAR      expiresAt after now + max_order_expiry (90 days by default;
                                    without expiresAt a conditional order expires after
                                    default_order_expiry, 7 days)
    ERR_043 POST_ONLY_WOULD_FILL    postOnly and the limit is marketable now (checked by the
                                    route against a live quote)
    ERR_044 FIELD_NOT_ALLOWED       a price, expiresAt, allowPartial or postOnly the order type
                                    does not take (e.g. limitPrice on a market order)
    ERR_045 INVALID_FLAG            allowPartial / postOnly not a boolean
    ERR_046 NOTHING_TO_AMEND        PATCH /api/orders/{id} without a price or expiresAt

Sniper orders and the priority lane (issue 18), checked with the conditional fields:

    ERR_050 MISSING_MAX_PRICE       sniper without maxPrice (tokenIn paid per tokenOut, at most)
    ERR_051 INVALID_MAX_PRICE       maxPrice not a number, <= 0, above 1e12 or finer than 1e-18
    ERR_052 INVALID_CHECKS          checks not an object of mintRenounced / freezeRenounced /
                                    lpBurned (booleans) and minLiquidity (a number >= 0)
    ERR_053 INVALID_AUTO_SELL       autoSell not {takeProfitPct > 0, stopLossPct in (0, 100)}
    ERR_054 INVALID_PRIORITY        priority not "normal" or "high", or "high" on an order type
                                    other than market and sniper
    A sniper's tokenOut may name a token not launched yet: only its format is checked (ERR_009).
    Its slippage defaults to SNIPER_DEFAULT_SLIPPAGE (15 %): launch prices move in a slot.

Body-level problems are found before any field is looked at:

    ERR_020 MISSING_BODY            no body at all
    ERR_021 INVALID_JSON            not JSON (NaN/Infinity literals included: they are not JSON)
    ERR_022 INVALID_BODY            JSON, but not an object
    ERR_023 PAYLOAD_TOO_LARGE       more than max_body_bytes (HTTP 413)

Numbers are parsed straight into `Decimal`; a float never exists on this path.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from schemas.events import CONDITIONAL_FIELDS, AutoSell, OrderType, Priority, SniperChecks
from services.domain.tokens import UnknownTokenError, get_token, to_base_units

TOKEN_PATTERN = re.compile(r"^[A-Z0-9]{2,10}$")
# A plain decimal literal: refuses "NaN", "Infinity", " 1", "1_000", which Decimal() takes.
_DECIMAL_STRING = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
MAX_CLIENT_ORDER_ID = 64
# A snipe buys into the first open slot of a new pool, where prices move several percent per
# buyer (1,000 snipers of one launch share one constant product): the market default (1 %) would
# fail nearly all of them. maxPrice stays the hard guard.
SNIPER_DEFAULT_SLIPPAGE = Decimal("0.15")
_CHECK_FLAGS = {"mintRenounced": "mint_renounced", "freezeRenounced": "freeze_renounced",
                "lpBurned": "lp_burned"}  # fmt: skip


def order_body_schema() -> dict[str, Any]:
    """The order body as JSON Schema, for the API docs, from the same rules `validate_order`
    applies (so the documentation cannot drift from the checks)."""
    decimal = {"type": ["number", "string"], "pattern": _DECIMAL_STRING.pattern}
    token = {"type": "string", "pattern": TOKEN_PATTERN.pattern}
    return {
        "type": "object",
        "required": ["tokenIn", "tokenOut", "amount"],
        "properties": {
            "tokenIn": {**token, "examples": ["SOL"], "description": "a token this engine trades"},
            "tokenOut": {**token, "examples": ["USDC"]},
            "amount": {
                **decimal,
                "examples": [10],
                "description": "whole tokens, > 0, at most tokenIn's decimals"
                " (a JSON number or a decimal string)",
            },
            "slippage": {**decimal, "examples": [0.01], "description": "a fraction in [0, 1]"},
            "clientOrderId": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_CLIENT_ORDER_ID,
                "description": "idempotency key: same key, same order",
            },
            "orderType": {
                "type": "string",
                "enum": [t.value for t in OrderType],
                "description": "market (default) executes now; the others rest until their price"
                " (tokenOut per tokenIn) is crossed or they expire",
            },
            "limitPrice": {**decimal, "description": "limit / takeProfit: fill at or above it"},
            "triggerPrice": {**decimal, "description": "stop: a market order once at or below"},
            "takeProfitPrice": {**decimal, "description": "oco: the limit leg"},
            "stopLossPrice": {**decimal, "description": "oco: the stop leg, below takeProfitPrice"},
            "trailingBps": {"type": "integer", "minimum": 1, "maximum": 9999},
            "expiresAt": {
                "type": "string",
                "format": "date-time",
                "description": "conditional orders: default now + 7 days, at most now + 90 days",
            },
            "allowPartial": {"type": "boolean", "description": "limit: fill what the limit allows"},
            "postOnly": {"type": "boolean", "description": "refuse a limit marketable now"},
            "maxPrice": {**decimal, "description": "sniper: the most tokenIn paid per tokenOut"},
            "checks": {
                "type": "object",
                "description": "sniper: rug checks (default: mint and freeze renounced)",
                "properties": {
                    "mintRenounced": {"type": "boolean"},
                    "freezeRenounced": {"type": "boolean"},
                    "lpBurned": {"type": "boolean"},
                    "minLiquidity": {**decimal, "description": "whole quote tokens"},
                },
                "additionalProperties": False,
            },
            "onlyAtLaunch": {"type": "boolean", "description": "sniper: never buy a pool open"},
            "autoSell": {
                "type": "object",
                "required": ["takeProfitPct", "stopLossPct"],
                "properties": {"takeProfitPct": decimal, "stopLossPct": decimal},
                "description": "sniper: an OCO selling the fill, in % of the fill price",
            },
            "priority": {"type": "string", "enum": ["normal", "high"]},
        },
    }


# Keyed order ids are uuid5 in this namespace, so a retried or raced submission maps to one order.
_ORDER_ID_NAMESPACE = uuid.UUID("3b0c7f52-0d5e-4f8e-8a3c-6c2f1a9e4d17")


@dataclass(frozen=True)
class Rejection:
    """Why a request was refused, in the original system's error shape."""

    error: str
    message: str
    code: str
    field: str | None = None
    http_status: int = 400

    def body(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "message": self.message,
            "code": self.code,
            "field": self.field,
        }


@dataclass(frozen=True)
class ValidOrder:
    """A market order that passed every check; amounts are canonical Decimals."""

    token_in: str
    token_out: str
    amount: Decimal
    slippage: Decimal
    client_order_id: str | None
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    trigger_price: Decimal | None = None
    take_profit_price: Decimal | None = None
    stop_loss_price: Decimal | None = None
    trailing_bps: int | None = None
    expires_at: datetime | None = None
    allow_partial: bool = True
    post_only: bool = False
    max_price: Decimal | None = None
    checks: SniperChecks | None = None
    only_at_launch: bool = False
    auto_sell: AutoSell | None = None
    priority: Priority = "normal"


@dataclass(frozen=True)
class ExpiryPolicy:
    """Now, and how far ahead a conditional order may rest (settings, passed in: pure)."""

    now: datetime
    default: timedelta
    maximum: timedelta


def _reject(error: str, code: str, message: str, field: str | None = None) -> Rejection:
    return Rejection(error=error, message=message, code=code, field=field)


def too_large(limit: int) -> Rejection:
    return Rejection(
        "PAYLOAD_TOO_LARGE", f"Request body exceeds {limit} bytes", "ERR_023", None, http_status=413
    )


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_body(raw: bytes) -> dict[str, Any] | Rejection:
    """Decode a JSON object with every number as an exact Decimal."""
    if not raw.strip():
        return _reject("MISSING_BODY", "ERR_020", "Request body is required")
    try:
        value = json.loads(
            raw, parse_float=Decimal, parse_int=Decimal, parse_constant=_no_constants
        )
    except (
        ValueError,
        RecursionError,
    ) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return _reject("INVALID_JSON", "ERR_021", f"Request body is not valid JSON: {exc}")
    if not isinstance(value, dict):
        return _reject("INVALID_BODY", "ERR_022", "Request body must be a JSON object")
    return value


def _as_decimal(value: object) -> Decimal | None:
    """A finite Decimal from a JSON number or a plain decimal string; None for anything else."""
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, str) and _DECIMAL_STRING.match(value):
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    return None


def canonical(value: Decimal) -> Decimal:
    """The same number without exponent or trailing zeros ("1E+1" and "10.00" -> "10")."""
    return Decimal(f"{value.normalize():f}")


def _missing(value: object) -> bool:
    return value is None or value == ""


def _check_token(
    value: object, field: str, error: str, code: str, *, known: bool = True
) -> Rejection | None:
    """The token's format, and (unless a sniper's tokenOut, not launched yet) that it trades."""
    if not isinstance(value, str) or not TOKEN_PATTERN.match(value):
        return _reject(error, code, f"{field} must match ^[A-Z0-9]{{2,10}}$", field)
    if not known:
        return None
    try:
        get_token(value)
    except UnknownTokenError:
        return _reject(error, code, f"{field} {value} is not a token this engine trades", field)
    return None


def validate_order(
    body: dict[str, Any],
    *,
    default_slippage: Decimal,
    max_amount: Decimal,
    idempotency_key: str | None = None,
    expiry: ExpiryPolicy | None = None,
) -> ValidOrder | Rejection:
    """Check an order body field by field, in the original system's order, then the
    conditional fields (with `expiry`; without it only market orders are accepted)."""
    token_in, token_out = body.get("tokenIn"), body.get("tokenOut")
    if _missing(token_in):
        return _reject("MISSING_TOKEN_IN", "ERR_001", "tokenIn is required", "tokenIn")
    if _missing(token_out):
        return _reject("MISSING_TOKEN_OUT", "ERR_002", "tokenOut is required", "tokenOut")

    if body.get("amount") is None:
        return _reject("MISSING_AMOUNT", "ERR_003", "amount is required", "amount")
    amount = _as_decimal(body["amount"])
    if amount is None:
        return _reject(
            "INVALID_AMOUNT_TYPE",
            "ERR_004",
            "amount must be a number or a decimal string",
            "amount",
        )
    if amount <= 0:
        return _reject("INVALID_AMOUNT", "ERR_005", "amount must be greater than 0", "amount")
    if amount > max_amount:
        return _reject(
            "INVALID_AMOUNT", "ERR_005", f"amount must not exceed {max_amount}", "amount"
        )
    if isinstance(token_in, str):
        # Only a traded tokenIn has a base unit; an unknown one fails its own check below.
        try:
            to_base_units(token_in, amount)
        except UnknownTokenError:
            pass
        except (ValueError, ArithmeticError):
            decimals = get_token(token_in).decimals
            return _reject(
                "INVALID_AMOUNT",
                "ERR_005",
                f"amount has more than {decimals} decimals, finer than one {token_in} base unit",
                "amount",
            )

    raw_slippage = body.get("slippage")
    if raw_slippage is None:
        slippage = default_slippage
    else:
        parsed = _as_decimal(raw_slippage)
        if parsed is None:
            return _reject(
                "INVALID_SLIPPAGE_TYPE", "ERR_006", "slippage must be a number", "slippage"
            )
        slippage = parsed
    if not Decimal(0) <= slippage <= Decimal(1):
        return _reject(
            "INVALID_SLIPPAGE_RANGE", "ERR_007", "slippage must be between 0 and 1", "slippage"
        )

    sniper = body.get("orderType") == OrderType.SNIPER.value
    rejected = _check_token(token_in, "tokenIn", "INVALID_TOKEN_IN", "ERR_008") or _check_token(
        token_out, "tokenOut", "INVALID_TOKEN_OUT", "ERR_009", known=not sniper
    )
    if rejected:
        return rejected
    assert isinstance(token_in, str)
    assert isinstance(token_out, str)
    if token_in == token_out:
        return _reject("SAME_TOKEN_SWAP", "ERR_010", "tokenIn and tokenOut must differ", "tokenOut")

    client_order_id = body.get("clientOrderId")
    for value, field in ((client_order_id, "clientOrderId"), (idempotency_key, "Idempotency-Key")):
        if value is not None and (
            not isinstance(value, str) or not 1 <= len(value) <= MAX_CLIENT_ORDER_ID
        ):
            return _reject(
                "INVALID_CLIENT_ORDER_ID",
                "ERR_011",
                f"{field} must be a string of 1 to {MAX_CLIENT_ORDER_ID} characters",
                field,
            )
    if (
        client_order_id is not None
        and idempotency_key is not None
        and client_order_id != idempotency_key
    ):
        return _reject(
            "CONFLICTING_CLIENT_ORDER_ID",
            "ERR_012",
            "clientOrderId and the Idempotency-Key header differ",
            "clientOrderId",
        )
    terms = validate_terms(body, expiry)
    if isinstance(terms, Rejection):
        return terms
    if raw_slippage is None and terms["order_type"] is OrderType.SNIPER:
        slippage = SNIPER_DEFAULT_SLIPPAGE
    return ValidOrder(
        token_in=token_in,
        token_out=token_out,
        amount=canonical(amount),
        slippage=canonical(slippage),
        client_order_id=client_order_id or idempotency_key,
        **terms,
    )


# (body field, event field, missing error, invalid error, missing code, invalid code)
_PRICES = (
    ("limitPrice", "limit_price", "MISSING_LIMIT_PRICE", "INVALID_LIMIT_PRICE", "ERR_031",
     "ERR_032"),
    ("triggerPrice", "trigger_price", "MISSING_TRIGGER_PRICE", "INVALID_TRIGGER_PRICE", "ERR_033",
     "ERR_034"),
    ("takeProfitPrice", "take_profit_price", "MISSING_TAKE_PROFIT_PRICE",
     "INVALID_TAKE_PROFIT_PRICE", "ERR_035", "ERR_036"),
    ("stopLossPrice", "stop_loss_price", "MISSING_STOP_LOSS_PRICE", "INVALID_STOP_LOSS_PRICE",
     "ERR_037", "ERR_038"),
    ("maxPrice", "max_price", "MISSING_MAX_PRICE", "INVALID_MAX_PRICE", "ERR_050", "ERR_051"),
)  # fmt: skip


def validate_terms(body: dict[str, Any], expiry: ExpiryPolicy | None) -> dict[str, Any] | Rejection:
    """The conditional fields of an order body, as ValidOrder's keyword arguments."""
    raw_type = body.get("orderType")
    if raw_type is None:
        raw_type = OrderType.MARKET.value
    try:
        order_type = OrderType(raw_type) if isinstance(raw_type, str) else None
    except ValueError:
        order_type = None
    if order_type is None or (order_type.is_conditional and expiry is None):
        allowed = ", ".join(t.value for t in OrderType)
        return _reject(
            "INVALID_ORDER_TYPE", "ERR_030", f"orderType must be one of {allowed}", "orderType"
        )
    needed = CONDITIONAL_FIELDS[order_type]
    terms: dict[str, Any] = {"order_type": order_type}
    for field, name, missing, invalid, missing_code, invalid_code in _PRICES:
        value = body.get(field)
        if name not in needed:
            if value is not None:
                return _not_allowed(field, order_type)
            continue
        if value is None:
            return _reject(missing, missing_code, f"{field} is required for {order_type}", field)
        price = _price(value)
        if price is None:
            return _reject(invalid, invalid_code, _PRICE_RULE.format(field=field), field)
        terms[name] = price
    if "stop_loss_price" in terms and terms["stop_loss_price"] >= terms["take_profit_price"]:
        return _reject(
            "INVALID_STOP_LOSS_PRICE",
            "ERR_038",
            "stopLossPrice must be below takeProfitPrice",
            "stopLossPrice",
        )
    bps = body.get("trailingBps")
    if "trailing_bps" in needed:
        if isinstance(bps, Decimal) and bps == bps.to_integral_value():
            bps = int(bps)
        if not isinstance(bps, int) or isinstance(bps, bool) or not 1 <= bps <= 9999:
            return _reject(
                "INVALID_TRAILING_BPS", "ERR_039", "trailingBps must be 1..9999", "trailingBps"
            )
        terms["trailing_bps"] = bps
    elif bps is not None:
        return _not_allowed("trailingBps", order_type)
    for flag, name in (("allowPartial", "allow_partial"), ("postOnly", "post_only")):
        value = body.get(flag)
        if value is None:
            continue
        if not order_type.is_conditional or (
            flag == "postOnly" and order_type not in (OrderType.LIMIT, OrderType.TAKE_PROFIT)
        ):
            return _not_allowed(flag, order_type)
        if not isinstance(value, bool):
            return _reject("INVALID_FLAG", "ERR_045", f"{flag} must be true or false", flag)
        terms[name] = value
    sniper_terms = _sniper_terms(body, order_type)
    if isinstance(sniper_terms, Rejection):
        return sniper_terms
    terms.update(sniper_terms)
    raw_expiry = body.get("expiresAt")
    if not order_type.is_conditional:
        return _not_allowed("expiresAt", order_type) if raw_expiry is not None else terms
    assert expiry is not None
    expires = _expiry(raw_expiry, expiry)
    if isinstance(expires, Rejection):
        return expires
    terms["expires_at"] = expires
    return terms


def _sniper_terms(body: dict[str, Any], order_type: OrderType) -> dict[str, Any] | Rejection:
    """checks, onlyAtLaunch, autoSell (sniper only) and priority, as ValidOrder's arguments."""
    terms: dict[str, Any] = {}
    sniper = order_type is OrderType.SNIPER
    for field in ("checks", "onlyAtLaunch", "autoSell"):
        if not sniper and body.get(field) is not None:
            return _not_allowed(field, order_type)
    if sniper:
        checks = _checks(body.get("checks"))
        if checks is None:
            return _reject(
                "INVALID_CHECKS",
                "ERR_052",
                "checks must be an object of mintRenounced, freezeRenounced, lpBurned (booleans)"
                " and minLiquidity (a number >= 0)",
                "checks",
            )
        terms["checks"] = checks
        only = body.get("onlyAtLaunch")
        if only is not None:
            if not isinstance(only, bool):
                return _reject(
                    "INVALID_FLAG", "ERR_045", "onlyAtLaunch must be true or false", "onlyAtLaunch"
                )
            terms["only_at_launch"] = only
        raw_auto = body.get("autoSell")
        if raw_auto is not None:
            auto = _auto_sell(raw_auto)
            if auto is None:
                return _reject(
                    "INVALID_AUTO_SELL",
                    "ERR_053",
                    "autoSell must be {takeProfitPct > 0, stopLossPct between 0 and 100}",
                    "autoSell",
                )
            terms["auto_sell"] = auto
    priority = body.get("priority")
    if priority is not None:
        if priority not in ("normal", "high") or (
            priority == "high" and order_type not in (OrderType.MARKET, OrderType.SNIPER)
        ):
            return _reject(
                "INVALID_PRIORITY",
                "ERR_054",
                'priority must be "normal" or "high" ("high": market and sniper orders only)',
                "priority",
            )
        terms["priority"] = priority
    return terms


def _checks(raw: object) -> SniperChecks | None:
    """A sniper's checks (absent: the defaults, mint and freeze renounced); None if invalid."""
    if raw is None:
        return SniperChecks()
    if not isinstance(raw, dict) or not raw.keys() <= {*_CHECK_FLAGS, "minLiquidity"}:
        return None
    flags: dict[str, Any] = {}
    for field, name in _CHECK_FLAGS.items():
        value = raw.get(field)
        if value is not None:
            if not isinstance(value, bool):
                return None
            flags[name] = value
    minimum = raw.get("minLiquidity")
    if minimum is not None:
        parsed = _as_decimal(minimum)
        if parsed is None or parsed < 0 or parsed > MAX_PRICE:
            return None
        flags["min_liquidity"] = canonical(parsed)
    return SniperChecks(**flags)


def _auto_sell(raw: object) -> AutoSell | None:
    if not isinstance(raw, dict) or raw.keys() != {"takeProfitPct", "stopLossPct"}:
        return None
    take, stop = _as_decimal(raw["takeProfitPct"]), _as_decimal(raw["stopLossPct"])
    if take is None or stop is None or not 0 < take <= 100_000 or not 0 < stop < 100:
        return None
    return AutoSell(take_profit_pct=canonical(take), stop_loss_pct=canonical(stop))


MAX_PRICE = Decimal(10) ** 12
PRICE_DECIMALS = 18
_PRICE_RULE = "{field} must be a number > 0, at most 1e12, with at most 18 decimals"


def _price(value: object) -> Decimal | None:
    """A price in (0, 1e12] with at most 18 decimals, canonical; None otherwise. Bounded
    before `canonical`, which writes the number out in full (1e999999 would be a megabyte)."""
    price = _as_decimal(value)
    if price is None or not Decimal(0) < price <= MAX_PRICE:
        return None
    exponent = price.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -PRICE_DECIMALS:
        return None
    return canonical(price)


def _not_allowed(field: str, order_type: OrderType) -> Rejection:
    return _reject(
        "FIELD_NOT_ALLOWED", "ERR_044", f"{field} does not apply to a {order_type} order", field
    )


def _expiry(raw: object, policy: ExpiryPolicy) -> datetime | Rejection:
    if raw is None:
        return policy.now + policy.default
    parsed = parse_time(raw)
    if parsed is None:
        return _reject(
            "INVALID_EXPIRES_AT",
            "ERR_040",
            "expiresAt must be an ISO 8601 time with a zone",
            "expiresAt",
        )
    if parsed <= policy.now:
        return _reject("EXPIRES_AT_IN_PAST", "ERR_041", "expiresAt is in the past", "expiresAt")
    if parsed > policy.now + policy.maximum:
        days = policy.maximum.total_seconds() / 86400
        return _reject(
            "EXPIRES_AT_TOO_FAR",
            "ERR_042",
            f"expiresAt is more than {days:g} days ahead",
            "expiresAt",
        )
    return parsed


def parse_time(raw: object) -> datetime | None:
    """An aware datetime from an ISO 8601 string ("Z" allowed); None when it is not one."""
    if not isinstance(raw, str):
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def validate_amendment(
    body: dict[str, Any], order_type: OrderType, expiry: ExpiryPolicy
) -> dict[str, Any] | Rejection:
    """A PATCH body: the prices its order's type has, and/or expiresAt; at least one."""
    needed = CONDITIONAL_FIELDS[order_type]
    changes: dict[str, Any] = {}
    for field, name, _, invalid, _, invalid_code in _PRICES:
        value = body.get(field)
        if value is None:
            continue
        # A sniper's maxPrice is not amendable (OrderAmended has no such field): its buy may be
        # in flight at the launch, and a guard that moves under it would be no guard.
        if name not in needed or name == "max_price":
            return _not_allowed(field, order_type)
        price = _price(value)
        if price is None:
            return _reject(invalid, invalid_code, _PRICE_RULE.format(field=field), field)
        changes[name] = price
    if body.get("trailingBps") is not None:
        bps = body["trailingBps"]
        if "trailing_bps" not in needed:
            return _not_allowed("trailingBps", order_type)
        if isinstance(bps, Decimal) and bps == bps.to_integral_value():
            bps = int(bps)
        if not isinstance(bps, int) or isinstance(bps, bool) or not 1 <= bps <= 9999:
            return _reject(
                "INVALID_TRAILING_BPS", "ERR_039", "trailingBps must be 1..9999", "trailingBps"
            )
        changes["trailing_bps"] = bps
    if body.get("expiresAt") is not None:
        expires = _expiry(body["expiresAt"], expiry)
        if isinstance(expires, Rejection):
            return expires
        changes["expires_at"] = expires
    if not changes:
        return _reject(
            "NOTHING_TO_AMEND", "ERR_046", "give a new price of the order or expiresAt", None
        )
    return changes


def order_id_for(client_order_id: str | None, owner: str | None) -> uuid.UUID:
    """A keyed order always gets the same id (per owner); an unkeyed one a fresh random id."""
    if client_order_id is None:
        return uuid.uuid4()
    return uuid.uuid5(_ORDER_ID_NAMESPACE, f"{owner or ''}\x00{client_order_id}")
