"""The API's market views: the pairs the engine trades, a market's summary, its depth ladder.

The ladder quotes through the pricing core (`quote_order`, behind the API's `Quoter`),
exactly as `/api/quote` and the router do, over whatever venues the quoter reads.
Buying is quoted as spending `size x reference price` of the quote token (the core
quotes exact inputs), so both sides of a rung trade about the same value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any, Protocol

from schemas.events import VenueQuote
from schemas.market import MarketTick, pair_name
from services.api.read_model import ReadModelUnavailable
from services.domain import display
from services.domain.launches import LaunchedToken, Launches
from services.domain.tokens import get_token
from services.pricing.quote import Quote, VenuesUnavailable
from services.pricing.routing import RoutingError
from services.venues.market import DEFAULT_PAIRS
from services.venues.pool import SwapError, Venue, display_name

PAIRS: dict[str, tuple[str, str]] = {pair_name(s.base, s.quote): s.pair for s in DEFAULT_PAIRS}
"""The seeded market's pairs ("SOL-USDC" -> ("SOL", "USDC")), in its order."""


def market_pairs(launches: Launches) -> dict[str, tuple[str, str]]:
    """Every pair the engine trades now: the seeded market's, then each launched token's pool
    once the chain created it (by symbol; before its open time it lists, but does not trade)."""
    pairs = dict(PAIRS)
    for symbol, token in sorted(launches.items()):
        if token.pool is not None:
            pairs.setdefault(token.pair, (symbol, token.quote))
    return pairs


def launch_json(token: LaunchedToken) -> dict[str, Any]:
    """A launched pair's launch: its pool, when it opens (chain time, UTC) and whether it has."""
    assert token.open_time is not None  # listed once the pool exists
    opens_at = datetime.fromtimestamp(token.open_time, UTC)
    return {
        "pool": token.pool,
        "venue": token.venue,
        "opensAt": iso(opens_at),
        "open": token.opened_slot is not None,
        "openedSlot": token.opened_slot,
        "display": {"opensAt": f"opens at {opens_at:%H:%M:%S} UTC"},
    }


LADDER_SIZES = (Decimal(1), Decimal(10), Decimal(100), Decimal(1000), Decimal(10000))
_BPS = Decimal(10_000)
_LADDER_SLIPPAGE = Decimal("0.01")  # a quote's min-out only; the ladder shows amounts out


class QuotesOrders(Protocol):
    """What the ladder needs of the API's quoter (services/api/quotes.py)."""

    async def quote(
        self,
        token_in: str,
        token_out: str,
        amount: Decimal,
        slippage: Decimal,
        venues: Any,
    ) -> Quote: ...


def plain(value: Decimal) -> str:
    """A decimal without trailing zeros or an exponent: 1059.0 -> "1059"."""
    return f"{value.normalize():f}" if value else "0"


def bps(fraction: Decimal) -> str:
    """A fraction as basis points, to 0.01 bps, as a decimal string."""
    return str((fraction * _BPS).quantize(Decimal("0.01")))


def tick_json(sequence: int, tick: MarketTick) -> dict[str, Any]:
    """A tick as the API shows it (camelCase, money as strings)."""
    return {
        "pair": tick.pair,
        "sequence": sequence,
        "slot": tick.slot,
        "at": tick.at.isoformat().replace("+00:00", "Z"),
        "reference": str(tick.reference),
        "venues": [
            {
                "venue": v.venue,
                "mid": str(v.mid),
                "depthBid": str(v.depth_bid),
                "depthAsk": str(v.depth_ask),
            }
            for v in tick.venues
        ],
    }


def tick_text(tick: MarketTick) -> str:
    """One line people read: "SOL-USDC 150.05 USDC/SOL (Raydium 150, Meteora 150.1)"."""
    venues = ", ".join(f"{display_name(v.venue)} {display.price(v.mid)}" for v in tick.venues)
    return f"{tick.pair} {display.price(tick.reference, tick.quote, tick.base)} ({venues})"


def _best(quotes: Sequence[VenueQuote]) -> str | None:
    usable = [q for q in quotes if not q.error and q.amount_out > 0]
    return max(usable, key=lambda q: q.amount_out).venue if usable else None


async def best_venues(
    quoter: QuotesOrders, base: str, quote: str, reference: Decimal | None
) -> dict[str, str | None] | None:
    """Where one unit of the base is best sold, and bought, now (fees included); None when
    the pools cannot be read."""
    try:
        sell = await quoter.quote(base, quote, Decimal(1), _LADDER_SLIPPAGE, tuple(Venue))
        spend = _quote_amount(quote, reference or (sell.plan.amount_out))
        buy = await quoter.quote(quote, base, spend, _LADDER_SLIPPAGE, tuple(Venue))
    except (ReadModelUnavailable, VenuesUnavailable, RoutingError, SwapError, ValueError):
        return None
    return {"sell": _best(sell.quotes), "buy": _best(buy.quotes)}


