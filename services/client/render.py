"""Pure: the API's JSON -> rich renderables (tables, the live view of one order, the status page).

Nothing here does I/O; `cli.py` prints what these return. Money arrives as decimal
strings and is shown as people read it (`services.domain.display`): prices to 6
significant digits, amounts and fees with their token, price impact in bps or %.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from services.domain import display
from services.venues.pool import display_name

VENUES = ("RAYDIUM", "METEORA")
STATUS_STYLES = {
    "completed": "bold green",
    "failed": "bold red",
    "retrying": "yellow",
    "connected": "dim",
    "error": "bold red",
}
STATUSES = ("pending", "routing", "building", "submitted", "retrying", "completed", "failed")
FINAL = frozenset({"completed", "failed"})


def venue_name(dex: str | None) -> str:
    """ "METEORA+RAYDIUM" -> "Meteora + Raydium"; None -> ""."""
    if not dex:
        return ""
    return " + ".join(display_name(v) for v in dex.split("+"))


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, "cyan"))


def clock(iso: str | None) -> str:
    """An ISO 8601 time -> HH:MM:SS.mmm (UTC, as the API sends it)."""
    if not iso:
        return ""
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return moment.strftime("%H:%M:%S.%f")[:-3]


def elapsed(start: str | None, end: str | None) -> float | None:
    """Seconds between two ISO 8601 times, or None if either is missing."""
    if not start or not end:
        return None
    try:
        first = datetime.fromisoformat(start.replace("Z", "+00:00"))
        last = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (last - first).total_seconds()


def quotes_table(quotes: Sequence[Mapping[str, Any]], plan: Mapping[str, Any] | None) -> Table:
    """Both venues' quotes side by side, one column per venue, the chosen ones marked."""
    chosen = {leg.get("venue") for leg in (plan or {}).get("legs", [])}
    by_venue = {q.get("venue"): q for q in quotes}
    venues = [v for v in VENUES if v in by_venue] + [v for v in by_venue if v not in VENUES]
    table = Table(title="Quotes", title_justify="left", show_edge=False)
    table.add_column("")
    for venue in venues:
        mark = " ✓" if venue in chosen else ""
        table.add_column(
            f"{venue_name(str(venue))}{mark}",
            justify="right",
            style="bold green" if venue in chosen else None,
        )
    legs = (plan or {}).get("legs") or [{}]
    token_in, token_out = legs[0].get("tokenIn"), legs[-1].get("tokenOut")
    table.add_row(
        "amount out", *(display.amount(by_venue[v].get("amountOut"), token_out) for v in venues)
    )
    table.add_row("fee", *(display.fee(by_venue[v].get("fee"), token_in) for v in venues))
    table.add_row("price impact", *(display.impact(by_venue[v].get("priceImpact")) for v in venues))
    if any(by_venue[v].get("error") for v in venues):
        table.add_row("error", *(str(by_venue[v].get("error") or "") for v in venues))
    return table


def plan_text(plan: Mapping[str, Any], reason: str | None) -> Text:
    """The route plan in one or two lines: kind, legs, expected and minimum out, why."""
    legs = plan.get("legs", [])
    hops = ", ".join(
        f"{display_name(leg.get('venue', '?'))} "
        f"{display.amount(leg.get('amountIn'), leg.get('tokenIn'))} → "
        f"{display.amount(leg.get('amountOut'), leg.get('tokenOut'))}"
        + (
            f" ({float(leg['share']):.0%})"
            if plan.get("kind") == "split" and "share" in leg
            else ""
        )
        for leg in legs
    )
    text = Text()
    text.append("Route ", style="bold")
    text.append(f"{plan.get('kind', '?')}: {hops}\n")
    out = legs[-1].get("tokenOut") if legs else None
    text.append(
        f"  expect {display.amount(plan.get('amountOut'), out)},"
        f" at least {display.amount(plan.get('minAmountOut'), out)}"
    )
    gain = plan.get("splitImprovementBps")
    if plan.get("kind") == "split" and gain:
        text.append(f", split gains {gain} bps")
    if reason:
        text.append("\n  why: ", style="bold")
        text.append(reason)
    return text


