"""PostgreSQL side of the projector: load prior states, write a projection atomically.

A projection's rows and the log positions it reached are written in one
transaction, so after any crash the read model and its position agree and
each event is applied exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb

from schemas.codec import from_dict
from services.domain.order import OrderState, evolve
from services.projector.projection import ORDER_COLUMNS, Projection, order_row

LIVE_SCHEMA = "read_model"
_JSON_COLUMNS = {"route", "quotes"}


class ReadModelStore:
    """The read-model tables of one schema (the live one, or a rebuild beside it)."""

    def __init__(self, schema: str = LIVE_SCHEMA) -> None:
        self.schema = schema
        self._orders = sql.Identifier(schema, "orders")
        self._events = sql.Identifier(schema, "order_events")
        self._positions = sql.Identifier(schema, "log_positions")
        self._upsert_order = sql.SQL(
            "INSERT INTO {table} ({columns}) VALUES ({values}) "
            "ON CONFLICT (id) DO UPDATE SET {updates}"
        ).format(
            table=self._orders,
            columns=sql.SQL(", ").join(map(sql.Identifier, ORDER_COLUMNS)),
            values=sql.SQL(", ").join(sql.Placeholder(c) for c in ORDER_COLUMNS),
            updates=sql.SQL(", ").join(
                sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
                for c in ORDER_COLUMNS
                if c not in ("id", "created_at")
            ),
        )
        self._insert_event = sql.SQL(
            "INSERT INTO {table} (order_id, sequence, event_id, type, version, status, occurred_at,"
            " producer, prev_hash, hash, payload, log_partition, log_offset)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(table=self._events)
        self._upsert_position = sql.SQL(
            "INSERT INTO {table} (topic, partition, next_offset) VALUES (%s, %s, %s)"
            " ON CONFLICT (topic, partition) DO UPDATE"
            # A projector that lost the partition in a rebalance must not move it back.
            " SET next_offset = GREATEST({table}.next_offset, EXCLUDED.next_offset)"
        ).format(table=self._positions)

    async def positions(
        self, conn: AsyncConnection, topic: str, *, lock: bool = False
    ) -> dict[int, int]:
        """Next offset to read per partition, as last committed with the rows.

        With `lock`, the rows stay locked until the transaction ends, so two
        projectors briefly owning the same partition during a rebalance apply
        its records one after the other, never both.
        """
        query = sql.SQL("SELECT partition, next_offset FROM {} WHERE topic = %s").format(
            self._positions
        )
        if lock:
            query += sql.SQL(" FOR UPDATE")
        cursor = await conn.execute(query, (topic,))
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

    async def write(self, conn: AsyncConnection, topic: str, projection: Projection) -> None:
        """Write rows and positions; the caller owns the transaction."""
        async with conn.cursor() as cursor:
            if projection.events:
                await cursor.executemany(
                    self._insert_event,
                    [
                        (
                            row.envelope.order_id,
                            row.envelope.sequence,
                            row.envelope.event_id,
                            row.envelope.type,
                            row.envelope.version,
                            row.envelope.status.value,
                            row.envelope.occurred_at,
                            row.envelope.producer,
                            row.envelope.prev_hash,
                            row.hash,
                            Jsonb(row.payload_json),
                            row.partition,
                            row.offset,
                        )
                        for row in projection.events
                    ],
                )
            if projection.states:
                await cursor.executemany(
                    self._upsert_order,
                    [
                        {
                            k: Jsonb(v) if k in _JSON_COLUMNS and v is not None else v
                            for k, v in order_row(s).items()
                        }
                        for s in projection.states.values()
                    ],
                )
            await cursor.executemany(
                self._upsert_position,
                [(topic, partition, offset) for partition, offset in projection.positions.items()],
            )
