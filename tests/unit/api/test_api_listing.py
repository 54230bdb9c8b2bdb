"""The order list's query parameters: defaults, each rejection, and the opaque cursor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.api.listing import Cursor, InvalidCursor, ListQuery, OrderFilter, parse_list_query
from services.api.validation import Rejection


def test_defaults() -> None:
    assert parse_list_query() == ListQuery(OrderFilter(), 20, None)


def test_filters_and_page() -> None:
    cursor = Cursor(datetime(2025, 1, 1, tzinfo=UTC), uuid.uuid4())
    got = parse_list_query(
        "completed",
        "SOL",
        "USDC",
        "2025-01-01T00:00:00Z",
        "2025-02-01T00:00:00+00:00",
        "200",
        cursor.encode(),
    )
    assert got == ListQuery(
        OrderFilter(
            "completed",
            "SOL",
            "USDC",
            datetime(2025, 1, 1, tzinfo=UTC),
            datetime(2025, 2, 1, tzinfo=UTC),
        ),
        200,
        cursor,
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "code"),
    [
        ({"status": "done"}, "INVALID_STATUS", "ERR_101"),
        ({"token_in": "sol"}, "INVALID_TOKEN_IN", "ERR_102"),
        ({"token_out": "U"}, "INVALID_TOKEN_OUT", "ERR_103"),
        ({"created_from": "yesterday"}, "INVALID_TIME", "ERR_104"),
        ({"created_to": "2025-01-01T00:00:00"}, "INVALID_TIME", "ERR_104"),
        (
            {"created_from": "2025-02-01T00:00:00Z", "created_to": "2025-01-01T00:00:00Z"},
            "INVALID_TIME_RANGE",
            "ERR_105",
        ),
        ({"limit": "0"}, "INVALID_LIMIT", "ERR_106"),
        ({"limit": "201"}, "INVALID_LIMIT", "ERR_106"),
        ({"limit": "-1"}, "INVALID_LIMIT", "ERR_106"),
        ({"limit": "ten"}, "INVALID_LIMIT", "ERR_106"),
        ({"cursor": "not-a-cursor"}, "INVALID_CURSOR", "ERR_107"),
    ],
)
def test_rejections(kwargs: dict[str, str], error: str, code: str) -> None:
    got = parse_list_query(**kwargs)
    assert isinstance(got, Rejection)
    assert (got.error, got.code) == (error, code)


def test_cursor_round_trips_and_refuses_forgeries() -> None:
    cursor = Cursor(datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC), uuid.uuid4())
    assert Cursor.decode(cursor.encode()) == cursor
    for forged in ("", "e30", "eyJjIjogMX0", "!!!"):
        with pytest.raises(InvalidCursor):
            Cursor.decode(forged)