def fill_text(
    completed: Mapping[str, Any], token_in: str | None = None, token_out: str | None = None
) -> Text:
    """The fill: amounts with their tokens, the price (token out per token in), the fee in the
    token it was paid in (the first hop's input, the order's token in)."""
    text = Text()
    text.append("Filled ", style="bold green")
    pair_price = display.price(completed.get("executedPrice"))
    if token_in and token_out:
        pair_price += f" {token_out}/{token_in}"
    text.append(
        f"on {venue_name(completed.get('selectedDex'))}: "
        f"{display.amount(completed.get('amountIn'), token_in)} in, "
        f"{display.amount(completed.get('amountOut'), token_out)} out at {pair_price}, "
        f"fee {display.fee(completed.get('fee'), token_in)}\n  tx {completed.get('txHash')}"
    )
    return text


def failure_text(failed: Mapping[str, Any]) -> Text:
    text = Text()
    text.append("Failed ", style="bold red")
    code = failed.get("code") or failed.get("errorCode")
    text.append(f"{code}: {failed.get('error')}")
    if failed.get("attempts") is not None:
        text.append(f" after {failed['attempts']} attempt(s)")
    return text


@dataclass
class OrderProgress:
    """What the live view knows of one order, folded from its socket messages."""

    order_id: str
    steps: list[tuple[str, str, str]] = field(default_factory=list)  # (status, time, message)
    quotes: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    reason: str | None = None
    final: dict[str, Any] | None = None
    error: str | None = None
    submitted_at: str | None = None
    token_in: str | None = None
    token_out: str | None = None

    def apply(self, message: Mapping[str, Any]) -> None:
        """Take one `/ws/{orderId}` message (or one stored event, flattened) into account."""
        status = str(message.get("status", ""))
        if status == "error":
            self.error = f"{message.get('error')}: {message.get('message')}"
            return
        if "sequence" not in message:
            return  # "connected"
        at = str(message.get("timestamp") or message.get("occurredAt") or "")
        self.steps.append((status, at, str(message.get("message") or message.get("type", ""))))
        kind = message.get("type")
        if kind == "OrderSubmitted":
            self.submitted_at = at
            self.token_in = message.get("tokenIn") or self.token_in
            self.token_out = message.get("tokenOut") or self.token_out
        elif kind == "OrderRouted":
            self.quotes = list(message.get("quotes", []))
            self.plan = dict(message.get("plan") or message.get("route") or {})
            self.reason = message.get("reason")
        if status in FINAL:
            self.final = dict(message)

    @property
    def finished(self) -> bool:
        return self.final is not None or self.error is not None

    @property
    def status(self) -> str | None:
        return self.steps[-1][0] if self.steps else None


def flatten_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """A stored event (GET .../events) in the shape of a socket message."""
    return {
        **event.get("payload", {}),
        "type": event.get("type"),
        "status": event.get("status"),
        "sequence": event.get("sequence"),
        "timestamp": event.get("occurredAt"),
    }


def progress_view(progress: OrderProgress) -> RenderableType:
    """The live view: each status as it arrived, the quotes, the route and why, the fill."""
    steps = Table(show_edge=False, show_header=True, title=f"Order {progress.order_id}")
    steps.add_column("status")
    steps.add_column("time (UTC)")
    steps.add_column("+s", justify="right")
    steps.add_column("")
    for status, at, message in progress.steps:
        since = elapsed(progress.submitted_at, at)
        steps.add_row(
            status_text(status), clock(at), f"{since:.3f}" if since is not None else "", message
        )
    parts: list[RenderableType] = [steps]
    if progress.quotes:
        parts.append(quotes_table(progress.quotes, progress.plan))
    if progress.plan:
        parts.append(plan_text(progress.plan, progress.reason))
    if progress.final is not None:
        if progress.final.get("status") == "completed":
            legs = (progress.plan or {}).get("legs") or [{}]
            parts.append(
                fill_text(
                    progress.final,
                    progress.token_in or legs[0].get("tokenIn"),
                    progress.token_out or legs[-1].get("tokenOut"),
                )
            )
        else:
            parts.append(failure_text(progress.final))
        total = elapsed(progress.submitted_at, progress.steps[-1][1])
        if total is not None:
            parts.append(Text(f"submit → {progress.final.get('status')} in {total:.3f} s"))
    if progress.error:
        parts.append(Text(progress.error, style="bold red"))
    return Group(*parts)


