"""PostgreSQL side of the projector: load prior states, write a projection atomically.

A projection's rows and the log positions it reached are written in one
transaction, so after any crash the read model and its position agree and
each event is applied exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb

from schemas.codec import from_dict
from services.common.db import LIVE_SCHEMA
from services.domain.order import OrderState, evolve
from services.projector.projection import ORDER_COLUMNS, EventRow, Projection, order_row

_JSON_COLUMNS = {"route", "quotes", "checks", "auto_sell"}


class ReadModelStore:
    """The read-model tables of one schema (the live one, or a rebuild beside it)."""

    def __init__(self, schema: str = LIVE_SCHEMA) -> None:
        self.schema = schema
        self._orders = sql.Identifier(schema, "orders")
        self._events = sql.Identifier(schema, "order_events")
        self._positions = sql.Identifier(schema, "log_positions")
        # The statements of every batch are composed once, here: composing them per batch
        # was 3 % of the projector's busy time (py-spy).
        self._copy_events = _rendered(
            sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                self._events, sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS))
            )
        )
        self._types: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        self._upsert_orders_sql: bytes | None = None
        positions = sql.SQL("SELECT partition, next_offset FROM {} WHERE topic = %s").format(
            self._positions
        )
        self._select_positions = _rendered(positions)
        self._lock_positions = _rendered(positions + sql.SQL(" FOR UPDATE"))
        self._select_last_sequences = _rendered(
            sql.SQL("SELECT id, last_sequence FROM {} WHERE id = ANY(%s)").format(self._orders)
        )
        # Every partition of a batch in one statement (not one per partition: a batch spans
        # most of the 12 partitions, and each statement is a round of parsing and planning).
        self._upsert_positions = _rendered(
            sql.SQL(
                "INSERT INTO {table} (topic, partition, next_offset)"
                " SELECT %s, * FROM unnest(%s::integer[], %s::bigint[])"
                " ON CONFLICT (topic, partition) DO UPDATE"
                # A projector that lost the partition in a rebalance must not move it back.
                " SET next_offset = GREATEST({table}.next_offset, EXCLUDED.next_offset)"
            ).format(table=self._positions)
        )

    async def positions(
        self, conn: AsyncConnection, topic: str, *, lock: bool = False
    ) -> dict[int, int]:
        """Next offset to read per partition, as last committed with the rows.

        With `lock`, the rows stay locked until the transaction ends, so two
        projectors briefly owning the same partition during a rebalance apply
        its records one after the other, never both.
        """
        query = self._lock_positions if lock else self._select_positions
        cursor = await conn.execute(query, (topic,))
        return dict(await cursor.fetchall())

    async def locked_positions_and_last_sequences(
        self, conn: AsyncConnection, topic: str, order_ids: Iterable[uuid.UUID]
    ) -> tuple[dict[int, int], dict[uuid.UUID, int]]:
        """`positions(lock=True)` and `last_sequences`, the two reads a batch starts with, in
        one round trip (a pipeline): each round trip is event-loop turns in the projector."""
        async with conn.pipeline():
            positions = await conn.execute(self._lock_positions, (topic,))
            sequences = await conn.execute(self._select_last_sequences, (list(order_ids),))
        return dict(await positions.fetchall()), dict(await sequences.fetchall())

    async def last_sequences(
        self, conn: AsyncConnection, order_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, int]:
        """The last sequence applied to each of these orders (absent: no event yet)."""
        cursor = await conn.execute(self._select_last_sequences, (list(order_ids),))
        return dict(await cursor.fetchall())

    async def load_states(
        self, conn: AsyncConnection, order_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, OrderState]:
        """Rebuild the current state of these orders by folding their stored events."""
        ids = list(order_ids)
        if not ids:
            return {}
        cursor = await conn.execute(
            sql.SQL(
                "SELECT order_id, sequence, event_id, type, version, occurred_at, producer,"
                " prev_hash, hash, payload FROM {} WHERE order_id = ANY(%s)"
                " ORDER BY order_id, sequence"
            ).format(self._events),
            (ids,),
        )
        states: dict[uuid.UUID, OrderState] = {}
        for row in await cursor.fetchall():
            order_id, sequence, event_id, type_, version, occurred_at, producer, prev_hash = row[:8]
            event_hash, payload = row[8:]
            envelope = from_dict(
                {
                    "event_id": str(event_id),
                    "order_id": str(order_id),
                    "sequence": sequence,
                    "type": type_,
                    "version": version,
                    "occurred_at": occurred_at.isoformat(),
                    "producer": producer,
                    "prev_hash": prev_hash,
                    "payload": payload,
                }
            )
            states[order_id] = evolve(states.get(order_id), envelope, event_hash)
        return states

    async def write(
        self,
        conn: AsyncConnection,
        topic: str,
        projection: Projection,
        orders: Iterable[OrderState] | None = None,
    ) -> None:
        """Write event rows, order rows and positions; the caller owns the transaction.

        `orders` are the order rows to write, by default every state the projection
        changed (a rebuild defers some, see `Rebuilder`). Event rows go in with one
        binary COPY, order rows with one upsert over arrays (one per column) and positions
        with another: a batch costs three statements whatever its size, where row-by-row
        `executemany` cost more client CPU than folding the events.
        """
        async with conn.cursor() as cursor:
            if projection.events:
                types = await self._column_types(conn, "order_events", EVENT_COLUMNS)
                async with cursor.copy(self._copy_events) as copy:
                    copy.set_types(types)
                    for row in projection.events:
                        await copy.write_row(_event_values(row))
            # The two upserts in one round trip.
            async with conn.pipeline():
                await self.write_orders(
                    conn, projection.states.values() if orders is None else orders
                )
                if projection.positions:
                    await cursor.execute(
                        self._upsert_positions,
                        (topic, list(projection.positions), list(projection.positions.values())),
                    )

    async def write_orders(self, conn: AsyncConnection, states: Iterable[OrderState]) -> None:
        """Insert or update the `orders` rows of these states."""
        rows = [_order_values(state) for state in states]
        if rows:
            columns = [list(column) for column in zip(*rows, strict=True)]
            await conn.execute(await self._upsert_orders(conn), columns)

    async def _upsert_orders(self, conn: AsyncConnection) -> bytes:
        """Insert or update every order of a batch from one array per column (built once)."""
        if self._upsert_orders_sql is None:
            types = await self._column_types(conn, "orders", ORDER_COLUMNS)
            self._upsert_orders_sql = _rendered(
                sql.SQL(
                    "INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays})"
                    " ON CONFLICT (id) DO UPDATE SET {updates}"
                ).format(
                    table=self._orders,
                    columns=sql.SQL(", ").join(map(sql.Identifier, ORDER_COLUMNS)),
                    arrays=sql.SQL(", ").join(
                        sql.SQL("%b::{}[]").format(sql.SQL(type_)) for type_ in types
                    ),
                    updates=sql.SQL(", ").join(
                        sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
                        for c in ORDER_COLUMNS
                        if c not in ("id", "created_at")
                    ),
                )
            )
        return self._upsert_orders_sql

    async def _column_types(
        self, conn: AsyncConnection, table: str, columns: Sequence[str]
    ) -> list[str]:
        """The types of `columns`, read once from the catalog: COPY and the casts need them."""
        key = (table, tuple(columns))
        if key not in self._types:
            cursor = await conn.execute(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
                " JOIN pg_class c ON c.oid = a.attrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0",
                (self.schema, table),
            )
            found: dict[str, str] = dict(await cursor.fetchall())
            self._types[key] = [found[column] for column in columns]
        return self._types[key]


def _rendered(statement: sql.Composed) -> bytes:
    """A statement's text: names quoted by psycopg without a connection, parameters left as %s."""
    return statement.as_bytes(None)


