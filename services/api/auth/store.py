"""PostgreSQL edge of authentication: `auth.api_keys` holds each key's hash, never the key.

The synchronous functions serve `oee keys` and `oee up`; `PostgresKeys` serves the
API's lookups over its (asynchronous) read pool.
"""

from __future__ import annotations

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

    @property
    def active(self) -> bool:
        return self.revoked_at is None


_COLUMNS = "id, name, scopes, created_at, revoked_at"


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

    def add(self, name: str, scopes: tuple[str, ...] = DEFAULT_SCOPES) -> tuple[StoredKey, str]:
        key = new_key()
        row = StoredKey(uuid.uuid4(), name, list(scopes), datetime.now(UTC), None)
        self.rows[key_hash(key)] = row
        return row, key

    def revoke(self, key: str) -> None:
        row = self.rows[key_hash(key)]
        self.rows[key_hash(key)] = StoredKey(
            row.id, row.name, row.scopes, row.created_at, datetime.now(UTC)
        )

    async def find(self, hashed: str) -> StoredKey | None:
        self.lookups += 1
        if self.down:
            raise AuthUnavailable("key store down")
        return self.rows.get(hashed)


def create_key(
    conn: psycopg.Connection, name: str, scopes: tuple[str, ...] = DEFAULT_SCOPES
) -> tuple[StoredKey, str]:
    """Store a new key's hash; return the row and the key, which exists nowhere else."""
    key = new_key()
    cursor = conn.cursor(row_factory=class_row(StoredKey))
    cursor.execute(
        f"INSERT INTO auth.api_keys (id, name, key_sha256, scopes) VALUES (%s, %s, %s, %s)"
        f" RETURNING {_COLUMNS}",
        (uuid.uuid4(), name, key_hash(key), list(checked_scopes(scopes))),
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
