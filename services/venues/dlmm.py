"""Meteora DLMM: liquidity in discrete price bins, constant sum inside a bin, dynamic fees.

Prices are Q64.64 fixed point integers as on chain, so the whole swap is integer math;
every division rounds against the trader (outputs down, inputs and fees up).
Bin `i` holds token x (base) and token y (quote) at price (1 + bin_step / 10_000) ** i,
in y base units per x base unit. Bins above the active one hold only x, bins below
only y; selling x walks down, buying x walks up.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Context, Decimal
from enum import StrEnum
from functools import lru_cache

from services.domain.tokens import get_token
from services.venues.pool import (
    InsufficientLiquidityError,
    JsonValue,
    Pair,
    SwapResult,
    Timestamp,
    Venue,
    check_amount,
    json_int,
    json_ints,
    other_token,
    price_impact,
)

BPS = 10_000
FEE_PRECISION = 1_000_000_000  # fee rates are integers in units of 1e-9
VARIABLE_FEE_SCALE = 100_000_000_000  # vfc * (va * bin_step) ** 2 / this = rate in 1e-9
Q64 = 1 << 64

# Enough digits that a Q64.64 price of any bin a pool can reach is exact to the last bit.
_PRICE_CTX = Context(prec=60)


class LiquidityShape(StrEnum):
    """How a liquidity provider spreads depth over the bins around the active one."""

    SPOT = "spot"  # flat
    CURVE = "curve"  # concentrated near the active bin
    BID_ASK = "bid_ask"  # heavier at the edges


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@lru_cache(maxsize=65_536)
def bin_price_q64(bin_step: int, bin_id: int) -> int:
    """Price of a bin as Q64.64, y base units per x base unit, floored; cached since bins repeat."""
    return int(_PRICE_CTX.power(1 + Decimal(bin_step) / BPS, bin_id) * Q64)


def bin_for_price(bin_step: int, price: Decimal) -> int:
    """Nearest bin id for a price in y base units per x base unit."""
    ratio = _PRICE_CTX.ln(price) / _PRICE_CTX.ln(1 + Decimal(bin_step) / BPS)
    return int(ratio.to_integral_value())


def variable_fee_rate(variable_fee_control: int, volatility_accumulator: int, bin_step: int) -> int:
    """Variable fee rate in 1e-9 units, rounded up: it grows with recent volatility squared."""
    square = (volatility_accumulator * bin_step) ** 2
    return _ceil_div(variable_fee_control * square, VARIABLE_FEE_SCALE)


@dataclass(frozen=True, slots=True)
class DlmmPool:
    """A Meteora DLMM pair: contiguous bins from `lower_id`, fee parameters and volatility state."""

    token_x: str
    token_y: str
    bin_step: int  # bps between neighbouring bins
    active_id: int
    lower_id: int
    reserves_x: tuple[int, ...]
    reserves_y: tuple[int, ...]
    base_factor: int = 10_000  # base fee = base_factor * bin_step * 1e-8
    variable_fee_control: int = 40_000
    filter_period: int = 30  # seconds; swaps closer than this count as one burst
    decay_period: int = 600  # seconds; after this the pool has calmed down
    reduction_factor: int = 5_000  # bps of the accumulator kept as reference after a pause
    max_volatility_accumulator: int = 350_000  # in 1e-4 bins
    max_fee_rate: int = 100_000_000  # 10 %, in 1e-9
    volatility_accumulator: int = 0
    volatility_reference: int = 0
    index_reference: int = 0
    last_update: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        """Refuse pools whose swap math would be undefined."""
        if (
            len(self.reserves_x) != len(self.reserves_y)
            or not self.reserves_x
            or self.bin_step <= 0
            or not 0 <= self.max_fee_rate < FEE_PRECISION
        ):
            msg = f"invalid DLMM pool {self.token_x}/{self.token_y}"
            raise ValueError(msg)

    @property
    def venue(self) -> Venue:
        """Meteora runs the DLMM pools."""
        return Venue.METEORA

    @property
    def tokens(self) -> Pair:
        """The pool's (base, quote) symbols."""
        return (self.token_x, self.token_y)

    @property
    def base_fee_rate(self) -> int:
        """Base fee rate in 1e-9 units: base_factor * bin_step * 1e-8."""
        return self.base_factor * self.bin_step * 10

    def swap(self, token_in: str, amount_in: int, now: Timestamp) -> SwapResult:
        """Swap through the bins; `now` drives the volatility reference."""
        return swap(self, token_in, amount_in, now)

    def amount_out(self, token_in: str, amount_in: int, now: Timestamp) -> int:
        """Quote a swap's output without building the pool it would leave; routing's hot path."""
        return amount_out(self, token_in, amount_in, now)

    def mid_price(self, token_in: str) -> Decimal:
        """Give the active bin's price in whole tokens of out per whole token in."""
        other_token(self.tokens, token_in)
        price = Decimal(bin_price_q64(self.bin_step, self.active_id)) / Q64
        shift = get_token(self.token_x).decimals - get_token(self.token_y).decimals
        per_x = price.scaleb(shift)
        return per_x if token_in == self.token_x else 1 / per_x

    def to_dict(self) -> dict[str, JsonValue]:
        """Serialize to JSON-safe values."""
        return {
            "venue": self.venue.value,
            "token_x": self.token_x,
            "token_y": self.token_y,
            "bin_step": self.bin_step,
            "active_id": self.active_id,
            "lower_id": self.lower_id,
            "reserves_x": list(self.reserves_x),
            "reserves_y": list(self.reserves_y),
            "base_factor": self.base_factor,
            "variable_fee_control": self.variable_fee_control,
            "filter_period": self.filter_period,
            "decay_period": self.decay_period,
            "reduction_factor": self.reduction_factor,
            "max_volatility_accumulator": self.max_volatility_accumulator,
            "max_fee_rate": self.max_fee_rate,
            "volatility_accumulator": self.volatility_accumulator,
            "volatility_reference": self.volatility_reference,
            "index_reference": self.index_reference,
            "last_update": str(self.last_update),
        }

    @classmethod
    def from_dict(cls, data: dict[str, JsonValue]) -> DlmmPool:
        """Rebuild a pool serialized by `to_dict`."""
        return cls(
            token_x=str(data["token_x"]),
            token_y=str(data["token_y"]),
            reserves_x=json_ints(data, "reserves_x"),
            reserves_y=json_ints(data, "reserves_y"),
            bin_step=json_int(data, "bin_step"),
            active_id=json_int(data, "active_id"),
            lower_id=json_int(data, "lower_id"),
            base_factor=json_int(data, "base_factor"),
            variable_fee_control=json_int(data, "variable_fee_control"),
            filter_period=json_int(data, "filter_period"),
            decay_period=json_int(data, "decay_period"),
            reduction_factor=json_int(data, "reduction_factor"),
            max_volatility_accumulator=json_int(data, "max_volatility_accumulator"),
            max_fee_rate=json_int(data, "max_fee_rate"),
            volatility_accumulator=json_int(data, "volatility_accumulator"),
            volatility_reference=json_int(data, "volatility_reference"),
            index_reference=json_int(data, "index_reference"),
            last_update=Decimal(str(data["last_update"])),
        )

    @classmethod
    def from_mid(
        cls,
        base: str,
        quote: str,
        mid: Decimal,
        depth: Decimal,
        *,
        bin_step: int,
        shape: LiquidityShape = LiquidityShape.SPOT,
        radius: int = 40,
        base_factor: int = 10_000,
        variable_fee_control: int = 40_000,
    ) -> DlmmPool:
        """Build a pool around `mid` (quote per base, whole tokens) worth `depth` quote tokens."""
        shift = get_token(quote).decimals - get_token(base).decimals
        active = bin_for_price(bin_step, mid.scaleb(shift))
        if shape is LiquidityShape.SPOT:
            weights = [1] * (radius + 1)
        elif shape is LiquidityShape.CURVE:
            weights = [(radius + 1 - d) ** 2 for d in range(radius + 1)]
        else:
            weights = [d + 1 for d in range(radius + 1)]
        # Each side of the active bin gets half the depth; the active bin is shared.
        per_side = weights[0] + 2 * sum(weights[1:])
        total = int(depth.scaleb(get_token(quote).decimals))
        rx, ry = [], []
        for bin_id in range(active - radius, active + radius + 1):
            value = total * weights[abs(bin_id - active)] // per_side
            if bin_id == active:
                value //= 2
            in_x = value * Q64 // bin_price_q64(bin_step, bin_id)
            rx.append(in_x if bin_id >= active else 0)
            ry.append(value if bin_id <= active else 0)
        return cls(
            token_x=base,
            token_y=quote,
            bin_step=bin_step,
            active_id=active,
            lower_id=active - radius,
            reserves_x=tuple(rx),
            reserves_y=tuple(ry),
            base_factor=base_factor,
            variable_fee_control=variable_fee_control,
            index_reference=active,
        )