async def spot_price(quoter: QuotesOrders, base: str, quote: str) -> Decimal | None:
    """What one unit of the base sells for now, routed; None when the pools cannot be read."""
    try:
        sold = await quoter.quote(base, quote, Decimal(1), _LADDER_SLIPPAGE, tuple(Venue))
    except (ReadModelUnavailable, VenuesUnavailable, RoutingError, SwapError, ValueError):
        return None
    return sold.plan.amount_out or None


def _quote_amount(symbol: str, value: Decimal) -> Decimal:
    """`value` of a token, cut to its base units (never zero)."""
    unit = Decimal(1).scaleb(-get_token(symbol).decimals)
    return max(value.quantize(unit, rounding=ROUND_DOWN), unit)


def _side(
    quote: Quote, amount_in: Decimal, base_side_in: bool, base: str, quote_symbol: str
) -> dict[str, Any]:
    """One side of a rung: what the route and each venue pay for `amount_in`."""

    def priced(amount_out: Decimal, fee: Decimal, impact: Decimal) -> dict[str, Any]:
        token_in, token_out = (base, quote_symbol) if base_side_in else (quote_symbol, base)
        base_amount = amount_in if base_side_in else amount_out
        quote_amount = amount_out if base_side_in else amount_in
        price = quote_amount / base_amount if base_amount > 0 else None
        return {
            "amountIn": str(amount_in),
            "amountOut": str(amount_out),
            "price": str(price) if price is not None else None,
            "fee": str(fee),
            "feeToken": token_in,
            "priceImpactBps": bps(impact),
            "display": {
                "amountIn": display.amount(amount_in, token_in),
                "amountOut": display.amount(amount_out, token_out),
                "price": display.price(price, quote_symbol, base) if price else "",
                "fee": display.fee(fee, token_in),
                "priceImpact": display.impact(impact),
            },
        }

    plan = quote.plan
    token_in = base if base_side_in else quote_symbol
    # Fees of the hops that spend the order's own token (all of them on a direct pair).
    fee = sum((leg.fee for leg in plan.legs if leg.token_in == token_in), Decimal(0))
    routed = priced(plan.amount_out, fee, plan.price_impact)
    routed["venues"] = sorted({leg.venue for leg in plan.legs})
    routed["kind"] = plan.kind
    venues: dict[str, Any] = {}
    for q in quote.quotes:
        if q.error:
            venues[q.venue] = {"error": q.error}
        else:
            venues[q.venue] = priced(q.amount_out, q.fee, q.price_impact)
    return {"routed": routed, "venues": venues}


async def ladder(
    quoter: QuotesOrders, base: str, quote: str, reference: Decimal
) -> list[dict[str, Any]]:
    """For each size: what selling it, and buying about it, pays on each venue and routed."""

    async def one(amount: Decimal, sell: bool) -> dict[str, Any]:
        amount_in = amount if sell else _quote_amount(quote, amount * reference)
        try:
            found = await quoter.quote(
                base if sell else quote, quote if sell else base, amount_in, _LADDER_SLIPPAGE,
                tuple(Venue),
            )  # fmt: skip
        except (RoutingError, SwapError) as exc:
            return {"error": str(exc)}
        return _side(found, amount_in, sell, base, quote)

    sides = await asyncio.gather(
        *(one(size, sell) for size in LADDER_SIZES for sell in (True, False))
    )
    return [
        {"size": str(size), "sell": sides[2 * i], "buy": sides[2 * i + 1]}
        for i, size in enumerate(LADDER_SIZES)
    ]


def summary(
    pair: str,
    pair_tokens: tuple[str, str],
    latest: tuple[int, MarketTick] | None,
    stats: Mapping[str, Any] | None,
    best: Mapping[str, str | None] | None,
    launch: LaunchedToken | None = None,
) -> dict[str, Any]:
    """One market's line: mids per venue, best venue, 24 h change and volume (and for a
    launched token's pair, its launch)."""
    base, quote = pair_tokens
    change: Decimal | None = None
    if stats and stats.get("first_open"):
        change = (stats["last_close"] - stats["first_open"]) / stats["first_open"]
    volume_base = stats["volume_base"] if stats else Decimal(0)
    volume_quote = stats["volume_quote"] if stats else Decimal(0)
    tick = tick_json(*latest) if latest else None
    return {
        "pair": pair,
        "base": base,
        "quote": quote,
        "tick": tick,
        "venues": tick["venues"] if tick else [],
        "reference": tick["reference"] if tick else None,
        "bestVenue": dict(best) if best else None,
        "lastPrice": str(stats["last_close"]) if stats else None,
        "change24h": str(change) if change is not None else None,
        "volume24h": {"base": plain(volume_base), "quote": plain(volume_quote)},
        "trades24h": int(stats["trades"]) if stats else 0,
        "launch": launch_json(launch) if launch is not None else None,
        "display": {
            "reference": display.price(latest[1].reference, quote, base) if latest else "",
            "mids": {v.venue: display.price(v.mid) for v in (latest[1].venues if latest else ())},
            "change24h": display.percent(change) if change is not None else "",
            "volume24h": display.amount(volume_quote, quote),
        },
    }


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
