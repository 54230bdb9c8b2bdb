"""PostgreSQL edge of the API for the market: read-only queries over `market_data.*`.

The tables are the market projector's (services/projector/market.py); like
`read_model.py`, every failure to reach PostgreSQL is `ReadModelUnavailable` (a 503).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from schemas.market import MarketTick
from services.api.read_model import QUERY_TIMEOUT_SECONDS, ReadModelUnavailable

MARKET_SCHEMA = "market_data"


def _utc(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("at", "bucket_start"):
        if isinstance(row.get(key), datetime):
            row[key] = row[key].astimezone(UTC)
    return row


def tick_of(row: dict[str, Any]) -> MarketTick:
    """A stored latest tick as the record it was projected from."""
    return MarketTick.model_validate(
        {
            "pair": row["pair"],
            "base": row["base"],
            "quote": row["quote"],
            "slot": row["slot"],
            "at": row["at"],
            "reference": row["reference"],
            "venues": row["venues"],
        }
    )


class MarketReadModel:
    """Queries over the market tables of one schema."""

    def __init__(self, pool: AsyncConnectionPool, schema: str = MARKET_SCHEMA) -> None:
        self.pool = pool
        self._ticks = sql.Identifier(schema, "latest_ticks")
        self._candles = sql.Identifier(schema, "candles")
        self._trades = sql.Identifier(schema, "trades")

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[dict[str, Any]]]:
        try:
            async with self.pool.connection(timeout=QUERY_TIMEOUT_SECONDS) as conn:
                conn.row_factory = dict_row  # type: ignore[assignment]
                yield conn  # type: ignore[misc]
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            raise ReadModelUnavailable(
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            ) from None

    async def latest_ticks(self, pairs: Sequence[str]) -> dict[str, tuple[int, MarketTick]]:
        """pair -> (sequence, tick) of the newest tick of each of these pairs that has one."""
        async with self._connection() as conn:
            cursor = await conn.execute(
                sql.SQL("SELECT * FROM {} WHERE pair = ANY(%s)").format(self._ticks), (list(pairs),)
            )
            found = await cursor.fetchall()
        return {row["pair"]: (row["sequence"], tick_of(row)) for row in found}

    async def day_stats(self, pairs: Sequence[str], now: datetime) -> dict[str, dict[str, Any]]:
        """Per pair, over the 1 m candles of the last 24 h: first open, last close, volumes."""
        async with self._connection() as conn:
            cursor = await conn.execute(
                sql.SQL(
                    "SELECT pair, (array_agg(open ORDER BY bucket_start))[1] AS first_open,"
                    " (array_agg(close ORDER BY bucket_start DESC))[1] AS last_close,"
                    " sum(volume_base) AS volume_base, sum(volume_quote) AS volume_quote,"
                    " sum(trades) AS trades"
                    " FROM {} WHERE pair = ANY(%s) AND interval = '1m' AND bucket_start >= %s"
                    " GROUP BY pair"
                ).format(self._candles),
                (list(pairs), now - timedelta(hours=24)),
            )
            return {row["pair"]: row for row in await cursor.fetchall()}

    async def candles(
        self, pair: str, interval: str, start: datetime, end: datetime, limit: int
    ) -> list[dict[str, Any]]:
        """Candles with start <= bucket_start < end, oldest first."""
        async with self._connection() as conn:
            cursor = await conn.execute(
                sql.SQL(
                    "SELECT bucket_start, open, high, low, close, volume_base, volume_quote, trades"
                    " FROM {} WHERE pair = %s AND interval = %s"
                    " AND bucket_start >= %s AND bucket_start < %s"
                    " ORDER BY bucket_start LIMIT %s"
                ).format(self._candles),
                (pair, interval, start, end, limit),
            )
            return [_utc(row) for row in await cursor.fetchall()]

    async def trades(self, pair: str, limit: int, before: int | None) -> list[dict[str, Any]]:
        """The pair's trades, newest first; with `before`, those of a lower sequence."""
        async with self._connection() as conn:
            cursor = await conn.execute(
                sql.SQL(
                    "SELECT * FROM {} WHERE pair = %s AND sequence < %s"
                    " ORDER BY sequence DESC LIMIT %s"
                ).format(self._trades),
                (pair, before if before is not None else 2**62, limit),
            )
            return [_utc(row) for row in await cursor.fetchall()]
