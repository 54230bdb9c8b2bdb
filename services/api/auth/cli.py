"""`oee keys create|list|revoke`, and the development key `oee up` makes on first start."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import psycopg
import typer

from services.api.auth.principal import DEFAULT_SCOPES, checked_scopes
from services.api.auth.store import create_key, ensure_development_key, list_keys, revoke_key
from services.common.db import connect, migrate
from services.common.errors import DependencyUnavailable
from services.common.settings import Settings, get_settings

keys_app = typer.Typer(
    help="API keys: shown once when created, stored only as hashes.", no_args_is_help=True
)


@contextmanager
def _keys_db() -> Iterator[psycopg.Connection]:
    """A migrated database, or the command ends with one line and exit code 2."""
    url = get_settings().postgres_url
    try:
        migrate(url)
        with connect(url, autocommit=True) as conn:
            yield conn
    except DependencyUnavailable as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="What the key is for, e.g. a client's name")],
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="orders:write, orders:read, admin or orders:priority; repeat for several"
        ),
    ] = None,
) -> None:
    """Create a key and print it once (on stdout, alone, so `KEY=$(oee keys create ...)` works)."""
    try:
        scopes = checked_scopes(scope or DEFAULT_SCOPES)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scope") from None
    with _keys_db() as conn:
        row, key = create_key(conn, name, scopes)
    typer.echo(
        f"created key {row.id} ({row.name}; scopes {' '.join(row.scopes)}). It is shown"
        " only this once: store it now.",
        err=True,
    )
    typer.echo(key)


@keys_app.command("list")
def list_() -> None:
    """Every key: id, name, scopes, created, and when it was revoked (never the key)."""
    with _keys_db() as conn:
        rows = list_keys(conn)
    if not rows:
        typer.echo("no keys; create one with `oee keys create --name NAME`")
        return
    for row in rows:
        state = f"revoked {row.revoked_at.isoformat()}" if row.revoked_at else "active"
        typer.echo(
            f"{row.id}  {row.name}  {' '.join(row.scopes)}  created"
            f" {row.created_at.isoformat()}  {state}"
        )


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id, as `oee keys list` shows")],
) -> None:
    """Revoke a key: every API process refuses it within OEE_AUTH_CACHE_SECONDS."""
    try:
        parsed = uuid.UUID(key_id)
    except ValueError:
        raise typer.BadParameter("not a key id (a UUID)", param_hint="KEY_ID") from None
    with _keys_db() as conn:
        row = revoke_key(conn, parsed)
    if row is None:
        typer.secho(f"error: no key {key_id}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1)
    assert row.revoked_at is not None
    typer.echo(f"revoked {row.id} ({row.name}) at {row.revoked_at.isoformat()}")


def development_key_notice(settings: Settings) -> list[str]:
    """For `oee up`: a new development key (printed once), or how to make one."""
    if settings.auth == "disabled":
        return ["authentication is DISABLED (OEE_AUTH=disabled): no key needed, loopback only"]
    assert settings.database_url
    with connect(settings.database_url, autocommit=True) as conn:
        key = ensure_development_key(conn)
    if key is None:
        return ["API keys exist (`oee keys list`); make another with `oee keys create --name NAME`"]
    return [
        "created a development API key (shown only this once; store it now):",
        f"  {key}",
        "  use it as:  curl -H 'Authorization: Bearer <key>' ...",
    ]
