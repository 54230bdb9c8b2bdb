"""Plain builders of valid order events and hash-chained envelopes, shared by the tests.

Defaults describe one SOL->USDC order of 4 filled on METEORA alone; every value the
tests care about is a parameter.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from schemas import codec
from schemas.envelope import Envelope, genesis_hash, record_hash
from schemas.events import (
    OrderCompleted,
    OrderEvent,
    OrderRouted,
    OrderSubmitted,
    RouteLeg,
    RoutePlan,
    TransactionBuilt,
    TransactionSubmitted,
    VenueQuote,
)

Number = Decimal | int | str


def leg(
    venue: str = "METEORA",
    amount_in: Number = 4,
    amount_out: Number = 600,
    fee: Number = "0.004",
    share: Number = 1,
    *,
    token_in: str = "SOL",
    token_out: str = "USDC",
) -> RouteLeg:
    """One leg of a route."""
    return RouteLeg(
        venue=venue,
        token_in=token_in,
        token_out=token_out,
        amount_in=Decimal(amount_in),
        amount_out=Decimal(amount_out),
        fee=Decimal(fee),
        share=Decimal(share),
    )


def route_plan(
    legs: Sequence[RouteLeg] | None = None,
    *,
    amount_out: Number = 600,
    min_amount_out: Number = 597,
    price_impact: Number = "0.0002",
    split_improvement_bps: Number = 0,
    market_slot: int = 11,
    quoted_at: float = 1_750_000_000.25,
    kind: str | None = None,
) -> RoutePlan:
    """A valid plan: one METEORA leg unless `legs` are given; `kind` follows the leg count."""
    legs = tuple(legs) if legs is not None else (leg(),)
    return RoutePlan(
        kind=kind or ("single" if len(legs) == 1 else "split"),
        legs=legs,
        amount_out=Decimal(amount_out),
        min_amount_out=Decimal(min_amount_out),
        price_impact=Decimal(price_impact),
        split_improvement_bps=Decimal(split_improvement_bps),
        market_slot=market_slot,
        quoted_at=quoted_at,
    )


def quote(
    venue: str = "METEORA",
    amount_out: Number = 600,
    fee: Number = "0.004",
    price_impact: Number = 0,
    error: str | None = None,
) -> VenueQuote:
    """One venue's answer to a quote request (`error` when it did not quote)."""
    return VenueQuote(
        venue=venue,
        amount_out=Decimal(amount_out),
        fee=Decimal(fee),
        price_impact=Decimal(price_impact),
        error=error,
    )


def submitted(amount: Number = 4, slippage: Number = "0.005") -> OrderSubmitted:
    """A SOL->USDC order."""
    return OrderSubmitted(
        token_in="SOL", token_out="USDC", amount=Decimal(amount), slippage=Decimal(slippage)
    )


def completed(
    tx_hash: str,
    amount_out: Number,
    *,
    selected_dex: str = "METEORA",
    amount_in: Number = 4,
    fee: Number = "0.004",
) -> OrderCompleted:
    """A fill; the executed price is amount_out / amount_in."""
    return OrderCompleted(
        tx_hash=tx_hash,
        selected_dex=selected_dex,
        amount_in=Decimal(amount_in),
        amount_out=Decimal(amount_out),
        executed_price=Decimal(amount_out) / Decimal(amount_in),
        fee=Decimal(fee),
    )


def routed_and_sent(
    plan: RoutePlan, quotes: Iterable[VenueQuote], tx_hash: str, *, reason: str, attempt: int = 1
) -> list[OrderEvent]:
    """One attempt's routed, built (at the plan's minimum out) and submitted events."""
    return [
        OrderRouted(attempt=attempt, quotes=tuple(quotes), plan=plan, reason=reason),
        TransactionBuilt(attempt=attempt, min_amount_out=plan.min_amount_out),
        TransactionSubmitted(attempt=attempt, tx_hash=tx_hash),
    ]


def next_envelope(
    order_id: uuid.UUID,
    written: Sequence[bytes],
    payload: OrderEvent,
    *,
    start: datetime,
    producer: str = "test",
) -> Envelope:
    """The order's next event after its records `written`: the following sequence, chained
    to the last record's hash (the genesis hash first), `sequence` seconds after `start`."""
    sequence = len(written) + 1
    return Envelope.new(
        order_id=order_id,
        sequence=sequence,
        producer=producer,
        prev_hash=record_hash(written[-1]) if written else genesis_hash(order_id),
        payload=payload,
        occurred_at=start + timedelta(seconds=sequence),
    )


def envelope_chain(
    order_id: uuid.UUID, payloads: Iterable[OrderEvent], *, start: datetime, producer: str = "test"
) -> list[Envelope]:
    """Events 1..n of one order, a second apart after `start`, hash-chained as a producer
    writes them (each prev_hash is the previous record's hash, the first the genesis hash)."""
    chain: list[Envelope] = []
    written: list[bytes] = []
    for payload in payloads:
        envelope = next_envelope(order_id, written, payload, start=start, producer=producer)
        written.append(codec.encode(envelope))
        chain.append(envelope)
    return chain


def encoded_chain(
    order_id: uuid.UUID, payloads: Iterable[OrderEvent], *, start: datetime, producer: str = "test"
) -> list[bytes]:
    """`envelope_chain`, encoded: the record values as they stand on the log."""
    return [
        codec.encode(e) for e in envelope_chain(order_id, payloads, start=start, producer=producer)
    ]
