"""Markets: `/api/markets[/{pair}[/candles|/trades]]` and `WS /ws/markets/{pair}`.

Read from the market tables the market projector keeps (`market_data.*`), plus quotes
through the pricing core for the best venue and the depth ladder. Pairs are written
as in URLs, `SOL-USDC`; an unknown one is 404 `UNKNOWN_PAIR` with the valid ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Query, WebSocket
from pydantic import BaseModel, ConfigDict, Field

from services.api.deps import (
    Administrator,
    Authenticated,
    LaunchesDep,
    MarketFeedDep,
    MarketReadDep,
    QuoterDep,
    Runtime,
    SocketLimits,
    SocketPrincipal,
)
from services.api.errors import ApiError
from services.api.market_feed import Numbered
from services.api.market_sockets import serve_market
from services.api.markets import (
    PAIRS,
    best_venues,
    iso,
    ladder,
    market_pairs,
    plain,
    spot_price,
    summary,
)
from services.api.models import ErrorBody
from services.api.routes.ws import admitted
from services.api.sockets import CLOSE_NOT_FOUND, refuse
from services.domain import display
from services.domain.market import INTERVALS
from services.market.commands import encode_move, parse_duration, parse_price

router = APIRouter(tags=["markets"])
MAX_CANDLES = 10_000
DEFAULT_CANDLES = 1_000
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},
    401: {"model": ErrorBody},
    404: {"model": ErrorBody},
    503: {"model": ErrorBody},
}
_MOVE_ERRORS: dict[int | str, dict[str, Any]] = {**_ERRORS, 403: {"model": ErrorBody}}


def known_pair(pair: str, pairs: Mapping[str, tuple[str, str]]) -> str:
    """The pair as the tables key it, or 404 UNKNOWN_PAIR naming the valid ones."""
    if pair.upper() in pairs:
        return pair.upper()
    valid = list(pairs)
    raise ApiError(
        404,
        {
            "error": "UNKNOWN_PAIR",
            "message": f"No market {pair!r}; the engine trades {', '.join(valid)}",
            "validPairs": valid,
        },
    )


def _moment(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError.bad_request(
            "INVALID_RANGE", "ERR_030", f"{name} must be an ISO 8601 time, got {value!r}", name
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@router.get("/api/markets", responses=_ERRORS)
async def markets(
    read: MarketReadDep, quoter: QuoterDep, launches: LaunchesDep, _caller: Authenticated
) -> dict[str, Any]:
    """Every pair the engine trades (launched ones once their pool exists): mid per venue, best
    venue now, 24 h change and volume, and a launched pair's launch (when it opens)."""
    pairs = market_pairs(launches)
    latest = await read.latest_ticks(list(pairs))
    stats = await read.day_stats(list(pairs), datetime.now(UTC))
    found = []
    for pair, (base, quote) in pairs.items():
        reference = latest[pair][1].reference if pair in latest else None
        best = await best_venues(quoter, base, quote, reference)
        launch = launches.get(base) if pair not in PAIRS else None
        found.append(summary(pair, (base, quote), latest.get(pair), stats.get(pair), best, launch))
    return {"markets": found}


@router.get("/api/markets/{pair}", responses=_ERRORS)
async def market(
    pair: str,
    read: MarketReadDep,
    quoter: QuoterDep,
    launches: LaunchesDep,
    _caller: Authenticated,
) -> dict[str, Any]:
    """One market: its summary plus the depth ladder (1 to 10,000 of the base, both sides)."""
    pairs = market_pairs(launches)
    pair = known_pair(pair, pairs)
    base, quote = pairs[pair]
    latest = (await read.latest_ticks([pair])).get(pair)
    stats = (await read.day_stats([pair], datetime.now(UTC))).get(pair)
    reference = latest[1].reference if latest else None
    best = await best_venues(quoter, base, quote, reference)
    launch = launches.get(base) if pair not in PAIRS else None
    body = summary(pair, (base, quote), latest, stats, best, launch)
    if reference is None:  # no tick yet: price the ladder's buys at what one unit sells for
        reference = await spot_price(quoter, base, quote)
    body["ladder"] = await ladder(quoter, base, quote, reference) if reference else None
    return body


@router.get("/api/markets/{pair}/candles", responses=_ERRORS)
async def candles(
    pair: str,
    read: MarketReadDep,
    launches: LaunchesDep,
    _caller: Authenticated,
    interval: str = "1m",
    start: Annotated[str | None, Query(alias="from", description="ISO 8601, inclusive")] = None,
    end: Annotated[str | None, Query(alias="to", description="ISO 8601, exclusive")] = None,
) -> dict[str, Any]:
    """OHLCV candles (1s, 1m, 1h, 1d; UTC buckets), oldest first; by default the last 1,000."""
    pair = known_pair(pair, market_pairs(launches))
    if interval not in INTERVALS:
        raise ApiError.bad_request(
            "INVALID_INTERVAL",
            "ERR_030",
            f"interval must be one of {', '.join(INTERVALS)}, got {interval!r}",
            "interval",
        )
    step = timedelta(seconds=INTERVALS[interval])
    until = _moment(end, "to") or datetime.now(UTC)
    since = _moment(start, "from") or until - DEFAULT_CANDLES * step
    if since >= until:
        raise ApiError.bad_request("INVALID_RANGE", "ERR_030", "from must be before to", "from")
    if (until - since) / step > MAX_CANDLES:
        raise ApiError.bad_request(
            "INVALID_RANGE",
            "ERR_030",
            f"at most {MAX_CANDLES:,} {interval} candles per request; narrow from/to",
            "from",
        )
    rows = await read.candles(pair, interval, since, until, MAX_CANDLES)
    return {
        "pair": pair,
        "interval": interval,
        "from": iso(since),
        "to": iso(until),
        "candles": [
            {
                "start": iso(row["bucket_start"]),
                "open": str(row["open"]),
                "high": str(row["high"]),
                "low": str(row["low"]),
                "close": str(row["close"]),
                "volumeBase": plain(row["volume_base"]),
                "volumeQuote": plain(row["volume_quote"]),
                "trades": row["trades"],
            }
            for row in rows
        ],
    }


