"""Each leg's exact input and minimum out: the order's slippage guard as the programs see it.

The swap programs check each instruction alone, and an instruction's input is a fixed amount,
so the order's one guard (at least `min_amount_out` of tokenOut) becomes one per leg:

- **The last hop** must pay the order's minimum: each of its legs at least its quote's share of
  it (rounded up), so the transaction as a whole never pays less than the order allows, whatever
  the earlier hops did. This is the order's protection; nothing below loosens it.
- **An earlier hop** gets its share of the order's allowance. The order keeps `k =
  min_amount_out / quoted out` of its quote; with `n` hops each hop keeps `k ** (1/n)` of its
  own (a two-hop: `sqrt(k)` each, so the product of the hops' allowances is the order's). A
  first hop's leg must pay at least its quote x `sqrt(k)`.
- **A later hop spends exactly the previous hop's minimum** (split across its legs by their
  planned inputs), never more, so it never spends tokens the previous hop did not guarantee.
  What the previous hop paid above its minimum stays in the wallet as the intermediate token:
  dust of at most that hop's allowance, as with aggregators that have no route program to
  sweep it into the next swap.

Before this (issue 16) an earlier hop had to pay exactly its quote, because the next hop spent
exactly that: with ~60 swaps landing per 400 ms block the first pool had usually moved, and
two-hops failed SLIPPAGE_EXCEEDED and retried (all 452 retries of a 15 s run at 150/s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, localcontext
from typing import Protocol

_PRECISION = 50  # digits: base-unit amounts up to 10**20 times a ratio, with room to spare


class PlannedLeg(Protocol):
    """One swap of a route as planned: its hop, its input, and what the quote said it pays."""

    @property
    def hop(self) -> int: ...

    @property
    def amount_in(self) -> int: ...

    @property
    def amount_out(self) -> int: ...


@dataclass(frozen=True, slots=True)
class LegGuard:
    """What one swap instruction carries: exactly `amount_in` in, at least `min_out` back."""

    amount_in: int
    min_out: int


def hop_keep(quoted_out: int, min_amount_out: int, hops: int) -> Decimal:
    """The share of its quote each hop must pay so that `hops` hops keep the order's share."""
    if quoted_out <= 0 or hops <= 0:
        msg = f"no hop keeps a share of a quote of {quoted_out} over {hops} hops"
        raise ValueError(msg)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        keep = min(Decimal(1), Decimal(max(min_amount_out, 0)) / quoted_out)
        if hops == 1 or keep in (0, 1):
            return keep
        return keep.sqrt() if hops == 2 else keep ** (Decimal(1) / hops)


def leg_guards(legs: Sequence[PlannedLeg], min_amount_out: int) -> tuple[LegGuard, ...]:
    """Each leg's input and minimum out, in `legs` order (see the module docstring)."""
    if not legs:
        msg = "a route without legs has nothing to guard"
        raise ValueError(msg)
    hops = sorted({leg.hop for leg in legs})
    last = hops[-1]
    quoted = sum(leg.amount_out for leg in legs if leg.hop == last)
    if quoted <= 0:
        msg = "the last hop's legs carry no quoted output"
        raise ValueError(msg)
    keep = hop_keep(quoted, min_amount_out, len(hops))
    inputs = [leg.amount_in for leg in legs]
    min_outs = [0] * len(legs)
    for position, hop in enumerate(hops):
        members = [n for n, leg in enumerate(legs) if leg.hop == hop]
        if position > 0:
            previous = hops[position - 1]
            guaranteed = sum(m for n, m in enumerate(min_outs) if legs[n].hop == previous)
            _spend(inputs, members, guaranteed)
        for n in members:
            leg = legs[n]
            if hop == last:
                # Rounded up: the last hop's minimums add up to at least the order's.
                min_outs[n] = -(-leg.amount_out * max(min_amount_out, 0) // quoted)
            else:
                # A hop after the first spends less than planned (the previous hop's minimum),
                # so its quote shrinks by the keeps before it: `keep ** (position + 1)` in all.
                with localcontext() as ctx:
                    ctx.prec = _PRECISION
                    floor = (leg.amount_out * keep ** (position + 1)).to_integral_value(ROUND_FLOOR)
                min_outs[n] = int(floor)
    return tuple(LegGuard(a, m) for a, m in zip(inputs, min_outs, strict=True))


def _spend(inputs: list[int], members: Sequence[int], guaranteed: int) -> None:
    """Set the hop's legs' inputs to add up to at most the previous hop's guaranteed output (never
    more than planned), shared by their planned inputs, each rounded down."""
    planned = sum(inputs[n] for n in members)
    if planned <= 0:
        return
    total = min(planned, max(guaranteed, 0))
    for n in members:
        inputs[n] = inputs[n] * total // planned