SNIPER_FIELDS = ("maxPrice", "checks", "onlyAtLaunch", "autoSell", "priority")


def with_sniper_terms(
    order: Mapping[str, Any], events: Iterable[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """The order row with a sniper's terms (max price, checks, ...) filled in from its
    `OrderSubmitted` where the row lacks them (a read model before migration 0011)."""
    found = dict(order)
    if order.get("orderType") != "sniper" or order.get("maxPrice") is not None:
        return found
    for event in events:
        if event.get("type") == "OrderSubmitted":
            payload = event.get("payload", {})
            for name in SNIPER_FIELDS:
                if found.get(name) is None and payload.get(name) is not None:
                    found[name] = payload[name]
    return found


def checks_text(checks: Mapping[str, Any] | None, quote: str | None = None) -> str:
    """A sniper's rug checks in words: what must hold before it buys."""
    if not checks:
        return "none"
    wanted = [
        label
        for name, label in (
            ("mintRenounced", "mint renounced"),
            ("freezeRenounced", "freeze renounced"),
            ("lpBurned", "LP burned"),
        )
        if checks.get(name)
    ]
    if checks.get("minLiquidity") is not None:
        wanted.append(f"liquidity ≥ {display.amount(checks['minLiquidity'], quote)}")
    return ", ".join(wanted) or "none"


def terms_text(order: Mapping[str, Any]) -> str:
    """What a resting order waits for, in one line (empty for a market order)."""
    if order.get("orderType") == "sniper":
        price = order.get("maxPrice")
        per = f" {order.get('tokenIn')}/{order.get('tokenOut')}"
        return (
            f"sniper {order.get('tokenOut')}, max price {display.price(price)}{per}"
            if (price is not None)
            else f"sniper {order.get('tokenOut')}"
        )
    named = (
        ("limit", "limitPrice"),
        ("trigger", "triggerPrice"),
        ("take profit", "takeProfitPrice"),
        ("stop loss", "stopLossPrice"),
    )
    kind = order.get("orderType")
    if not kind or kind == "market":
        return ""
    prices = [
        display.price(order[key]) if label == kind else f"{label} {display.price(order[key])}"
        for label, key in named
        if order.get(key)
    ]
    if order.get("trailingBps"):
        prices.append(f"{order['trailingBps']} bps")
    return " ".join([str(kind), *prices])


def order_view(order: Mapping[str, Any], events: Iterable[Mapping[str, Any]]) -> RenderableType:
    """`oee order show`: the read model's row, then its timeline from the stored events.
    A sniper also shows its max price and checks, and if it failed, the rug-check code and the
    values the chain showed (its error names each failed check, what it wanted and saw)."""
    events = list(events)
    order = with_sniper_terms(order, events)
    sniper = order.get("orderType") == "sniper"
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    rows = (
        ("order", order.get("id")),
        ("pair", f"{order.get('tokenIn')} → {order.get('tokenOut')}"),
        ("amount", display.amount(order.get("amount"), order.get("tokenIn"))),
        ("slippage", order.get("slippage")),
        ("type", terms_text(order) or None),
        ("checks", checks_text(order.get("checks"), order.get("tokenIn")) if sniper else None),
        ("only at launch", "yes" if sniper and order.get("onlyAtLaunch") else None),
        ("auto sell", _auto_sell_text(order.get("autoSell")) if sniper else None),
        ("priority", order.get("priority") if order.get("priority") == "high" else None),
        ("status", status_text(str(order.get("status")))),
        ("venue", venue_name(order.get("selectedDex"))),
        ("amount out", display.amount(order.get("amountOut"), order.get("tokenOut"))),
        ("price", display.price(order.get("executedPrice"))),
        ("fee", display.fee(order.get("fee"), order.get("tokenIn"))),
        ("tx", order.get("txHash")),
        (
            "error",
            f"{order.get('errorCode')}: {order.get('error')}" if order.get("error") else None,
        ),
        ("attempts", order.get("attempts")),
        ("created", order.get("createdAt")),
        ("updated", order.get("updatedAt")),
    )
    for label, value in rows:
        if value not in (None, ""):
            summary.add_row(label, value if isinstance(value, Text) else str(value))
    progress = OrderProgress(
        str(order.get("id")), token_in=order.get("tokenIn"), token_out=order.get("tokenOut")
    )
    for event in events:
        progress.apply(flatten_event(event))
    return Group(summary, Text(""), progress_view(progress))


def _auto_sell_text(auto_sell: Mapping[str, Any] | None) -> str | None:
    if not auto_sell:
        return None
    return (
        f"take profit +{auto_sell.get('takeProfitPct')} %, "
        f"stop loss -{auto_sell.get('stopLossPct')} %"
    )


def orders_table(page: Mapping[str, Any]) -> RenderableType:
    """`oee orders list`: one row per order, newest first, with the paging hint."""
    table = Table(show_edge=False)
    for column, justify in (
        ("order", "left"),
        ("pair", "left"),
        ("amount", "right"),
        ("type", "left"),
        ("status", "left"),
        ("venue", "left"),
        ("amount out", "right"),
        ("created (UTC)", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for order in page.get("orders", []):
        table.add_row(
            str(order.get("id")),
            f"{order.get('tokenIn')}→{order.get('tokenOut')}",
            str(order.get("amount")),
            terms_text(order),
            status_text(str(order.get("status"))),
            venue_name(order.get("selectedDex")),
            str(order.get("amountOut") or ""),
            str(order.get("createdAt", ""))[:23].replace("T", " "),
        )
    shown = len(page.get("orders", []))
    footer = Text(f"{shown} of {page.get('total', shown)} order(s)", style="dim")
    if page.get("nextCursor"):
        footer.append(f"; next page: --cursor {page['nextCursor']}")
    return Group(table, footer)


@dataclass(frozen=True)
class ProcessState:
    name: str
    state: str  # "up", "down", "degraded" or "unknown"
    detail: str = ""


@dataclass(frozen=True)
class StatusReport:
    """Everything `oee status` shows; also its --json output."""

    processes: tuple[ProcessState, ...]
    # group -> total lag (None: the group keeps no position we can read); None: Kafka unreadable.
    lag: Mapping[str, int | None] | None
    dead_letters: int | None
    orders_by_status: Mapping[str, int] | None
    problems: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "processes": [
                {"name": p.name, "state": p.state, "detail": p.detail} for p in self.processes
            ],
            "consumerLag": dict(self.lag) if self.lag is not None else None,
            "deadLetters": self.dead_letters,
            "ordersByStatus": dict(self.orders_by_status)
            if self.orders_by_status is not None
            else None,
            "problems": list(self.problems),
        }


_STATE_STYLES = {"up": "green", "down": "bold red", "degraded": "yellow", "unknown": "dim"}


def status_view(report: StatusReport) -> RenderableType:
    """`oee status`: processes, consumer lag per group, dead letters, orders by state."""
    processes = Table(title="Processes", title_justify="left", show_edge=False)
    processes.add_column("process")
    processes.add_column("state")
    processes.add_column("detail")
    for p in report.processes:
        processes.add_row(p.name, Text(p.state, style=_STATE_STYLES.get(p.state, "")), p.detail)

    log = Table(title="Log", title_justify="left", show_edge=False)
    log.add_column("consumer group")
    log.add_column("lag", justify="right")
    if report.lag is None:
        log.add_row("(Kafka not readable)", "?")
    else:
        for group, lag in sorted(report.lag.items()):
            log.add_row(group, "?" if lag is None else str(lag))
    dead = "?" if report.dead_letters is None else str(report.dead_letters)
    log.add_row(Text("dead letters", style="bold"), Text(dead, style="bold"))

    orders = Table(title="Orders by status", title_justify="left", show_edge=False)
    orders.add_column("status")
    orders.add_column("orders", justify="right")
    if report.orders_by_status is None:
        orders.add_row("(API not readable)", "?")
    else:
        for status in STATUSES:
            orders.add_row(status_text(status), str(report.orders_by_status.get(status, 0)))

    parts: list[RenderableType] = [processes, Text(""), log, Text(""), orders]
    parts += [Text(f"! {problem}", style="yellow") for problem in report.problems]
    return Group(*parts)


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[str | float | int]) -> str:
    """Unicode bars of the values' shape, lowest ▁ to highest █ ("" for none)."""
    numbers = [float(v) for v in values]
    if not numbers:
        return ""
    low, high = min(numbers), max(numbers)
    if high == low:
        return SPARKS[3] * len(numbers)
    scale = (len(SPARKS) - 1) / (high - low)
    return "".join(SPARKS[round((n - low) * scale)] for n in numbers)


def _best(market: Mapping[str, Any]) -> str:
    best = market.get("bestVenue") or {}
    if not best:
        return ""
    buy, sell = best.get("buy"), best.get("sell")
    if buy == sell:
        return display_name(str(buy)) if buy else ""
    return f"buy {display_name(str(buy))} · sell {display_name(str(sell))}"


def markets_table(body: Mapping[str, Any]) -> RenderableType:
    """`oee markets`: pair, mid per venue, best venue, 24 h change, volume."""
    table = Table(show_edge=False)
    table.add_column("pair")
    for venue in VENUES:
        table.add_column(f"{display_name(venue)} mid", justify="right")
    table.add_column("best venue")
    table.add_column("24 h", justify="right")
    table.add_column("24 h volume", justify="right")
    for market in body.get("markets", []):
        mids = {v.get("venue"): v.get("mid") for v in market.get("venues", [])}
        change = market.get("change24h")
        style = "green" if change and not change.startswith("-") else "red" if change else ""
        volume = market.get("volume24h") or {}
        table.add_row(
            str(market.get("pair")),
            *(display.price(mids.get(venue)) for venue in VENUES),
            _best(market),
            Text(display.percent(change) if change is not None else "-", style=style),
            display.amount(volume.get("quote", "0"), market.get("quote")),
        )
    return table


def market_view(market: Mapping[str, Any], candles: Mapping[str, Any]) -> RenderableType:
    """`oee market PAIR`: the summary, the depth ladder per venue and routed, a sparkline."""
    base, quote = market.get("base"), market.get("quote")
    head = Text()
    head.append(f"{market.get('pair')}", style="bold")
    if market.get("reference"):
        head.append(f"  {display.price(market['reference'], quote, base)}")
    change = market.get("change24h")
    if change is not None:
        head.append(
            f"  {display.percent(change)} 24 h", style="green" if change[0] != "-" else "red"
        )
    volume = market.get("volume24h") or {}
    head.append(f"  volume {display.amount(volume.get('quote', '0'), quote)}")
    mids = ", ".join(
        f"{display_name(str(v.get('venue')))} {display.price(v.get('mid'))}"
        for v in market.get("venues", [])
    )
    if mids:
        head.append(f"\n  mids: {mids}")
    best = _best(market)
    if best:
        head.append(f"; best: {best}")
    closes = [c.get("close") for c in candles.get("candles", []) if c.get("close")]
    spark = Text(f"1 m closes ({len(closes)}): {sparkline(closes) or 'no trades yet'}")
    parts: list[RenderableType] = [head, spark]
    rungs = market.get("ladder")
    if rungs:
        ladder = Table(title="Depth ladder", title_justify="left", show_edge=False)
        ladder.add_column(f"size ({base})", justify="right")
        ladder.add_column("side")
        for venue in (*VENUES, "routed"):
            ladder.add_column(display_name(venue), justify="right")
        for rung in rungs:
            for side in ("sell", "buy"):
                found = rung.get(side) or {}
                cells = [_ladder_cell(found.get("venues", {}).get(venue)) for venue in VENUES] + [
                    _ladder_cell(found.get("routed") or found)
                ]
                ladder.add_row(
                    display.amount(rung.get("size")) if side == "sell" else "", side, *cells
                )
        parts.append(ladder)
    else:
        parts.append(Text("no ladder: the venues' pools cannot be read now", style="yellow"))
    return Group(*parts)


def _ladder_cell(side: Mapping[str, Any] | None) -> str:
    """ "150.02 · 3.1 bps": the average price and the price impact."""
    if not side:
        return ""
    if side.get("error"):
        return "—"
    shown = side.get("display") or {}
    return f"{shown.get('price', '').split(' ')[0]} · {shown.get('priceImpact', '')}"