@router.get("/api/markets/{pair}/trades", responses=_ERRORS)
async def trades(
    pair: str,
    read: MarketReadDep,
    launches: LaunchesDep,
    _caller: Authenticated,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, description="Only sequences below this")] = None,
) -> dict[str, Any]:
    """The pair's trades (the engine's and the background's), newest first."""
    pairs = market_pairs(launches)
    pair = known_pair(pair, pairs)
    base, quote = pairs[pair]
    rows = await read.trades(pair, limit, before)
    return {
        "pair": pair,
        "trades": [
            {
                "sequence": row["sequence"],
                "venue": row["venue"],
                "side": row["side"],
                "amountBase": str(row["amount_base"]),
                "amountQuote": str(row["amount_quote"]),
                "price": str(row["price"]),
                "slot": row["slot"],
                "at": iso(row["at"]),
                "signature": row["signature"],
                "source": row["source"],
                "message": f"{row['side']} {display.amount(row['amount_base'], base)} at"
                f" {display.price(row['price'], quote, base)} on {row['venue'].title()}",
            }
            for row in rows
        ],
        "nextBefore": rows[-1]["sequence"] if len(rows) == limit else None,
    }


@router.websocket("/ws/markets/{pair}")
async def market_socket(
    websocket: WebSocket,
    pair: str,
    feed: MarketFeedDep,
    read: MarketReadDep,
    launches: LaunchesDep,
    principal: SocketPrincipal,
    limits: SocketLimits,
) -> None:
    """The pair's latest tick at once, then every tick live, in sequence order."""
    async with admitted(websocket, principal, limits) as admitted_as:
        if admitted_as is None:
            return
        pairs = market_pairs(launches)
        if pair.upper() not in pairs:
            await refuse(
                websocket,
                "UNKNOWN_PAIR",
                f"No market {pair!r}; the engine trades {', '.join(pairs)}",
                CLOSE_NOT_FOUND,
            )
            return
        name = pair.upper()

        async def stored() -> Numbered | None:
            return (await read.latest_ticks([name])).get(name)

        await serve_market(websocket, name, feed, stored)


class MoveRequest(BaseModel):
    """`{"to": "160", "over": "10s"}`: the price (a decimal string or an integer, never a
    float: money) and how long the move takes (as `oee market move --over`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: str | int = Field(description='The price to reach, quote per base, e.g. "160"')
    over: str = Field("10s", description="How long the move takes: 10s, 2m, 500ms")


@router.post("/api/markets/{pair}/move", status_code=202, responses=_MOVE_ERRORS)
async def move(
    pair: str, body: MoveRequest, runtime: Runtime, _admin: Administrator
) -> dict[str, Any]:
    """Admin: trade the pair's pools to a price over a time, as `oee market move` does.

    Writes the same `MarketMove` command to `market.commands`; the running market process
    applies it. 202 once the broker confirmed the write (the move itself takes `over`).
    """
    pairs = market_pairs(runtime.chain_events.launches)
    pair = known_pair(pair, pairs)
    try:
        price = parse_price(str(body.to))
    except ValueError as exc:
        raise ApiError.bad_request("INVALID_PRICE", "ERR_030", f"to: {exc}", "to") from None
    try:
        seconds = parse_duration(body.over)
    except ValueError as exc:
        raise ApiError.bad_request("INVALID_DURATION", "ERR_030", str(exc), "over") from None
    settings = runtime.settings
    try:
        async with asyncio.timeout(settings.produce_timeout_seconds):
            await runtime.producer.send_and_wait(
                settings.market_commands_topic,
                value=encode_move(pair, price, seconds),
                key=pair.encode(),
            )
    except (TimeoutError, KafkaError, OSError) as exc:
        reason = str(exc) or f"not confirmed within {settings.produce_timeout_seconds}s"
        raise ApiError(
            503,
            {"error": "LOG_UNAVAILABLE", "message": f"The move was not sent: {reason}; retry"},
            {"Retry-After": "5"},
        ) from None
    base, quote = pairs[pair]
    return {
        "pair": pair,
        "to": str(price),
        "overSeconds": seconds,
        "message": f"Moving {pair} to {display.price(price, quote, base)} over {seconds:g}s;"
        " the market process applies it",
    }
