"""The background traders' flow: the swap that moves a pool's mid toward its target, and depth.

Pure functions of a pool (`services.pricing.accounts.pools`: `CpmmPool` from the CPMM vaults,
`DlmmBinPool` from the DLMM pair and bins) and a target mid (quote per base, whole tokens):

- **CPMM**, closed form. Selling `dx` into reserves (a in, b out) at fee f leaves the mid
  `a b / ((a + (1 - f) dx)(a + dx))`; setting it to the target q gives the quadratic
  `(1 - f) dx^2 + a (2 - f) dx + a^2 - a b / q = 0`. Its root, rounded down, never overshoots
  (the program rounds the fee up and the output down, both of which leave the mid short of q);
  the pure pool's own `swap` checks it, and a unit less is taken until it does not pass.
- **DLMM**, walking bins with the program's own math (`quote_exact_in`): the target bin is the
  last whole bin on this side of the target price, and the input is the least that ends the
  walk in it (found by doubling, then bisection). When empty bins would carry the walk past it,
  one unit less, which stops short.
- **The cap**: a slot's trade moves the mid at most `max_move_bps` (DLMM: that many bps of bins,
  at least one bin), so prices move gradually; within `tolerance_bps` nothing trades.
- **Depth near the mid** (ticks): the base tokens that selling (bid) or buying (ask) takes to
  move the mid by 1 %, fees aside. CPMM: `x (1 / sqrt(1 - p) - 1)` and `x (1 - 1 / sqrt(1 + p))`
  for reserve x; DLMM: what the bins within 1 % of the active one hold (bid: their y, valued in
  x at each bin's price; ask: their x), the active bin included.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Context, Decimal

from services.domain.tokens import get_token
from services.pricing.accounts.dlmm import (
    BINS_PER_ARRAY,
    ONE,
    Bin,
    DlmmQuoteError,
    price_from_id,
    quote_exact_in,
)
from services.pricing.accounts.pools import DlmmBinPool
from services.venues.cpmm import BPS, CpmmPool
from services.venues.pool import Pool

_CTX = Context(prec=40)
ONE_PERCENT = Decimal("0.01")
DEFAULT_MAX_MOVE_BPS = Decimal(25)
DEFAULT_TOLERANCE_BPS = Decimal("0.5")
_MAX_DOUBLINGS = 128


@dataclass(frozen=True, slots=True)
class FlowTrade:
    """A background swap: exactly `amount_in` base units of `token_in`, quoted `expected_out`."""

    token_in: str
    amount_in: int
    expected_out: int


def pool_mid(pool: Pool) -> Decimal:
    """The pool's mid, quote per base in whole tokens, before fees."""
    return pool.mid_price(pool.tokens[0])


def _shift(pool: Pool) -> int:
    """Decimal places between the pair's base-unit price and its whole-token price."""
    base, quote = pool.tokens
    return get_token(quote).decimals - get_token(base).decimals


def capped_target(mid: Decimal, target: Decimal, max_move_bps: Decimal) -> Decimal:
    """The target, but at most `max_move_bps` away from the mid."""
    cap = max_move_bps / BPS
    return min(max(target, mid * (1 - cap)), mid * (1 + cap))


def flow_trade(
    pool: Pool,
    target: Decimal,
    *,
    max_move_bps: Decimal = DEFAULT_MAX_MOVE_BPS,
    tolerance_bps: Decimal = DEFAULT_TOLERANCE_BPS,
) -> FlowTrade | None:
    """The swap that moves the pool's mid toward `target` (quote per base, whole tokens),
    capped at `max_move_bps`, never past it; None when the pool is close enough already."""
    if target <= 0:
        msg = f"a target price must be positive, got {target}"
        raise ValueError(msg)
    mid = pool_mid(pool)
    if abs(target / mid - 1) * BPS <= tolerance_bps:
        return None
    goal = capped_target(mid, target, max_move_bps)
    if isinstance(pool, CpmmPool):
        return _cpmm_trade(pool, mid, goal)
    if isinstance(pool, DlmmBinPool):
        return _dlmm_trade(pool, mid, goal, max_move_bps)
    msg = f"no flow model for {type(pool).__name__}"
    raise TypeError(msg)


# --- CPMM --------------------------------------------------------------------------------------


