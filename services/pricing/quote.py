"""Quote an order: read both venues' pools concurrently, route locally, describe the plan.

The router's `routing` event and the API's quote endpoint both come from
`quote_order`, so what a client was quoted and what the router chose compare
directly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal

from schemas import events
from services.domain.tokens import from_base_units, to_base_units
from services.pricing import routing
from services.pricing.ports import ChainUnreachable, VenueAdapter
from services.venues.pool import Pair, Pool, Venue


class VenuesUnavailable(Exception):
    """No venue's pools could be read; a retry may help."""


@dataclass(frozen=True, slots=True)
class Quote:
    """One route in both forms: `plan` for the event contract (Decimal), `route` for execution
    (base units), so the `routing` event and the transaction come from the same choice."""

    plan: events.RoutePlan
    quotes: tuple[events.VenueQuote, ...]
    reason: str
    route: routing.Route


async def quote_order(
    venues: Sequence[VenueAdapter],
    token_in: str,
    token_out: str,
    amount: Decimal,
    slippage: Decimal,
    *,
    split_threshold_bps: Decimal,
    allowed: Collection[Venue] = tuple(Venue),
) -> Quote:
    """Quote every allowed venue at once and pick the best execution.

    Raises VenuesUnavailable, routing.NoRouteError or InsufficientLiquidityError.
    """
    asked = [v for v in venues if v.venue in allowed]
    loaded = await asyncio.gather(*(v.load_pools() for v in asked), return_exceptions=True)
    for result in loaded:
        if isinstance(result, ChainUnreachable):
            raise result  # our side is down, not a venue: no attempt is used up
    book: dict[tuple[Venue, Pair], Pool] = {}
    slot = 0
    unavailable: dict[Venue, str] = {}
    for adapter, result in zip(asked, loaded, strict=True):
        if isinstance(result, BaseException):
            unavailable[adapter.venue] = f"{type(result).__name__}: {result}"
            continue
        slot = max(slot, result[0])
        book.update(result[1])
    if not book:
        raise VenuesUnavailable(
            "; ".join(f"{v}: {e}" for v, e in unavailable.items()) or "no venue"
        )
    quoted_at = time.time()
    route = routing.plan_route(
        book,
        token_in,
        token_out,
        to_base_units(token_in, amount),
        slippage=slippage,
        split_threshold_bps=split_threshold_bps,
        now=Decimal(quoted_at),
        venues=[v.venue for v in asked if v.venue not in unavailable],
    )
    quotes = tuple(_venue_quote(token_in, token_out, q) for q in route.offers) + tuple(
        events.VenueQuote(
            venue=v.value, amount_out=Decimal(0), fee=Decimal(0), price_impact=Decimal(0), error=e
        )
        for v, e in unavailable.items()
    )
    plan = events.RoutePlan(
        kind=route.kind.value,
        legs=tuple(
            events.RouteLeg(
                venue=leg.venue.value,
                token_in=leg.token_in,
                token_out=leg.token_out,
                amount_in=from_base_units(leg.token_in, leg.amount_in),
                amount_out=from_base_units(leg.token_out, leg.amount_out),
                fee=from_base_units(leg.token_in, leg.fee),
                share=leg.share,
            )
            for leg in route.legs
        ),
        amount_out=from_base_units(token_out, route.amount_out),
        min_amount_out=from_base_units(token_out, route.min_amount_out),
        price_impact=route.price_impact,
        split_improvement_bps=route.split_improvement_bps,
        market_slot=slot,
        quoted_at=quoted_at,
    )
    return Quote(plan, quotes, route.reason, route)


def _venue_quote(token_in: str, token_out: str, quote: routing.VenueOffer) -> events.VenueQuote:
    return events.VenueQuote(
        venue=quote.venue.value,
        amount_out=from_base_units(token_out, quote.amount_out),
        fee=from_base_units(token_in, quote.fee),
        price_impact=quote.price_impact,
        error=quote.error,
    )
