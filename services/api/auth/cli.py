"""`oee keys create|list|revoke`, and the development key `oee up` makes on first start."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated
from urllib.parse import quote

import psycopg
import typer

from services.api.auth.principal import DEFAULT_SCOPES, checked_scopes
from services.api.auth.store import (
    StoredKey,
    checked_limit,
    create_key,
    ensure_development_key,
    list_keys,
    revoke_key,
)
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
    rate_limit: Annotated[
        float | None,
        typer.Option(
            help="Orders a second this key may submit (default: OEE_RATE_LIMIT_ORDERS_PER_SECOND)"
        ),
    ] = None,
    burst: Annotated[
        int | None,
        typer.Option(help="Orders it may save up for a burst (default: twice --rate-limit)"),
    ] = None,
) -> None:
    """Create a key and print it once (on stdout, alone, so `KEY=$(oee keys create ...)` works)."""
    try:
        scopes = checked_scopes(scope or DEFAULT_SCOPES)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scope") from None
    try:
        rate_limit, burst = checked_limit(rate_limit, burst)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--rate-limit/--burst") from None
    with _keys_db() as conn:
        row, key = create_key(conn, name, scopes, rate_limit=rate_limit, burst=burst)
    typer.echo(
        f"created key {row.id} ({row.name}; scopes {' '.join(row.scopes)}; {_limit(row)})."
        " It is shown only this once: store it now.",
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
            f"{row.id}  {row.name}  {' '.join(row.scopes)}  {_limit(row)}  created"
            f" {row.created_at.isoformat()}  {state}"
        )


def _limit(row: StoredKey) -> str:
    if row.rate_limit is None:
        return "default rate limit"
    return f"{row.rate_limit:g} orders/s, burst {row.burst}"


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


def development_key_notice(settings: Settings, dashboard: str | None = None) -> list[str]:
    """For `oee up`: a new development key (printed once), or how to make one; with the
    dashboard's address, a link that opens it signed in.

    The key rides in the link's fragment (`#key=`): browsers never send a fragment to the
    server, so it stays out of request lines and access logs; the page stores it and drops it
    from the address bar. A key made earlier is not stored readable anywhere, so later starts
    can link only with the one in `OEE_API_KEY`, if set.
    """
    if settings.auth == "disabled":
        lines = ["authentication is DISABLED (OEE_AUTH=disabled): no key needed, loopback only"]
        return lines + ([f"dashboard: {dashboard}"] if dashboard else [])
    assert settings.database_url
    with connect(settings.database_url, autocommit=True) as conn:
        key = ensure_development_key(conn)
    if key is None:
        lines = [
            "API keys exist (`oee keys list`); make another with `oee keys create --name NAME`"
        ]
        known = os.environ.get("OEE_API_KEY", "").strip()
        if dashboard:
            lines.append(
                f"dashboard, signed in with OEE_API_KEY: {signed_in_link(dashboard, known)}"
                if known
                else f"dashboard: {dashboard} (paste a key, or open it with #key=<key>)"
            )
        return lines
    lines = [
        "created a development API key (shown only this once; store it now):",
        f"  {key}",
        "  use it as:  curl -H 'Authorization: Bearer <key>' ...",
    ]
    if dashboard:
        lines.append(f"dashboard, signed in: {signed_in_link(dashboard, key)}")
    return lines


def signed_in_link(dashboard: str, key: str) -> str:
    """The dashboard's address with the key in its fragment, never in its query string."""
    return f"{dashboard.split('#')[0]}#key={quote(key, safe='')}"
