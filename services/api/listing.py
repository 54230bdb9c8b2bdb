"""Pure: the order list's query string -> filters, page size and cursor, or a typed rejection.

    ERR_101 INVALID_STATUS      status not one of pending, routing, ..., failed
    ERR_102 INVALID_TOKEN_IN    tokenIn not ^[A-Z0-9]{2,10}$
    ERR_103 INVALID_TOKEN_OUT   tokenOut likewise
    ERR_104 INVALID_TIME        from/to not an ISO 8601 time with a UTC offset
    ERR_105 INVALID_TIME_RANGE  from is not before to
    ERR_106 INVALID_LIMIT       limit not an integer in 1..200
    ERR_107 INVALID_CURSOR      cursor not one this API issued

The cursor is opaque to clients: base64 of the last row's (created_at, id).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime

import orjson

from schemas.events import OrderStatus
from services.api.validation import TOKEN_PATTERN, Rejection

DEFAULT_LIMIT = 20
MAX_LIMIT = 200
# No order gets near this many events; a larger `since` is a client's mistake, not a resume.
MAX_SINCE = 1_000_000


class InvalidCursor(ValueError):
    """A pagination cursor this API did not issue."""


@dataclass(frozen=True)
class Cursor:
    """Position after the last row of a page, in (created_at DESC, id DESC) order."""

    created_at: datetime
    order_id: uuid.UUID

    def encode(self) -> str:
        raw = orjson.dumps({"c": self.created_at.isoformat(), "i": str(self.order_id)})
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            created_at = datetime.fromisoformat(raw["c"])
            if created_at.tzinfo is None:
                raise ValueError("naive time")
            return cls(created_at, uuid.UUID(raw["i"]))
        except (binascii.Error, ValueError, TypeError, KeyError, orjson.JSONDecodeError):
            raise InvalidCursor(text) from None


@dataclass(frozen=True)
class OrderFilter:
    """Filters of the order list; None means any."""

    status: str | None = None
    token_in: str | None = None
    token_out: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    # Set by the route from the caller's key, never from the query string.
    owner: str | None = None


@dataclass(frozen=True)
class ListQuery:
    where: OrderFilter
    limit: int
    after: Cursor | None


def _bad(error: str, code: str, message: str, field: str) -> Rejection:
    return Rejection(error=error, message=message, code=code, field=field)


def _time(text: str | None) -> datetime | Rejection | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        return _bad(
            "INVALID_TIME",
            "ERR_104",
            "from/to must be ISO 8601 with an offset, e.g. 2025-01-31T12:00:00Z",
            "from/to",
        )
    return moment


def parse_list_query(
    status: str | None = None,
    token_in: str | None = None,
    token_out: str | None = None,
    created_from: str | None = None,
    created_to: str | None = None,
    limit: str | None = None,
    cursor: str | None = None,
) -> ListQuery | Rejection:
    """Validate the list's query parameters (each as the raw string the client sent)."""
    if status is not None and status not in {s.value for s in OrderStatus}:
        return _bad(
            "INVALID_STATUS", "ERR_101", f"status must be one of {', '.join(OrderStatus)}", "status"
        )
    for value, field, error, code in (
        (token_in, "tokenIn", "INVALID_TOKEN_IN", "ERR_102"),
        (token_out, "tokenOut", "INVALID_TOKEN_OUT", "ERR_103"),
    ):
        if value is not None and not TOKEN_PATTERN.match(value):
            return _bad(error, code, f"{field} must match ^[A-Z0-9]{{2,10}}$", field)
    start, end = _time(created_from), _time(created_to)
    if isinstance(start, Rejection):
        return start
    if isinstance(end, Rejection):
        return end
    if start is not None and end is not None and start >= end:
        return _bad("INVALID_TIME_RANGE", "ERR_105", "from must be before to", "from")
    size = DEFAULT_LIMIT
    if limit is not None:
        if not limit.isdecimal() or not 1 <= int(limit) <= MAX_LIMIT:
            return _bad(
                "INVALID_LIMIT",
                "ERR_106",
                f"limit must be an integer from 1 to {MAX_LIMIT}",
                "limit",
            )
        size = int(limit)
    after = None
    if cursor is not None:
        try:
            after = Cursor.decode(cursor)
        except InvalidCursor:
            return _bad(
                "INVALID_CURSOR", "ERR_107", "cursor is not one this API returned", "cursor"
            )
    return ListQuery(OrderFilter(status, token_in, token_out, start, end), size, after)


def parse_since(text: str | None) -> int | Rejection:
    """`since` of `/ws/{orderId}`: the last sequence the client has (absent: 0, everything)."""
    if text is None:
        return 0
    if not text.isascii() or not text.isdecimal() or int(text) > MAX_SINCE:
        return _bad(
            "INVALID_SINCE",
            "ERR_108",
            f"since must be the last sequence received, an integer from 0 to {MAX_SINCE}",
            "since",
        )
    return int(text)