def _references(pool: DlmmPool, now: Decimal) -> tuple[int, int]:
    """Give (volatility reference, index reference) in force for a swap at `now`."""
    # References move only after a pause of `filter_period`: a burst of swaps keeps
    # measuring distance from where the burst started, so it pays growing fees.
    elapsed = now - pool.last_update
    if elapsed < pool.filter_period:
        return pool.volatility_reference, pool.index_reference
    if elapsed < pool.decay_period:
        return pool.volatility_accumulator * pool.reduction_factor // BPS, pool.active_id
    return 0, pool.active_id


def _fee_rate(pool: DlmmPool, reference: int, index_ref: int, bin_id: int) -> tuple[int, int]:
    """Give (volatility accumulator, total fee rate in 1e-9) for swapping inside `bin_id`."""
    accumulator = min(reference + abs(index_ref - bin_id) * BPS, pool.max_volatility_accumulator)
    variable = variable_fee_rate(pool.variable_fee_control, accumulator, pool.bin_step)
    return accumulator, min(pool.base_fee_rate + variable, pool.max_fee_rate)


@dataclass(frozen=True, slots=True)
class _Walk:
    """The outcome of walking the bins, before any new pool state is built."""

    amount_out: int
    fee: int
    bin_id: int  # where the walk stopped: the new active bin
    accumulator: int
    reference: int
    index_ref: int
    fills: tuple[tuple[int, int, int], ...]  # (bin index, input taken, output given)


