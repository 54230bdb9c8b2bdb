"""`oee`: one entry point that starts every part of the system and the operator tools."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import wraps
from typing import Annotated, ParamSpec, TypeVar

import typer

from services.api.auth.cli import development_key_notice, keys_app
from services.client.cli import order_app, orders_app, status
from services.client.markets import markets
from services.common.errors import DependencyUnavailable
from services.common.settings import get_settings
from services.market.cli import market_app
from services.replay.cli import replay_app

app = typer.Typer(
    help="Order execution engine for Solana DEXs, event-sourced on Kafka.", no_args_is_help=True
)
app.add_typer(replay_app, name="replay")
app.add_typer(keys_app, name="keys")
app.add_typer(order_app, name="order")
app.add_typer(orders_app, name="orders")
app.add_typer(market_app, name="market")
app.command("status")(status)
app.command("markets")(markets)

P = ParamSpec("P")
R = TypeVar("R")


def one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """An unreachable dependency ends the command with one line and exit code 2, not a trace."""

    @wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except DependencyUnavailable as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(2) from None

    return run


@app.command()
@one_line_errors
def migrate() -> None:
    """Apply the numbered SQL migrations not yet applied."""
    from services.common.db import migrate as apply

    settings = get_settings().with_local_servers()
    assert settings.database_url
    applied = apply(settings.database_url)
    typer.echo(
        f"applied {len(applied)} migration(s)"
        + "".join(f"\n  {m.version:04d} {m.name}" for m in applied)
    )


@app.command()
@one_line_errors
def api() -> None:
    """Serve the HTTP and WebSocket API."""
    from services.api.main import serve

    serve(get_settings().with_local_servers())


@app.command()
@one_line_errors
def router(
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Simulate transactions, never send them."
    ),
) -> None:
    """Route and execute submitted orders (a faust-streaming worker)."""
    from services.router.main import serve

    settings = get_settings().with_local_servers()
    if dry_run:
        settings = settings.model_copy(update={"chain_dry_run": True})
    serve(settings)


@app.command()
@one_line_errors
def projector() -> None:
    """Build the PostgreSQL read models from the order event log."""
    from services.projector.main import serve

    serve(get_settings().with_local_servers())


@app.command()
@one_line_errors
def triggers() -> None:
    """Watch market ticks and expiries for resting conditional orders; propose their triggers."""
    from services.triggers.main import serve

    serve(get_settings().with_local_servers())


@app.command()
@one_line_errors
def chain() -> None:
    """Run the chain: a Solana VM that lands a block per slot and answers Solana JSON-RPC."""
    from services.chain.main import serve

    serve(get_settings().with_local_servers())


@app.command()
@one_line_errors
def up(
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Simulate transactions, never send them."
    ),
    kafka_nodes: Annotated[
        int | None,
        typer.Option(
            "--kafka-nodes",
            min=1,
            help="KRaft nodes to start (default OEE_KAFKA_NODES, else 1); 3 survives a lost node.",
        ),
    ] = None,
) -> None:
    """Start Kafka and PostgreSQL (unless configured), then the chain node `oee chain` (unless
    OEE_SOLANA_RPC_URL names a cluster), the API, router, projector and trigger engine.

    Ctrl-C stops everything.
    """
    from services.common.dependencies import LocalDependencies

    settings = get_settings()
    if kafka_nodes is not None:
        settings = settings.model_copy(update={"kafka_nodes": kafka_nodes})
    dependencies = LocalDependencies(settings)
    with dependencies as effective:
        for line in dependencies.started:
            typer.echo(f"started {line}")
        base = f"http://{effective.api_host}:{effective.api_port}"
        for line in development_key_notice(effective, f"{base}/"):
            typer.secho(line, fg="yellow")
        env = os.environ | {
            "KAFKA_BOOTSTRAP_SERVERS": str(effective.kafka_bootstrap_servers),
            "DATABASE_URL": str(effective.database_url),
        }
        if dry_run:
            env["OEE_CHAIN_DRY_RUN"] = "true"

        def spawn(name: str) -> subprocess.Popen[bytes]:
            return subprocess.Popen([sys.executable, "-m", "services.cli", name], env=env)

        # The local chain node runs only for the local RPC URL; a cluster is not ours to run.
        names: tuple[str, ...] = ("projector", "router", "triggers", "api")
        if effective.local_chain:
            # The market process trades the local chain's pools; never a real cluster's.
            names = ("chain", *names, "market")
            typer.echo(
                f"chain: oee chain on {effective.solana_rpc_url} (blocks in PostgreSQL, schema svm)"
            )
        else:
            typer.echo(f"chain: Solana RPC {effective.solana_rpc_url} (not started here)")
        children = {name: spawn(name) for name in names}
        typer.secho(
            f"API on {base}  docs {base}/docs  health {base}/health  (Ctrl-C stops everything)",
            fg="green",
        )
        _supervise(children, spawn)


# A child that exits this soon after starting, this many times in a row, is not restarted again.
QUICK_EXIT_SECONDS = 10.0
QUICK_EXITS_TOLERATED = 3


def _supervise(
    children: dict[str, subprocess.Popen[bytes]],
    spawn: Callable[[str], subprocess.Popen[bytes]],
) -> None:
    """Restart a child that exits (a router restarting to rejoin its group, a crash) until
    Ctrl-C; then stop every child within a bounded time. A child that keeps exiting right
    after its start (bad configuration) stops everything instead of looping."""
    stop = False
    started = {name: time.monotonic() for name in children}
    quick_exits = dict.fromkeys(children, 0)

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        while not stop:
            for name, child in list(children.items()):
                if child.poll() is None:
                    continue
                quick = time.monotonic() - started[name] < QUICK_EXIT_SECONDS
                quick_exits[name] = quick_exits[name] + 1 if quick else 0
                if quick_exits[name] >= QUICK_EXITS_TOLERATED:
                    typer.secho(f"{name} keeps exiting; stopping the rest", err=True, fg="red")
                    stop = True
                    break
                typer.secho(f"{name} exited ({child.returncode}); restarting it", err=True)
                children[name] = spawn(name)
                started[name] = time.monotonic()
            time.sleep(0.5)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


if __name__ == "__main__":
    app()
