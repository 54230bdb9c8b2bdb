"""Market records round-trip exactly, and anything else is refused with a reason."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from schemas.market import (
    MarketTick,
    MarketTrade,
    UndecodableMarketRecord,
    VenueTick,
    decode_market,
    encode_market,
)

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TICK = MarketTick(
    pair="SOL-USDC",
    base="SOL",
    quote="USDC",
    slot=7,
    at=AT,
    reference=Decimal("151.25"),
    venues=(
        VenueTick(
            venue="RAYDIUM", mid=Decimal("151.2"), depth_bid=Decimal(900), depth_ask=Decimal(910)
        ),
        VenueTick(
            venue="METEORA", mid=Decimal("151.3"), depth_bid=Decimal(4000), depth_ask=Decimal(3900)
        ),
    ),
)
TRADE = MarketTrade(
    pair="SOL-USDC",
    base="SOL",
    quote="USDC",
    venue="METEORA",
    side="sell",
    amount_base=Decimal(2),
    amount_quote=Decimal("302.5"),
    price=Decimal("151.25"),
    slot=7,
    at=AT,
    signature="5" * 88,
    source="engine",
)


@pytest.mark.parametrize("payload", [TICK, TRADE])
def test_a_record_reads_back_as_written(payload: MarketTick | MarketTrade) -> None:
    record = decode_market(encode_market(3, payload))
    assert record.payload == payload
    assert (record.sequence, record.type, record.version) == (3, payload.TYPE, 1)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty"),
        (b"[1]", "not a JSON object"),
        (b'{"type": "Nope", "version": 1, "sequence": 1, "payload": {}}', "unknown"),
        (b'{"type": "MarketTick", "version": 9, "sequence": 1, "payload": {}}', "version"),
        (
            b'{"type": "MarketTick", "version": 1, "sequence": 1, "payload": {"pair": "x"}}',
            "invalid",
        ),
    ],
)
def test_anything_else_is_refused_with_its_reason(value: bytes, reason: str) -> None:
    with pytest.raises(UndecodableMarketRecord, match=reason):
        decode_market(value)


def test_a_money_field_is_never_a_float_on_the_wire() -> None:
    assert b'"mid":"151.2"' in encode_market(1, TICK)
