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
from decimal import Decimal, InvalidOperation
from typing import Any

from services.domain.tokens import UnknownTokenError, get_token, to_base_units

TOKEN_PATTERN = re.compile(r"^[A-Z0-9]{2,10}$")
# A plain decimal literal: refuses "NaN", "Infinity", " 1", "1_000", which Decimal() takes.
_DECIMAL_STRING = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
MAX_CLIENT_ORDER_ID = 64


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


def _check_token(value: object, field: str, error: str, code: str) -> Rejection | None:
    if not isinstance(value, str) or not TOKEN_PATTERN.match(value):
        return _reject(error, code, f"{field} must match ^[A-Z0-9]{{2,10}}$", field)
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
) -> ValidOrder | Rejection:
    """Check an order body field by field, in the original system's order."""
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

    rejected = _check_token(token_in, "tokenIn", "INVALID_TOKEN_IN", "ERR_008") or _check_token(
        token_out, "tokenOut", "INVALID_TOKEN_OUT", "ERR_009"
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
    return ValidOrder(
        token_in=token_in,
        token_out=token_out,
        amount=canonical(amount),
        slippage=canonical(slippage),
        client_order_id=client_order_id or idempotency_key,
    )


def order_id_for(client_order_id: str | None, owner: str | None) -> uuid.UUID:
    """A keyed order always gets the same id (per owner); an unkeyed one a fresh random id."""
    if client_order_id is None:
        return uuid.uuid4()
    return uuid.uuid5(_ORDER_ID_NAMESPACE, f"{owner or ''}\x00{client_order_id}")
