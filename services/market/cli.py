"""`oee market` (run the market process) and `oee market move PAIR --to PRICE [--over 10s]`."""

from __future__ import annotations

import asyncio
from decimal import Decimal, InvalidOperation
from typing import Any

import typer
from typer.core import TyperGroup

from services.client.markets import show_market
from services.common.errors import DependencyUnavailable
from services.common.process import settle_heap
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
        formatter.write_usage(
            "oee market",
            "[PAIR | move PAIR --to PRICE [--over 10s] | launch SYMBOL --liquidity N ...]",
        )


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

    settle_heap()
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


@market_app.command()
def launch(
    symbol: str = typer.Argument(..., help="The new token's symbol, e.g. MEME."),
    quote: str = typer.Option("SOL", "--quote", help="The token it is paired with."),
    liquidity: str = typer.Option(..., "--liquidity", help="Whole quote tokens deposited."),
    venue: str = typer.Option("raydium", "--venue", help="raydium (CPMM) or meteora (DLMM)."),
    open_in: str = typer.Option("10s", "--open-in", help="When the pool opens: 10s, 5m, 1h."),
    mint_authority: str = typer.Option("renounce", "--mint-authority", help="keep or renounce."),
    freeze_authority: str = typer.Option(
        "renounce", "--freeze-authority", help="keep or renounce."
    ),
    lp: str | None = typer.Option(
        None, "--lp", help="burn or keep the LP tokens (raydium; default burn)."
    ),
) -> None:
    """Launch a token on the chain: a real SPL mint and a CPMM pool or DLMM launch pair that
    opens later."""
    from services.chain.launch import LaunchFailedError, launch_and_publish
    from services.domain.launch import (
        InvalidLaunchError,
        LaunchSpec,
        LaunchVenue,
        burns_lp,
        parse_open_in,
    )
    from services.pricing.ports import ChainUnreachable

    choices = {
        "--venue": (venue, ("raydium", "meteora")),
        "--mint-authority": (mint_authority, ("keep", "renounce")),
        "--freeze-authority": (freeze_authority, ("keep", "renounce")),
        "--lp": (lp or "burn", ("burn", "keep")),
    }
    for flag, (value, allowed) in choices.items():
        if value not in allowed:
            raise _fail(f"{flag} must be {' or '.join(allowed)}, got {value!r}", 1)
    try:
        amount = Decimal(liquidity)
        spec = LaunchSpec(
            symbol=symbol.upper(),
            quote=quote.upper(),
            liquidity=amount,
            venue=LaunchVenue(venue),
            open_in_seconds=parse_open_in(open_in),
            renounce_mint_authority=mint_authority == "renounce",
            renounce_freeze_authority=freeze_authority == "renounce",
            burn_lp=burns_lp(LaunchVenue(venue), lp),
        )
    except InvalidOperation:
        raise _fail(f"not an amount: {liquidity!r}", 1) from None
    except InvalidLaunchError as exc:
        raise _fail(str(exc), 1) from None
    try:
        launched = asyncio.run(launch_and_publish(get_settings(), spec))
    except (DependencyUnavailable, ChainUnreachable) as exc:
        raise _fail(str(exc), 2) from None
    except LaunchFailedError as exc:
        raise _fail(str(exc), 1) from None
    facts = launched.facts
    lp_state = {None: "not applicable (DLMM positions)", 0: "burned"}.get(facts.lp_supply, "kept")
    typer.echo(
        f"launched {launched.symbol}-{launched.quote} on {launched.venue.value}:"
        f" mint {launched.mint}, pool {launched.pool}, opens at unix {launched.open_time};"
        f" mint authority {facts.mint_authority or 'renounced'},"
        f" freeze authority {facts.freeze_authority or 'renounced'},"
        f" LP {lp_state}"
    )
