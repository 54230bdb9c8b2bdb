"""Raydium AMM v4: a constant-product pool, fee taken from the input and left in the pool."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from services.domain.tokens import get_token
from services.venues.pool import (
    JsonValue,
    Pair,
    SwapResult,
    Timestamp,
    Venue,
    check_amount,
    json_int,
    other_token,
    price_impact,
)

BPS = 10_000


@dataclass(frozen=True, slots=True)
class CpmmPool:
    """Reserves of a Raydium pool in base units; x * y only grows (by the fees)."""

    base: str
    quote: str
    reserve_base: int
    reserve_quote: int
    fee_bps: int = 25

    def __post_init__(self) -> None:
        """Refuse an empty pool, whose price is undefined."""
        if self.reserve_base <= 0 or self.reserve_quote <= 0 or not 0 <= self.fee_bps < BPS:
            msg = f"invalid CPMM pool {self}"
            raise ValueError(msg)

    @property
    def venue(self) -> Venue:
        """Raydium runs the constant-product pools."""
        return Venue.RAYDIUM

    @property
    def tokens(self) -> Pair:
        """The pool's (base, quote) symbols."""
        return (self.base, self.quote)

    def reserves(self, token_in: str) -> tuple[int, int]:
        """Give (reserve in, reserve out) as seen by a swap of `token_in`."""
        other_token(self.tokens, token_in)
        if token_in == self.base:
            return self.reserve_base, self.reserve_quote
        return self.reserve_quote, self.reserve_base

    def swap(self, token_in: str, amount_in: int, now: Timestamp = 0) -> SwapResult:
        """Swap through the pool; a constant-product pool has no clock, so `now` is unused."""
        del now
        return swap(self, token_in, amount_in)

    def amount_out(self, token_in: str, amount_in: int, now: Timestamp = 0) -> int:
        """Quote a swap's output without building the pool it would leave; routing's hot path."""
        del now
        check_amount(amount_in)
        x, y = self.reserves(token_in)
        net = amount_in - fee_for(amount_in, self.fee_bps)
        return y * net // (x + net)

    def mid_price(self, token_in: str) -> Decimal:
        """Give y / x in whole tokens of out per whole token in."""
        x, y = self.reserves(token_in)
        token_out = other_token(self.tokens, token_in)
        shift = get_token(token_in).decimals - get_token(token_out).decimals
        return (Decimal(y) / Decimal(x)).scaleb(shift)

    def to_dict(self) -> dict[str, JsonValue]:
        """Serialize to JSON-safe values."""
        return {
            "venue": self.venue.value,
            "base": self.base,
            "quote": self.quote,
            "reserve_base": self.reserve_base,
            "reserve_quote": self.reserve_quote,
            "fee_bps": self.fee_bps,
        }

    @classmethod
    def from_dict(cls, data: dict[str, JsonValue]) -> CpmmPool:
        """Rebuild a pool serialized by `to_dict`."""
        return cls(
            base=str(data["base"]),
            quote=str(data["quote"]),
            reserve_base=json_int(data, "reserve_base"),
            reserve_quote=json_int(data, "reserve_quote"),
            fee_bps=json_int(data, "fee_bps"),
        )

    @classmethod
    def from_mid(
        cls, base: str, quote: str, mid: Decimal, depth: Decimal, fee_bps: int = 25
    ) -> CpmmPool:
        """Build a pool quoting `mid` (quote per base, whole tokens) worth `depth` quote tokens."""
        shift = get_token(quote).decimals - get_token(base).decimals
        reserve_quote = int(depth.scaleb(get_token(quote).decimals) / 2)
        reserve_base = int(Decimal(reserve_quote) / mid.scaleb(shift))
        return cls(base, quote, reserve_base, reserve_quote, fee_bps)


def fee_for(amount_in: int, fee_bps: int) -> int:
    """Fee on the input, rounded up as the AMM program does."""
    return -(-amount_in * fee_bps // BPS)


def swap(pool: CpmmPool, token_in: str, amount_in: int) -> SwapResult:
    """Swap with dy = floor(y * dx_net / (x + dx_net)); all of dx, fee included, stays in."""
    check_amount(amount_in)
    x, y = pool.reserves(token_in)
    fee = fee_for(amount_in, pool.fee_bps)
    amount_out = pool.amount_out(token_in, amount_in)
    if token_in == pool.base:
        after = replace(pool, reserve_base=x + amount_in, reserve_quote=y - amount_out)
    else:
        after = replace(pool, reserve_quote=x + amount_in, reserve_base=y - amount_out)
    impact = price_impact(amount_in, amount_out, Decimal(y) / Decimal(x))
    return SwapResult(amount_in, amount_out, fee, impact, after)
