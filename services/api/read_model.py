"""PostgreSQL edge of the API: read-only queries over the projector's read models.

Every failure to reach PostgreSQL becomes `ReadModelUnavailable` (a 503), never a 500:
submissions keep working while the read side is down.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from schemas.codec import UndecodableEvent, from_dict
from schemas.envelope import Envelope
from services.api.listing import Cursor, OrderFilter
from services.common.db import LIVE_SCHEMA

QUERY_TIMEOUT_SECONDS = 2.0
# Connections of the read pool that sockets' history reads never take all of, so a request
# (a GET, a key lookup, a cancel) finds one while thousands of sockets wait for their turn.
RESERVED_FOR_REQUESTS = 3


class ReadModelUnavailable(RuntimeError):
    """PostgreSQL did not answer; the caller should retry later."""


@dataclass(frozen=True)
class OrderPage:
    rows: list[dict[str, Any]]
    total: int
    next_cursor: str | None


def open_read_pool(url: str, max_size: int = 10) -> AsyncConnectionPool:
    """A pool that does not wait for PostgreSQL: the API starts (and submits) while it is down."""
    return AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        open=False,
        timeout=QUERY_TIMEOUT_SECONDS,
        kwargs={"autocommit": True, "connect_timeout": 2},
    )


def _utc(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("created_at", "updated_at", "occurred_at"):
        if isinstance(row.get(key), datetime):
            row[key] = row[key].astimezone(UTC)
    return row


class ReadModel:
    """Queries over `read_model.orders` and `read_model.order_events`."""

    def __init__(self, pool: AsyncConnectionPool, schema: str = LIVE_SCHEMA) -> None:
        self.pool = pool
        self._orders = sql.Identifier(schema, "orders")
        self._events = sql.Identifier(schema, "order_events")
        # The bounded share of the pool for sockets' history reads; the rest wait in line
        # here (backpressure) rather than time out in the pool and close their sockets.
        self.history_slots = max(1, pool.max_size - RESERVED_FOR_REQUESTS)
        self._history_turns = asyncio.Semaphore(self.history_slots)

    @asynccontextmanager
    async def history_turn(self) -> AsyncIterator[None]:
        """One of the `history_slots` turns at the pool for a socket's read."""
        async with self._history_turns:
            yield

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

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.execute("SELECT 1")

    async def order(self, order_id: uuid.UUID) -> dict[str, Any] | None:
        async with self._connection() as conn:
            cursor = await conn.execute(
                sql.SQL("SELECT * FROM {} WHERE id = %s").format(self._orders), (order_id,)
            )
            row = await cursor.fetchone()
        return _utc(row) if row else None

    async def log_position(self, topic: str, partition: int) -> int:
        """The next offset the projector will read in `partition`: every record below it is in
        the rows (they commit together)."""
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT next_offset FROM read_model.log_positions"
                " WHERE topic = %s AND partition = %s",
                (topic, partition),
            )
            row = await cursor.fetchone()
        return int(row["next_offset"]) if row else 0

    async def pair(self, order_id: uuid.UUID) -> tuple[str, str] | None:
        """The order's (tokenIn, tokenOut), for filtering the firehose."""
        row = await self.order(order_id)
        return (row["token_in"], row["token_out"]) if row else None

    async def orders(self, where: OrderFilter, limit: int, after: Cursor | None) -> OrderPage:
        """One page, newest first, by keyset; `total` counts every match of the filters."""
        clauses: list[sql.Composable] = []
        params: list[Any] = []
        for column, op, value in (
            ("status", "=", where.status),
            ("token_in", "=", where.token_in),
            ("token_out", "=", where.token_out),
            ("created_at", ">=", where.created_from),
            ("created_at", "<", where.created_to),
            ("owner", "=", where.owner),
        ):
            if value is not None:
                clauses.append(sql.SQL("{} " + op + " %s").format(sql.Identifier(column)))
                params.append(value)
        filters = sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("TRUE")
        page_filters = filters
        page_params = list(params)
        if after is not None:
            page_filters = sql.SQL("{} AND (created_at, id) < (%s, %s)").format(filters)
            page_params += [after.created_at, after.order_id]
        async with self._connection() as conn:
            cursor = await conn.execute(
                sql.SQL(
                    "SELECT * FROM {} WHERE {} ORDER BY created_at DESC, id DESC LIMIT %s"
                ).format(self._orders, page_filters),
                [*page_params, limit + 1],
            )
            rows = [_utc(r) for r in await cursor.fetchall()]
            cursor = await conn.execute(
                sql.SQL("SELECT count(*) AS n FROM {} WHERE {}").format(self._orders, filters),
                params,
            )
            counted = await cursor.fetchone()
        total = int(counted["n"]) if counted else 0
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = Cursor(rows[-1]["created_at"], rows[-1]["id"]).encode() if more else None
        return OrderPage(rows, total, next_cursor)

    async def event_rows(
        self, order_id: uuid.UUID, sequences: Sequence[int] | None = None
    ) -> list[dict[str, Any]]:
        """Stored events of one order in sequence order; only `sequences` if given."""
        query = sql.SQL("SELECT * FROM {} WHERE order_id = %s").format(self._events)
        params: list[Any] = [order_id]
        if sequences is not None:
            query = sql.SQL("{} AND sequence = ANY(%s)").format(query)
            params.append(list(sequences))
        async with self._connection() as conn:
            cursor = await conn.execute(sql.SQL("{} ORDER BY sequence").format(query), params)
            return [_utc(r) for r in await cursor.fetchall()]

    async def envelopes(
        self, order_id: uuid.UUID, sequences: Sequence[int] | None = None
    ) -> list[Envelope]:
        """Stored events as envelopes, so history and live events become identical messages."""
        found = []
        for row in await self.event_rows(order_id, sequences):
            try:
                found.append(envelope_of(row))
            except UndecodableEvent:
                continue  # written by a newer version than this reader
        return found


def envelope_of(row: dict[str, Any]) -> Envelope:
    return from_dict(
        {
            "event_id": str(row["event_id"]),
            "order_id": str(row["order_id"]),
            "sequence": row["sequence"],
            "type": row["type"],
            "version": row["version"],
            "occurred_at": row["occurred_at"].isoformat(),
            "producer": row["producer"],
            "prev_hash": row["prev_hash"],
            "payload": row["payload"],
        }
    )
