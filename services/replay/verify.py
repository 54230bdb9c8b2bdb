"""Verify the live read models against the log: rebuild beside them, compare row by row,
and check every order's hash chain on the way.

The scratch schema is rebuilt up to the positions the live schema says it has
reached, so both claim to reflect the same prefix of the log. The final catch-up
and the comparison run while the live `log_positions` is locked (EXCLUSIVE), so the
live projector pauses between two batches for that long and the two cannot drift
apart; API reads are not blocked. After the comparison the rest of the log is read
too, for the hash chain only.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection, sql

from services.common.db import LIVE_SCHEMA
from services.common.settings import Settings
from services.replay.parallel import run_to_in_parallel
from services.replay.rebuilder import (
    Progress,
    Rebuilder,
    RebuildReport,
    ahead_of,
    check_schema_name,
    live_positions,
)

# The tables compared, with their keys (log_positions are equal by construction).
COMPARED: dict[str, tuple[str, ...]] = {
    "orders": ("id",),
    "order_events": ("order_id", "sequence"),
}


@dataclass(frozen=True)
class RowDifference:
    """One key whose row differs between the live and the rebuilt table (or exists in one only)."""

    table: str
    key: tuple[Any, ...]
    live: dict[str, Any] | None
    rebuilt: dict[str, Any] | None

    @property
    def columns(self) -> list[str]:
        """The columns whose values differ (all of them when the row is on one side only)."""
        if self.live is None or self.rebuilt is None:
            return list((self.live or self.rebuilt or {}).keys())
        return [c for c in self.live if self.live[c] != self.rebuilt.get(c)]

    def describe(self) -> str:
        key = ", ".join(str(k) for k in self.key)
        if self.rebuilt is None:
            return f"{self.table} ({key}): in the live read model only, not derivable from the log"
        if self.live is None:
            return f"{self.table} ({key}): missing from the live read model"
        changes = "; ".join(
            f"{c}: live {self.live[c]!r} != log {self.rebuilt.get(c)!r}" for c in self.columns
        )
        return f"{self.table} ({key}): {changes}"


def pair_rows(
    table: str, key_columns: Sequence[str], rows: Sequence[tuple[str, dict[str, Any]]]
) -> list[RowDifference]:
    """Group one-sided rows (`("live"|"rebuilt", row)`) by key into differences, in key order."""
    by_key: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for side, row in rows:
        by_key.setdefault(tuple(row[c] for c in key_columns), {})[side] = row
    return [
        RowDifference(table, key, sides.get("live"), sides.get("rebuilt"))
        for key, sides in by_key.items()
    ]


@dataclass
class VerifyResult:
    report: RebuildReport
    compared_at: dict[int, int]  # the live positions both sides were compared at
    differences: list[RowDifference] = field(default_factory=list)  # the first `limit`
    differing: dict[str, int] = field(default_factory=dict)  # keys that differ, per table
    scratch: str | None = None  # the scratch schema, when kept

    @property
    def ok(self) -> bool:
        return (
            not any(self.differing.values())
            and self.report.chain_breaks == 0
            and not self.report.short
        )


async def _columns(conn: AsyncConnection[Any], schema: str, table: str) -> list[str]:
    cursor = await conn.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (schema, table),
    )
    return [row[0] for row in await cursor.fetchall()]


async def compare(
    conn: AsyncConnection[Any],
    live: str,
    rebuilt: str,
    *,
    limit: int = 20,
    tables: Mapping[str, tuple[str, ...]] = COMPARED,
) -> tuple[list[RowDifference], dict[str, int]]:
    """Rows of `live` and `rebuilt` that differ (EXCEPT both ways); caller owns the transaction."""
    differences: list[RowDifference] = []
    counts: dict[str, int] = {}
    for table, key in tables.items():
        columns = await _columns(conn, live, table)
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        keys = sql.SQL(", ").join(map(sql.Identifier, key))
        diff = sql.Identifier(f"replay_diff_{table}")
        await conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE {diff} ON COMMIT DROP AS"
                " SELECT 'live'::text AS replay_side, * FROM"
                " (SELECT {cols} FROM {live} EXCEPT SELECT {cols} FROM {rebuilt}) l"
                " UNION ALL SELECT 'rebuilt', * FROM"
                " (SELECT {cols} FROM {rebuilt} EXCEPT SELECT {cols} FROM {live}) r"
            ).format(
                diff=diff,
                cols=cols,
                live=sql.Identifier(live, table),
                rebuilt=sql.Identifier(rebuilt, table),
            )
        )
        cursor = await conn.execute(
            sql.SQL("SELECT count(*) FROM (SELECT DISTINCT {keys} FROM {diff}) k").format(
                keys=keys, diff=diff
            )
        )
        row = await cursor.fetchone()
        counts[table] = int(row[0]) if row else 0
        if not counts[table]:
            continue
        cursor = await conn.execute(
            sql.SQL(
                "SELECT replay_side, {cols} FROM {diff} WHERE ({keys}) IN"
                " (SELECT DISTINCT {keys} FROM {diff} ORDER BY {keys} LIMIT %s)"
                " ORDER BY {keys}, replay_side"
            ).format(cols=cols, keys=keys, diff=diff),
            (limit,),
        )
        rows = [
            (side, dict(zip(columns, values, strict=True)))
            for side, *values in await cursor.fetchall()
        ]
        differences += pair_rows(table, key, rows)
    return differences, counts


async def verify(
    settings: Settings,
    *,
    live: str = LIVE_SCHEMA,
    scratch: str | None = None,
    keep: bool = False,
    limit: int = 20,
    batch_size: int = 10_000,
    on_progress: Progress | None = None,
    stop: asyncio.Event | None = None,
    workers: int = 1,
) -> VerifyResult:
    """Rebuild the topic into a scratch schema, compare it with `live`, check the hash chain."""
    scratch = check_schema_name(scratch or f"{live}_verify_{uuid.uuid4().hex[:8]}")
    async with Rebuilder(
        settings, scratch, batch_size=batch_size, on_progress=on_progress, stop=stop
    ) as rebuilder:
        await rebuilder.create_schema(template=live)
        try:
            topic = rebuilder.topic
            live_now = await live_positions(rebuilder.conn, live, topic)
            await run_to_in_parallel(rebuilder, live_now, workers)
            url = str(settings.database_url)
            async with (
                await AsyncConnection.connect(url, connect_timeout=5) as lock,
                lock.transaction(),
            ):
                await lock.execute(
                    sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(
                        sql.Identifier(live, "log_positions")
                    )
                )
                compared_at = await live_positions(lock, live, topic)
                await rebuilder.run_to(ahead_of(rebuilder.report.positions, compared_at))
                differences, counts = await compare(lock, live, scratch, limit=limit)
            # What the live model has not reached yet is still checked for the chain.
            await rebuilder.run_to(await rebuilder.end_offsets())
        finally:
            if not keep:
                await rebuilder.drop_schema()
        return VerifyResult(
            rebuilder.report, compared_at, differences, counts, scratch if keep else None
        )
