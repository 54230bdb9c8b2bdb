"""PostgreSQL side of the market projector: write a market projection atomically.

Rows, the per-pair sequences and the log positions go in one transaction (the
caller's), so after any crash the tables and their positions agree and each record
is applied exactly once. Partial candles are merged into the stored ones by the
upsert, which mirrors `services.domain.market.merge`.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb

from services.projector.market_projection import (
    CANDLE_COLUMNS,
    TRADE_COLUMNS,
    MarketProjection,
    candle_values,
    trade_values,
    venues_json,
)

MARKET_SCHEMA = "market_data"
"""The schema the API reads: the market projector writes it, `oee replay rebuild` replaces it."""

MARKET_TABLES = ("trades", "candles", "latest_ticks", "sequences", "log_positions")


class MarketStore:
    """The market tables of one schema (the live one, or a rebuild beside it)."""

    def __init__(self, schema: str = MARKET_SCHEMA) -> None:
        self.schema = schema
        self._positions = sql.Identifier(schema, "log_positions")
        self._sequences = sql.Identifier(schema, "sequences")
        candles = sql.Identifier(schema, "candles")
        self._insert_trades = sql.SQL(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (pair, sequence) DO NOTHING"
        ).format(
            sql.Identifier(schema, "trades"),
            sql.SQL(", ").join(map(sql.Identifier, TRADE_COLUMNS)),
            sql.SQL(", ").join(sql.Placeholder() * len(TRADE_COLUMNS)),
        )
        # merge(stored, partial): open from the lower first_sequence, close from the higher
        # last_sequence, extremes, sums.
        self._upsert_candles = sql.SQL(
            "INSERT INTO {t} ({columns}) VALUES ({values})"
            " ON CONFLICT (pair, interval, bucket_start) DO UPDATE SET"
            " open = CASE WHEN EXCLUDED.first_sequence < {t}.first_sequence"
            "   THEN EXCLUDED.open ELSE {t}.open END,"
            " first_sequence = LEAST({t}.first_sequence, EXCLUDED.first_sequence),"
            " close = CASE WHEN EXCLUDED.last_sequence > {t}.last_sequence"
            "   THEN EXCLUDED.close ELSE {t}.close END,"
            " last_sequence = GREATEST({t}.last_sequence, EXCLUDED.last_sequence),"
            " high = GREATEST({t}.high, EXCLUDED.high),"
            " low = LEAST({t}.low, EXCLUDED.low),"
            " volume_base = {t}.volume_base + EXCLUDED.volume_base,"
            " volume_quote = {t}.volume_quote + EXCLUDED.volume_quote,"
            " trades = {t}.trades + EXCLUDED.trades"
        ).format(
            t=candles,
            columns=sql.SQL(", ").join(map(sql.Identifier, CANDLE_COLUMNS)),
            values=sql.SQL(", ").join(sql.Placeholder() * len(CANDLE_COLUMNS)),
        )
        self._upsert_tick = sql.SQL(
            "INSERT INTO {t} (pair, sequence, base, quote, slot, at, reference, venues)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (pair) DO UPDATE SET sequence = EXCLUDED.sequence,"
            " base = EXCLUDED.base, quote = EXCLUDED.quote, slot = EXCLUDED.slot,"
            " at = EXCLUDED.at, reference = EXCLUDED.reference, venues = EXCLUDED.venues"
            " WHERE {t}.sequence < EXCLUDED.sequence"
        ).format(t=sql.Identifier(schema, "latest_ticks"))
        self._upsert_sequence = sql.SQL(
            "INSERT INTO {t} (topic, pair, last_sequence) VALUES (%s, %s, %s)"
            " ON CONFLICT (topic, pair) DO UPDATE"
            " SET last_sequence = GREATEST({t}.last_sequence, EXCLUDED.last_sequence)"
        ).format(t=self._sequences)
        self._upsert_position = sql.SQL(
            "INSERT INTO {t} (topic, partition, next_offset) VALUES (%s, %s, %s)"
            " ON CONFLICT (topic, partition) DO UPDATE"
            " SET next_offset = GREATEST({t}.next_offset, EXCLUDED.next_offset)"
        ).format(t=self._positions)

    async def positions(
        self, conn: AsyncConnection[Any], topics: tuple[str, ...], *, lock: bool = False
    ) -> dict[tuple[str, int], int]:
        """Next offset to read per (topic, partition); with `lock`, held until commit."""
        query = sql.SQL(
            "SELECT topic, partition, next_offset FROM {} WHERE topic = ANY(%s)"
        ).format(self._positions)
        if lock:
            query += sql.SQL(" FOR UPDATE")
        cursor = await conn.execute(query, (list(topics),))
        return {(topic, partition): offset for topic, partition, offset in await cursor.fetchall()}

    async def last_sequences(self, conn: AsyncConnection[Any]) -> dict[tuple[str, str], int]:
        """(topic, pair) -> the last sequence applied (a few rows: one per pair and topic)."""
        cursor = await conn.execute(
            sql.SQL("SELECT topic, pair, last_sequence FROM {}").format(self._sequences)
        )
        return {(topic, pair): seq for topic, pair, seq in await cursor.fetchall()}

    async def write(self, conn: AsyncConnection[Any], projection: MarketProjection) -> None:
        """Trades, merged candles, newest ticks, sequences and positions; caller's transaction."""
        async with conn.cursor() as cursor:
            if projection.trades:
                await cursor.executemany(
                    self._insert_trades, [trade_values(row) for row in projection.trades]
                )
            if projection.candles:
                # In key order, so two writers never lock the same rows in opposite orders.
                await cursor.executemany(
                    self._upsert_candles,
                    [candle_values(projection.candles[key]) for key in sorted(projection.candles)],
                )
            for pair, row in sorted(projection.ticks.items()):
                tick = row.tick
                await cursor.execute(
                    self._upsert_tick,
                    (
                        pair, row.sequence, tick.base, tick.quote, tick.slot, tick.at,
                        tick.reference, Jsonb(venues_json(tick)),
                    ),
                )  # fmt: skip
            if projection.sequences:
                await cursor.executemany(
                    self._upsert_sequence,
                    [(topic, pair, seq) for (topic, pair), seq in projection.sequences.items()],
                )
            if projection.positions:
                await cursor.executemany(
                    self._upsert_position,
                    [(topic, p, offset) for (topic, p), offset in projection.positions.items()],
                )