EVENT_COLUMNS: tuple[str, ...] = (
    "order_id", "sequence", "event_id", "type", "version", "status", "occurred_at", "producer",
    "prev_hash", "hash", "payload", "log_partition", "log_offset",
)  # fmt: skip


def _event_values(row: EventRow) -> tuple[Any, ...]:
    """An `order_events` row in `EVENT_COLUMNS` order."""
    envelope = row.envelope
    return (
        envelope.order_id,
        envelope.sequence,
        envelope.event_id,
        envelope.type,
        envelope.version,
        envelope.status.value,
        envelope.occurred_at,
        envelope.producer,
        envelope.prev_hash,
        row.hash,
        Jsonb(row.payload_json, dumps=_already_json),
        row.partition,
        row.offset,
    )


def _order_values(state: OrderState) -> tuple[Any, ...]:
    """An `orders` row in `ORDER_COLUMNS` order, JSON columns wrapped for jsonb."""
    return tuple(
        _jsonb(value) if name in _JSON_COLUMNS and value is not None else value
        for name, value in order_row(state).items()
    )


def _jsonb(value: Any) -> Jsonb:
    """A jsonb parameter serialised by orjson (the stdlib encoder was a third of the write)."""
    return Jsonb(value, dumps=_dumps)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _already_json(value: str) -> str:
    return value
