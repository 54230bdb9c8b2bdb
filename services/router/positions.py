"""Where each router resumes each partition of the order log, kept in PostgreSQL.

A router folds every record of its partitions into order states; the resume position
is the offset from which a successor must re-read to rebuild the states of the orders
still running. Every router refreshes its rows each second, so a stale or missing row
means no live router owns that partition.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from services.common.process import retry_while_down

log = logging.getLogger(__name__)


class ResumePositions:
    """The `router.resume_positions` rows of one topic."""

    def __init__(self, db: AsyncConnectionPool, topic: str) -> None:
        self._db = db
        self._topic = topic

    async def load(self, partitions: list[int]) -> dict[int, int]:
        """Stored resume positions; while PostgreSQL is down the partitions wait for them."""

        async def read() -> dict[int, int]:
            async with self._db.connection() as conn:
                cursor = await conn.execute(
                    "SELECT partition, resume_offset FROM router.resume_positions"
                    " WHERE topic = %s AND partition = ANY(%s)",
                    (self._topic, partitions),
                )
                return dict(await cursor.fetchall())

        return await retry_while_down(
            read,
            is_outage=lambda exc: isinstance(exc, psycopg.OperationalError | PoolTimeout),
            what="PostgreSQL, for the resume positions,",
        )

    async def save(self, offsets: dict[int, int]) -> None:
        """Record where a successor must resume each partition (every second and at the end).

        A PostgreSQL outage only delays this: the last saved positions stay safe, just
        older. (It must not raise: an exception in a faust timer crashes the whole app.)
        """
        if not offsets:
            return
        try:
            async with self._db.connection() as conn, conn.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO router.resume_positions (topic, partition, resume_offset)"
                    " VALUES (%s, %s, %s)"
                    " ON CONFLICT (topic, partition) DO UPDATE"
                    " SET resume_offset = EXCLUDED.resume_offset, updated_at = now()",
                    [(self._topic, p, o) for p, o in offsets.items()],
                )
        except (psycopg.OperationalError, PoolTimeout) as exc:
            log.warning("resume positions not saved, PostgreSQL unavailable: %s", exc)

    async def fresh_count(self, within_seconds: float) -> int:
        """How many partitions some live router refreshed within the last `within_seconds`."""
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM router.resume_positions WHERE topic = %s"
                " AND updated_at > now() - make_interval(secs => %s)",
                (self._topic, within_seconds),
            )
            row = await cursor.fetchone()
        return row[0] if row else 0
