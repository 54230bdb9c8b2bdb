"""`oee market` (run the market process) and `oee market move PAIR --to PRICE [--over 10s]`."""

from __future__ import annotations

import asyncio
from typing import Any

import typer
from typer.core import TyperGroup

from services.client.markets import show_market
from services.common.errors import DependencyUnavailable
from services.common.settings import get_settings


class _PairOrCommand(TyperGroup):
    """`oee market SOL-USDC` shows a pair; `oee market move ...` and `oee market` (the
    process) stay commands. A first word that names no command and reads as a pair is
    the `show` command's argument."""

    # Typed loosely: typer ships its own copy of click, whose types are private.
    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and "-" in args[0].strip("-"):
            args = ["show", *args]
        return super().resolve_command(ctx, args)

    def format_usage(self, ctx: Any, formatter: Any) -> None:
        formatter.write_usage("oee market", "[PAIR | move PAIR --to PRICE [--over 10s]]")


market_app = typer.Typer(
    cls=_PairOrCommand,
    help="The living market: `oee market` runs the process that moves the chain's pools and"
    " publishes ticks and trades; `oee market SOL-USDC` shows a pair (ladder, sparkline).",
    invoke_without_command=True,
)
market_app.command("show", help="One pair: summary, depth ladder, sparkline.")(show_market)


def _fail(message: str, code: int) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


@market_app.callback()
def market(ctx: typer.Context) -> None:
    """With no command: run the market process until Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    from services.market.main import serve

    try:
        serve(get_settings().with_local_servers())
    except DependencyUnavailable as exc:
        raise _fail(str(exc), 2) from None


@market_app.command()
def move(
    pair: str = typer.Argument(..., help="The pair, e.g. SOL-USDC."),
    to: str = typer.Option(..., "--to", help="The price to reach, quote per base."),
    over: str = typer.Option("10s", "--over", help="How long the move takes: 10s, 2m, 500ms."),
) -> None:
    """Trade PAIR's pools to a price over a time (the running `oee market` applies it)."""
    from services.market.commands import parse_duration, parse_price
    from services.market.main import send_move

    try:
        price = parse_price(to)
        seconds = parse_duration(over)
    except ValueError as exc:
        raise _fail(str(exc), 1) from None
    try:
        asyncio.run(send_move(get_settings(), pair.upper(), price, seconds))
    except DependencyUnavailable as exc:
        raise _fail(str(exc), 2) from None
    except ValueError as exc:  # the command's own validation (the pair's spelling)
        raise _fail(str(exc).splitlines()[0], 1) from None
    typer.echo(f"sent: move {pair.upper()} to {price} over {seconds:g}s")
