"""Hand-made market records (schemas/market.py) for the read side's tests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from schemas.market import MarketTick, MarketTrade, VenueTick

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
D = Decimal


def tick(
    slot: int,
    *,
    pair: str = "SOL-USDC",
    at: datetime = T0,
    raydium: str = "150",
    meteora: str = "150.1",
) -> MarketTick:
    base, quote = pair.split("-")
    return MarketTick(
        pair=pair,
        base=base,
        quote=quote,
        slot=slot,
        at=at,
        reference=(D(raydium) + D(meteora)) / 2,
        venues=(
            VenueTick(venue="RAYDIUM", mid=D(raydium), depth_bid=D(900), depth_ask=D(910)),
            VenueTick(venue="METEORA", mid=D(meteora), depth_bid=D(4000), depth_ask=D(3900)),
        ),
    )


def trade(
    slot: int,
    price: str,
    amount_base: str = "1",
    *,
    pair: str = "SOL-USDC",
    at: datetime = T0,
    venue: str = "RAYDIUM",
    side: Literal["buy", "sell"] = "sell",
    source: Literal["engine", "background"] = "background",
) -> MarketTrade:
    base, quote = pair.split("-")
    return MarketTrade(
        pair=pair,
        base=base,
        quote=quote,
        venue=venue,
        side=side,
        amount_base=D(amount_base),
        amount_quote=D(amount_base) * D(price),
        price=D(price),
        slot=slot,
        at=at,
        signature=f"{slot:0>8}{source[0]}".ljust(64, "5"),
        source=source,
    )
