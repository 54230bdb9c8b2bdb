"""PostgreSQL edge of authentication: `auth.api_keys` holds each key's hash, never the key.

The synchronous functions serve `oee keys` and `oee up`; `PostgresKeys` serves the
API's lookups over its (asynchronous) read pool.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import psycopg
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from services.api.auth.principal import DEFAULT_SCOPES, checked_scopes, key_hash, new_key

LOOKUP_TIMEOUT_SECONDS = 2.0
DEVELOPMENT_KEY_NAME = "development"


@dataclass(frozen=True)
class StoredKey:
    """One row of auth.api_keys, without its hash."""

    id: uuid.UUID
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None
    # The key's own submission limit; None: the deployment's default (migration 0010).
    rate_limit: float | None = None
    burst: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


_COLUMNS = "id, name, scopes, created_at, revoked_at, rate_limit, burst"


def checked_limit(rate_limit: float | None, burst: int | None) -> tuple[float | None, int | None]:
    """A key's (rate, burst): a rate alone saves up two seconds of it (as 20/s with 40 does);
    ValueError for a rate that is not positive or a burst under 1."""
    if rate_limit is not None and not (rate_limit > 0 and math.isfinite(rate_limit)):
        raise ValueError(
            f"the rate limit must be a positive number of orders a second, not {rate_limit}"
        )
    if burst is not None and burst < 1:
        raise ValueError(f"the burst must be at least 1 order, not {burst}")
    if rate_limit is not None and burst is None:
        burst = max(1, math.ceil(2 * rate_limit))
    return rate_limit, burst


class AuthUnavailable(RuntimeError):
    """The key store did not answer; the caller should retry later."""


class KeyLookup(Protocol):
    async def find(self, hashed: str) -> StoredKey | None:
        """The key with this hash, revoked or not; None if there is none."""
        ...


class PostgresKeys:
    """Finds keys by hash: one indexed lookup per request that misses the cache."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def find(self, hashed: str) -> StoredKey | None:
        # Looking the hash up through the index is not a timing oracle: an attacker
        # controls the key, not its hash, and learns nothing from how far a B-tree
        # comparison got on a SHA-256.
        try:
            async with self.pool.connection(timeout=LOOKUP_TIMEOUT_SECONDS) as conn:
                cursor = conn.cursor(row_factory=class_row(StoredKey))
                await cursor.execute(
                    f"SELECT {_COLUMNS} FROM auth.api_keys WHERE key_sha256 = %s", (hashed,)
                )
                return await cursor.fetchone()
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            raise AuthUnavailable(
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            ) from None


class MemoryKeys:
    """An in-memory key store for tests: same answers as PostgresKeys."""

    def __init__(self) -> None:
        self.rows: dict[str, StoredKey] = {}
        self.lookups = 0
        self.down = False

    def add(
        self,
        name: str,
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
        rate_limit: float | None = None,
        burst: int | None = None,
    ) -> tuple[StoredKey, str]:
        key = new_key()
        rate_limit, burst = checked_limit(rate_limit, burst)
        row = StoredKey(
            uuid.uuid4(), name, list(scopes), datetime.now(UTC), None, rate_limit, burst
        )
        self.rows[key_hash(key)] = row
        return row, key

    def revoke(self, key: str) -> None:
        row = self.rows[key_hash(key)]
        self.rows[key_hash(key)] = dataclasses.replace(row, revoked_at=datetime.now(UTC))

    async def find(self, hashed: str) -> StoredKey | None:
        self.lookups += 1
        if self.down:
            raise AuthUnavailable("key store down")
        return self.rows.get(hashed)


def create_key(
    conn: psycopg.Connection,
    name: str,
    scopes: tuple[str, ...] = DEFAULT_SCOPES,
    *,
    rate_limit: float | None = None,
    burst: int | None = None,
) -> tuple[StoredKey, str]:
    """Store a new key's hash (and its own rate limit, if any); return the row and the key,
    which exists nowhere else."""
    rate_limit, burst = checked_limit(rate_limit, burst)
    key = new_key()
    cursor = conn.cursor(row_factory=class_row(StoredKey))
    cursor.execute(
        "INSERT INTO auth.api_keys (id, name, key_sha256, scopes, rate_limit, burst)"
        f" VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
        (uuid.uuid4(), name, key_hash(key), list(checked_scopes(scopes)), rate_limit, burst),
    )
    row = cursor.fetchone()
    assert row is not None
    return row, key


def list_keys(conn: psycopg.Connection) -> list[StoredKey]:
    """Every key, revoked ones included, oldest first."""
    cursor = conn.cursor(row_factory=class_row(StoredKey))
    cursor.execute(f"SELECT {_COLUMNS} FROM auth.api_keys ORDER BY created_at, id")
    return cursor.fetchall()


def revoke_key(conn: psycopg.Connection, key_id: uuid.UUID) -> StoredKey | None:
    """Revoke a key (once: a second revocation keeps the first time); None if unknown."""
    cursor = conn.cursor(row_factory=class_row(StoredKey))
    cursor.execute(
        f"UPDATE auth.api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s"
        f" RETURNING {_COLUMNS}",
        (key_id,),
    )
    return cursor.fetchone()


def ensure_development_key(conn: psycopg.Connection) -> str | None:
    """Create a key named "development" when no active key exists; return it, else None."""
    with conn.transaction():
        # Serialises two `oee up` starting at once on one database.
        conn.execute("LOCK TABLE auth.api_keys IN SHARE ROW EXCLUSIVE MODE")
        cursor = conn.execute("SELECT 1 FROM auth.api_keys WHERE revoked_at IS NULL LIMIT 1")
        if cursor.fetchone() is not None:
            return None
        _, key = create_key(conn, DEVELOPMENT_KEY_NAME)
        return key
