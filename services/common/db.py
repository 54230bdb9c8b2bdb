"""PostgreSQL edge: connecting with a clear error, and applying numbered migrations.

Migrations are plain SQL files `NNNN_name.sql` next to this module, applied in
order, each in its own transaction together with its row in
`schema_migrations`, under an advisory lock so that two processes starting at
once do not race.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool

from services.common.errors import DependencyUnavailable

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_MIGRATION_LOCK = 0x0EE0_0001
LIVE_SCHEMA = "read_model"
"""The schema the API reads: the projector writes it, `oee replay rebuild` replaces it."""


def unreachable(url: str, exc: BaseException) -> DependencyUnavailable:
    where = psycopg.conninfo.conninfo_to_dict(url)
    host = f"{where.get('host', 'localhost')}:{where.get('port', 5432)}/{where.get('dbname', '')}"
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DependencyUnavailable(
        f"PostgreSQL is not reachable at {host} ({reason}); set DATABASE_URL to a running server"
    )


def connect(url: str, *, autocommit: bool = False, timeout: int = 5) -> psycopg.Connection:
    """A synchronous connection, or DependencyUnavailable in one line."""
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=timeout)
    except psycopg.OperationalError as exc:
        raise unreachable(url, exc) from None


async def open_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> AsyncConnectionPool:
    """An opened async pool; fails fast with one line if the server is not there."""
    pool = AsyncConnectionPool(url, min_size=min_size, max_size=max_size, open=False, timeout=10)
    try:
        await pool.open(wait=True, timeout=10)
    except Exception as exc:  # psycopg's errors, psycopg_pool.PoolTimeout and friends
        await pool.close()
        raise unreachable(url, exc) from None
    return pool


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file, in version order; refuses gaps and duplicates."""
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if match is None:
            raise ValueError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"migration versions must be 1..n without gaps, got {versions}")
    return found


def migrate(url: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply the migrations not yet recorded; return the ones applied now."""
    applied_now: list[Migration] = []
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for migration in load_migrations(directory):
                if migration.version in done:
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                applied_now.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied_now
