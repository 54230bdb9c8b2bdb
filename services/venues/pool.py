"""The interface every venue's pool satisfies, so routing never looks at a venue's mechanics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

Timestamp = Decimal | int
"""Seconds since an arbitrary epoch; only differences between swaps matter."""

Pair = tuple[str, str]
"""(base, quote) symbols of a pool, e.g. ("SOL", "USDC")."""

JsonValue = int | str | list[int] | None
"""What a pool's `to_dict` values may be, so they store as JSON without losing precision."""


class Venue(StrEnum):
    """The DEXs the engine routes between."""

    RAYDIUM = "RAYDIUM"
    METEORA = "METEORA"


def display_name(code: str) -> str:
    """A venue as people write it ("Raydium"); an unknown code is shown as it came."""
    return code.title() if code in Venue.__members__ else code


PoolBook = Mapping[tuple[Venue, Pair], "Pool"]
"""Pools by venue and (base, quote) pair: what routing searches and the market moves."""


class SwapError(ValueError):
    """A swap the pool cannot perform as asked."""


class InsufficientLiquidityError(SwapError):
    """The pool runs out of the output token before the whole input is swapped."""


@dataclass(frozen=True, slots=True)
class SwapResult:
    """What a swap gives the trader, and the pool state it leaves behind."""

    amount_in: int
    amount_out: int
    fee: int  # in token_in base units, part of amount_in
    price_impact: Decimal  # 1 - execution price / spot price, fees included
    pool_after: Pool


class Pool(Protocol):
    """A venue's pool for one pair, as an immutable value."""

    @property
    def venue(self) -> Venue:
        """Which DEX this pool lives on."""
        ...

    @property
    def tokens(self) -> Pair:
        """The pool's (base, quote) symbols."""
        ...

    def swap(self, token_in: str, amount_in: int, now: Timestamp) -> SwapResult:
        """Swap `amount_in` base units of `token_in` for the other token at time `now`."""
        ...

    def amount_out(self, token_in: str, amount_in: int, now: Timestamp) -> int:
        """Quote what `swap` would pay out, without building the pool state it would leave."""
        ...

    def mid_price(self, token_in: str) -> Decimal:
        """Give the current marginal price, whole tokens out per whole token in, before fees."""
        ...

    def to_dict(self) -> dict[str, JsonValue]:
        """Serialize to JSON-safe values (for tests and reports)."""
        ...


def other_token(pair: Pair, token_in: str) -> str:
    """Name the token a swap of `token_in` in this pair pays out, rejecting foreign tokens."""
    if token_in == pair[0]:
        return pair[1]
    if token_in == pair[1]:
        return pair[0]
    msg = f"{token_in} is not in pool {pair[0]}/{pair[1]}"
    raise SwapError(msg)


def check_amount(amount_in: int) -> None:
    """Reject non-positive inputs, which no chain would accept as a swap."""
    if amount_in <= 0:
        msg = f"amount_in must be positive, got {amount_in}"
        raise SwapError(msg)


def json_int(data: dict[str, JsonValue], name: str) -> int:
    """Read an integer field of a serialized pool, failing loudly on anything else."""
    value = data[name]
    if not isinstance(value, int):
        msg = f"{name} should be an integer, got {value!r}"
        raise TypeError(msg)
    return value


def json_ints(data: dict[str, JsonValue], name: str) -> tuple[int, ...]:
    """Read a list-of-integers field of a serialized pool."""
    value = data[name]
    if not isinstance(value, list):
        msg = f"{name} should be a list of integers, got {value!r}"
        raise TypeError(msg)
    return tuple(value)


def price_impact(amount_in: int, amount_out: int, spot_out_per_in: Decimal) -> Decimal:
    """Measure how much worse than spot a fill is: 1 - (out / in) / spot, in base units."""
    return 1 - Decimal(amount_out) / (Decimal(amount_in) * spot_out_per_in)