def _walk(pool: DlmmPool, sell_x: bool, amount_in: int, now: Decimal) -> _Walk:
    """Walk bins from the active one, paying each bin's fee on the input it takes."""
    reference, index_ref = _references(pool, now)
    reserves = pool.reserves_y if sell_x else pool.reserves_x
    # Routing walks bins thousands of times per second: `_fee_rate` and `_ceil_div` are
    # inlined here, with the pool's parameters in locals.
    step, lower, count = pool.bin_step, pool.lower_id, len(reserves)
    base_rate, control = pool.base_fee_rate, pool.variable_fee_control
    max_accumulator, max_rate = pool.max_volatility_accumulator, pool.max_fee_rate
    direction = -1 if sell_x else 1
    bin_id = pool.active_id
    remaining, amount_out, fee_total = amount_in, 0, 0
    fills = []
    while True:
        index = bin_id - lower
        if not 0 <= index < count:
            msg = f"{pool.token_x}/{pool.token_y} DLMM pool runs dry for {amount_in}"
            raise InsufficientLiquidityError(msg)
        accumulator = min(reference + abs(index_ref - bin_id) * BPS, max_accumulator)
        variable = -(-control * (accumulator * step) ** 2 // VARIABLE_FEE_SCALE)
        rate = min(base_rate + variable, max_rate)
        available = reserves[index]
        if available:
            price = bin_price_q64(step, bin_id)
            # The input (after fee) that buys the whole bin, then the fee on top of it.
            full_net = -(-available * Q64 // price) if sell_x else -(-available * price // Q64)
            full_fee = -(-full_net * rate // (FEE_PRECISION - rate))
            if remaining >= full_net + full_fee:
                used, fee, got = full_net + full_fee, full_fee, available
            else:
                used, fee = remaining, -(-remaining * rate // FEE_PRECISION)
                net = remaining - fee
                got = min(available, (net * price) >> 64 if sell_x else (net << 64) // price)
            fills.append((index, used, got))
            remaining -= used
            amount_out += got
            fee_total += fee
        if remaining == 0:
            return _Walk(
                amount_out, fee_total, bin_id, accumulator, reference, index_ref, tuple(fills)
            )
        bin_id += direction


def amount_out(pool: DlmmPool, token_in: str, amount_in: int, now: Timestamp) -> int:
    """Quote a swap's output without building the pool state it would leave."""
    check_amount(amount_in)
    other_token(pool.tokens, token_in)
    return _walk(pool, token_in == pool.token_x, amount_in, Decimal(now)).amount_out


def swap(pool: DlmmPool, token_in: str, amount_in: int, now: Timestamp) -> SwapResult:
    """Swap through the bins; the input, fees included, stays in the bins it crossed."""
    check_amount(amount_in)
    other_token(pool.tokens, token_in)
    sell_x = token_in == pool.token_x
    now = Decimal(now)
    walk = _walk(pool, sell_x, amount_in, now)
    rx, ry = list(pool.reserves_x), list(pool.reserves_y)
    # The fee stays in the bin, growing its liquidity, as LP fees do.
    gains, losses = (rx, ry) if sell_x else (ry, rx)
    for index, used, got in walk.fills:
        gains[index] += used
        losses[index] -= got
    after = replace(
        pool,
        active_id=walk.bin_id,
        reserves_x=tuple(rx),
        reserves_y=tuple(ry),
        volatility_accumulator=walk.accumulator,
        volatility_reference=walk.reference,
        index_reference=walk.index_ref,
        last_update=now,
    )
    spot = Decimal(bin_price_q64(pool.bin_step, pool.active_id)) / Q64
    impact = price_impact(amount_in, walk.amount_out, spot if sell_x else 1 / spot)
    return SwapResult(amount_in, walk.amount_out, walk.fee, impact, after)
