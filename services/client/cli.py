"""The trader's and operator's commands: `oee order submit|limit|stop|oco|cancel|amend|show`,
`oee orders list`, `oee status`.

Each talks to the public API (`--api-url`, `OEE_API_URL`) with an optional key
(`--api-key`, `OEE_API_KEY`, sent as `Authorization: Bearer`), renders with rich,
and prints the API's JSON instead with `--json`. Failures are one line on stderr:
exit code 1 when the API said no, 2 when it could not be reached or failed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Annotated, Any, ParamSpec, TypeVar

import orjson
import typer
from rich.console import Console
from rich.live import Live

from services.client.http import DEFAULT_API_URL, ApiClient, ApiError
from services.client.render import (
    OrderProgress,
    order_view,
    orders_table,
    progress_view,
    status_view,
    with_sniper_terms,
)
from services.client.watch import follow

P = ParamSpec("P")
R = TypeVar("R")

order_app = typer.Typer(help="Submit, watch and show one order.", no_args_is_help=True)
orders_app = typer.Typer(help="List orders.", no_args_is_help=True)

ApiUrl = Annotated[
    str, typer.Option("--api-url", envvar="OEE_API_URL", help="Base URL of the API.")
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="OEE_API_KEY",
        help="API key, sent as a Bearer token.",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of tables.")]


def _console() -> Console:
    return Console(highlight=False)


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value).decode() + "\n")
    sys.stdout.flush()


def api_errors(command: Callable[P, R]) -> Callable[P, R]:
    """An ApiError ends the command with its one line on stderr and its exit code."""

    @wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ApiError as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(exc.exit_code) from None

    return run


def watch_order(
    client: ApiClient, order_id: str, *, as_json: bool, timeout: float
) -> OrderProgress:
    """Follow the order live until its final event; JSON lines or a live rich view."""
    progress = OrderProgress(order_id)
    if as_json:

        def on_message(message: dict[str, Any]) -> None:
            progress.apply(message)
            _print_json(message)

        asyncio.run(follow(client.base_url, order_id, client.headers, on_message, timeout=timeout))
        return progress
    console = _console()
    with Live(progress_view(progress), console=console, refresh_per_second=8) as live:

        def show(message: dict[str, Any]) -> None:
            progress.apply(message)
            live.update(progress_view(progress))

        asyncio.run(follow(client.base_url, order_id, client.headers, show, timeout=timeout))
    return progress


def _exit_for(progress: OrderProgress) -> None:
    """Scripts can tell a fill from a failure by the exit code (0 completed, 1 failed)."""
    if progress.error:
        raise ApiError(progress.error)
    if progress.status == "failed":
        raise typer.Exit(1)


@order_app.command("submit")
@api_errors
def submit(
    token_in: Annotated[str, typer.Argument(help="Token to sell, e.g. SOL.")],
    token_out: Annotated[str, typer.Argument(help="Token to buy, e.g. USDC.")],
    amount: Annotated[str, typer.Argument(help="Whole tokens of TOKEN_IN, e.g. 10 or 0.5.")],
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: Json = False,
    slippage: Annotated[
        str | None, typer.Option(help="Fraction in [0, 1], e.g. 0.01; the API's default if unset.")
    ] = None,
    client_order_id: Annotated[
        str | None, typer.Option(help="Idempotency key: the same key gives the same order.")
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Follow the order until it ends.")] = False,
    timeout: Annotated[float, typer.Option(help="Longest wait with --watch, seconds.")] = 120.0,
) -> None:
    """Submit a market order; with --watch, show its progress live until it completes or fails."""
    order: dict[str, Any] = {"tokenIn": token_in.upper(), "tokenOut": token_out.upper()}
    order["amount"] = amount
    if slippage is not None:
        order["slippage"] = slippage
    if client_order_id is not None:
        order["clientOrderId"] = client_order_id
    with ApiClient(api_url, api_key) as client:
        accepted = client.submit(order)
        order_id = str(accepted["orderId"])
        if as_json:
            _print_json(accepted)
        else:
            _console().print(f"accepted order [bold]{order_id}[/] ({accepted.get('status')})")
        if watch:
            _exit_for(watch_order(client, order_id, as_json=as_json, timeout=timeout))


_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def expires_at(text: str | None, now: datetime | None = None) -> str | None:
    """`--expires`: a duration from now (30m, 12h, 1d, 2w) or an ISO 8601 time, as ISO 8601."""
    if text is None:
        return None
    match = _DURATION.match(text.strip())
    if match is None:
        return text  # the API says whether it is a valid time
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    return ((now or datetime.now(UTC)) + timedelta(seconds=seconds)).isoformat()


Expires = Annotated[
    str | None,
    typer.Option("--expires", help="Duration (30m, 12h, 1d, 2w) or ISO 8601 time; default 7 days."),
]
Slippage = Annotated[
    str | None, typer.Option(help="Fraction in [0, 1] once triggered; the API's default if unset.")
]


def _conditional(
    token_in: str,
    token_out: str,
    amount: str,
    fields: dict[str, Any],
    *,
    api_url: str,
    api_key: str | None,
    as_json: bool,
    slippage: str | None,
    expires: str | None,
) -> None:
    order: dict[str, Any] = {
        "tokenIn": token_in.upper(),
        "tokenOut": token_out.upper(),
        "amount": amount,
        **{k: v for k, v in fields.items() if v is not None},
    }
    if slippage is not None:
        order["slippage"] = slippage
    if expires is not None:
        order["expiresAt"] = expires_at(expires)
    with ApiClient(api_url, api_key) as client:
        accepted = client.submit(order)
    if as_json:
        _print_json(accepted)
    else:
        _console().print(
            f"{order['orderType']} order [bold]{accepted['orderId']}[/] {accepted.get('status')}:"
            f" {accepted.get('message')}"
        )


TokenIn = Annotated[str, typer.Argument(help="Token to sell, e.g. SOL.")]
TokenOut = Annotated[str, typer.Argument(help="Token to buy, e.g. USDC.")]
Amount = Annotated[str, typer.Argument(help="Whole tokens of TOKEN_IN.")]


@order_app.command("limit")
@api_errors
def limit(
    token_in: TokenIn,
    token_out: TokenOut,
    amount: Amount,
    price: Annotated[str, typer.Option(help="Limit: TOKEN_OUT per TOKEN_IN, fees included.")],
    expires: Expires = None,
    take_profit: Annotated[
        bool, typer.Option("--take-profit", help="A take-profit (a limit above the market).")
    ] = False,
    wait_for_all: Annotated[
        bool, typer.Option("--all-or-none", help="Wait to fill the whole amount at once.")
    ] = False,
    post_only: Annotated[bool, typer.Option(help="Refuse a limit marketable now.")] = False,
    slippage: Slippage = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Rest a limit order: it fills only at PRICE or better, until it expires."""
    fields: dict[str, Any] = {
        "orderType": "takeProfit" if take_profit else "limit",
        "limitPrice": price,
        "allowPartial": False if wait_for_all else None,
        "postOnly": True if post_only else None,
    }
    _conditional(token_in, token_out, amount, fields, api_url=api_url, api_key=api_key,
                 as_json=as_json, slippage=slippage, expires=expires)  # fmt: skip