def _cpmm_trade(pool: CpmmPool, mid: Decimal, goal: Decimal) -> FlowTrade | None:
    selling = goal < mid  # the mid falls when base is sold into the pool
    token_in = pool.base if selling else pool.quote
    a, b = (Decimal(r) for r in pool.reserves(token_in))
    price = goal.scaleb(_shift(pool))  # quote base units per base base unit
    q = price if selling else 1 / price  # the goal as out per in, base units
    f = Decimal(pool.fee_bps) / BPS
    c = a * a - _CTX.divide(a * b, q)
    if c >= 0:
        return None
    disc = _CTX.power(a * (2 - f), 2) - 4 * (1 - f) * c
    root = _CTX.divide(-a * (2 - f) + _CTX.sqrt(disc), 2 * (1 - f))
    amount = int(root.to_integral_value(ROUND_FLOOR))

    def past(n: int) -> bool:
        after = pool_mid(pool.swap(token_in, n).pool_after)
        return after < goal if selling else after > goal

    for _ in range(8):  # the closed form is exact but for rounding: at most a few units back
        if amount <= 0 or not past(amount):
            break
        amount -= max(1, amount // 10**9)
    if amount <= 0 or past(amount):
        return None
    out = pool.amount_out(token_in, amount)
    return FlowTrade(token_in, amount, out) if out > 0 else None


# --- DLMM --------------------------------------------------------------------------------------


def _bin(pool: DlmmBinPool, bin_id: int) -> Bin | None:
    array = pool.bin_arrays.get(bin_id // BINS_PER_ARRAY)
    return None if array is None else array.bins[bin_id - array.lower_bin_id]


def _bin_price(pool: DlmmBinPool, bin_id: int) -> int:
    """A bin's Q64.64 price (y base units per x base unit), as the program reads it."""
    b = _bin(pool, bin_id)
    return (b.price if b is not None else 0) or price_from_id(bin_id, pool.pair.bin_step)


def _target_bin(pool: DlmmBinPool, goal: Decimal, down: bool) -> int:
    """The last bin on this side of `goal`: lowest with price >= goal going down, highest with
    price <= goal going up."""
    q = int(goal.scaleb(_shift(pool)) * ONE)
    step = pool.pair.bin_step
    guess = round(math.log(q / ONE) / math.log(1 + step / 10_000))
    if down:
        while price_from_id(guess, step) < q:
            guess += 1
        while price_from_id(guess - 1, step) >= q:
            guess -= 1
    else:
        while price_from_id(guess, step) > q:
            guess -= 1
        while price_from_id(guess + 1, step) <= q:
            guess += 1
    return guess


def _end_bin(pool: DlmmBinPool, amount: int, swap_for_y: bool) -> int | None:
    reserve_out = pool.reserve_y if swap_for_y else pool.reserve_x
    try:
        quote = quote_exact_in(
            pool.pair,
            pool.bin_arrays,
            amount,
            swap_for_y=swap_for_y,
            now=pool.clock,
            reserve_out=reserve_out,
        )
    except DlmmQuoteError:
        return None
    return quote.end_bin_id


def _least(reaches: Callable[[int], bool]) -> int | None:
    """The least positive n with reaches(n), reaches being monotone; None if none is found."""
    hi = 1
    for _ in range(_MAX_DOUBLINGS):
        if reaches(hi):
            break
        hi *= 2
    else:
        return None
    lo = hi // 2  # reaches(lo) is false (or lo is 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _dlmm_trade(
    pool: DlmmBinPool, mid: Decimal, goal: Decimal, max_move_bps: Decimal
) -> FlowTrade | None:
    down = goal < mid
    active = pool.pair.active_id
    target = _target_bin(pool, goal, down)
    max_bins = max(1, int(max_move_bps // pool.pair.bin_step))
    target = max(target, active - max_bins) if down else min(target, active + max_bins)
    if (down and target >= active) or (not down and target <= active):
        return None
    swap_for_y = down  # selling x (the base) walks the active bin down

    def reaches(n: int) -> bool:
        end = _end_bin(pool, n, swap_for_y)
        # a walk that runs out of liquidity has gone as far as it can: past, for the search
        return end is None or (end <= target if down else end >= target)

    amount = _least(reaches)
    if amount is None:
        return None
    end = _end_bin(pool, amount, swap_for_y)
    if end is None or end != target:  # empty bins carried it past (or out): stop short
        amount -= 1
        end = _end_bin(pool, amount, swap_for_y) if amount > 0 else None
    if end is None or end == active:
        return None
    token_in = pool.base if down else pool.quote
    out = pool.amount_out(token_in, amount)
    return FlowTrade(token_in, amount, out) if out > 0 else None


# --- depth -------------------------------------------------------------------------------------


def depth(pool: Pool, move: Decimal = ONE_PERCENT) -> tuple[Decimal, Decimal]:
    """(bid, ask): base tokens that selling / buying takes to move the mid by `move`."""
    if not 0 < move < 1:
        msg = f"a depth move is a fraction in (0, 1), got {move}"
        raise ValueError(msg)
    decimals = get_token(pool.tokens[0]).decimals
    if isinstance(pool, CpmmPool):
        x = Decimal(pool.reserve_base)
        bid = x * (1 / _CTX.sqrt(1 - move) - 1)
        ask = x * (1 - 1 / _CTX.sqrt(1 + move))
    elif isinstance(pool, DlmmBinPool):
        bid, ask = _dlmm_depth(pool, move)
    else:
        msg = f"no depth model for {type(pool).__name__}"
        raise TypeError(msg)
    return _whole(bid, decimals), _whole(ask, decimals)


def _whole(units: Decimal, decimals: int) -> Decimal:
    return Context(prec=12).plus(units.scaleb(-decimals))


def _dlmm_depth(pool: DlmmBinPool, move: Decimal) -> tuple[Decimal, Decimal]:
    active = pool.pair.active_id
    spot = Decimal(_bin_price(pool, active))
    floor_, ceiling = spot * (1 - move), spot * (1 + move)
    bid = Decimal(0)
    bin_id = active
    while pool.pair.min_bin_id <= bin_id and Decimal(price := _bin_price(pool, bin_id)) >= floor_:
        b = _bin(pool, bin_id)
        if b is None:
            break
        bid += Decimal(b.amount_y) * ONE / price  # the x that buys this bin's y
        bin_id -= 1
    ask = Decimal(0)
    bin_id = active
    while bin_id <= pool.pair.max_bin_id and Decimal(_bin_price(pool, bin_id)) <= ceiling:
        b = _bin(pool, bin_id)
        if b is None:
            break
        ask += b.amount_x
        bin_id += 1
    return bid, ask