@order_app.command("stop")
@api_errors
def stop(
    token_in: TokenIn,
    token_out: TokenOut,
    amount: Amount,
    trigger: Annotated[str, typer.Option(help="Sell at market once the price is at or below.")],
    expires: Expires = None,
    slippage: Slippage = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Rest a stop order: a market order once the price falls to TRIGGER."""
    fields = {"orderType": "stop", "triggerPrice": trigger}
    _conditional(token_in, token_out, amount, fields, api_url=api_url, api_key=api_key,
                 as_json=as_json, slippage=slippage, expires=expires)  # fmt: skip


@order_app.command("oco")
@api_errors
def oco(
    token_in: TokenIn,
    token_out: TokenOut,
    amount: Amount,
    take_profit: Annotated[str, typer.Option(help="The limit leg: fill at or above.")],
    stop_loss: Annotated[str, typer.Option(help="The stop leg: market at or below.")],
    expires: Expires = None,
    slippage: Slippage = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Rest a one-cancels-the-other order: whichever leg triggers first, the other never does."""
    fields = {"orderType": "oco", "takeProfitPrice": take_profit, "stopLossPrice": stop_loss}
    _conditional(token_in, token_out, amount, fields, api_url=api_url, api_key=api_key,
                 as_json=as_json, slippage=slippage, expires=expires)  # fmt: skip


@order_app.command("snipe")
@api_errors
def snipe(
    token: Annotated[str, typer.Argument(help="The token to buy; it need not be launched yet.")],
    amount: Annotated[str, typer.Option("--amount", help="Whole tokens of --in to spend.")],
    max_price: Annotated[
        str, typer.Option("--max-price", help="The most --in paid per TOKEN (min out).")
    ],
    token_in: Annotated[str, typer.Option("--in", help="The token to pay with.")] = "SOL",
    mint_renounced: Annotated[
        bool, typer.Option("--mint-renounced/--mint-kept-ok", help="Check: mint renounced.")
    ] = True,
    freeze_renounced: Annotated[
        bool, typer.Option("--freeze-renounced/--freeze-kept-ok", help="Check: freeze renounced.")
    ] = True,
    lp_burned: Annotated[bool, typer.Option("--lp-burned", help="Check: LP burned.")] = False,
    min_liquidity: Annotated[
        str | None, typer.Option("--min-liquidity", help="Check: whole --in tokens in the pool.")
    ] = None,
    only_at_launch: Annotated[
        bool, typer.Option("--only-at-launch", help="Never buy a pool already open.")
    ] = False,
    take_profit_pct: Annotated[
        str | None, typer.Option("--take-profit-pct", help="autoSell: OCO take-profit, %.")
    ] = None,
    stop_loss_pct: Annotated[
        str | None, typer.Option("--stop-loss-pct", help="autoSell: OCO stop-loss, %.")
    ] = None,
    high_priority: Annotated[
        bool, typer.Option("--high-priority", help="The router's high lane (scope needed).")
    ] = False,
    expires: Expires = None,
    slippage: Slippage = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Arm a sniper: it buys TOKEN in the first slot its pool is open, if the rug checks pass."""
    checks: dict[str, Any] = {
        "mintRenounced": mint_renounced,
        "freezeRenounced": freeze_renounced,
        "lpBurned": lp_burned,
    }
    if min_liquidity is not None:
        checks["minLiquidity"] = min_liquidity
    if (take_profit_pct is None) != (stop_loss_pct is None):
        raise typer.BadParameter("give both --take-profit-pct and --stop-loss-pct, or neither")
    fields: dict[str, Any] = {
        "orderType": "sniper",
        "maxPrice": max_price,
        "checks": checks,
        "onlyAtLaunch": True if only_at_launch else None,
        "autoSell": None
        if take_profit_pct is None
        else {"takeProfitPct": take_profit_pct, "stopLossPct": stop_loss_pct},
        "priority": "high" if high_priority else None,
    }
    _conditional(token_in, token, amount, fields, api_url=api_url, api_key=api_key,
                 as_json=as_json, slippage=slippage, expires=expires)  # fmt: skip


@order_app.command("cancel")
@api_errors
def cancel(
    order_id: Annotated[str, typer.Argument(help="The order's id.")],
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Cancel a resting order (exit 1 with ALREADY_TRIGGERED / ALREADY_FINAL if too late)."""
    with ApiClient(api_url, api_key) as client:
        order = client.cancel(order_id)
    if as_json:
        _print_json(order)
    else:
        _console().print(f"order [bold]{order_id}[/] {order['status']}")


@order_app.command("amend")
@api_errors
def amend(
    order_id: Annotated[str, typer.Argument(help="The order's id.")],
    price: Annotated[str | None, typer.Option(help="New limit price.")] = None,
    trigger: Annotated[str | None, typer.Option(help="New stop trigger price.")] = None,
    take_profit: Annotated[str | None, typer.Option(help="New OCO take-profit.")] = None,
    stop_loss: Annotated[str | None, typer.Option(help="New OCO stop-loss.")] = None,
    expires: Expires = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Change a resting order's prices or expiry in place."""
    changes = {
        "limitPrice": price,
        "triggerPrice": trigger,
        "takeProfitPrice": take_profit,
        "stopLossPrice": stop_loss,
        "expiresAt": expires_at(expires),
    }
    with ApiClient(api_url, api_key) as client:
        order = client.amend(order_id, {k: v for k, v in changes.items() if v is not None})
    if as_json:
        _print_json(order)
    else:
        _console().print(f"order [bold]{order_id}[/] amended ({order['status']})")


@order_app.command("show")
@api_errors
def show(
    order_id: Annotated[str, typer.Argument(help="The order's id.")],
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Show an order's state and its timeline of events (with both venues' quotes)."""
    with ApiClient(api_url, api_key) as client:
        order = client.order(order_id)
        events = client.events(order_id)
    if as_json:
        _print_json({"order": order, "events": events})
    else:
        _console().print(order_view(order, events))


@orders_app.command("list")
@api_errors
def list_orders(
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: Json = False,
    status: Annotated[
        str | None,
        typer.Option(help="open, triggered, pending, routing, …, completed, cancelled, expired"),
    ] = None,
    token_in: Annotated[str | None, typer.Option(help="Only orders selling this token.")] = None,
    token_out: Annotated[str | None, typer.Option(help="Only orders buying this token.")] = None,
    created_from: Annotated[
        str | None, typer.Option("--from", help="Created at or after (ISO 8601).")
    ] = None,
    created_to: Annotated[
        str | None, typer.Option("--to", help="Created before (ISO 8601).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Orders per page, 1..200.")] = 20,
    cursor: Annotated[
        str | None, typer.Option(help="The next-page cursor printed last time.")
    ] = None,
) -> None:
    """List orders, newest first, one page at a time."""
    with ApiClient(api_url, api_key) as client:
        page = client.orders(
            status=status,
            tokenIn=token_in.upper() if token_in else None,
            tokenOut=token_out.upper() if token_out else None,
            **{"from": created_from, "to": created_to},
            limit=limit,
            cursor=cursor,
        )
        # A sniper's max price is in its submission when the read model's row lacks it.
        page["orders"] = [
            with_sniper_terms(order, client.events(str(order["id"])))
            if order.get("orderType") == "sniper" and order.get("maxPrice") is None
            else order
            for order in page.get("orders", [])
        ]
    if as_json:
        _print_json(page)
    else:
        _console().print(orders_table(page))


@api_errors
def status(
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Each process, consumer lag per group, dead letters, and orders by status.

    Exits 2 when the API or Kafka cannot be read, so scripts can alert on it.
    """
    from services.client.status import gather
    from services.common.settings import get_settings

    # aiokafka logs every failed connection attempt; the report says it once.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with ApiClient(api_url, api_key) as client:
        report = gather(client, get_settings())
    if as_json:
        _print_json(report.as_json())
    else:
        _console().print(status_view(report))
    if report.processes[0].state == "down" or report.lag is None:
        raise typer.Exit(2)
