"""Pure: the API's JSON -> rich renderables (tables, the live view of one order, the status page).

Nothing here does I/O; `cli.py` prints what these return. Money arrives as decimal
strings and is shown as it came, so what the user reads is what the log holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

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
    rows = (("amount out", "amountOut"), ("fee", "fee"), ("price impact", "priceImpact"))
    for label, key in rows:
        table.add_row(label, *(str(by_venue[v].get(key, "")) for v in venues))
    if any(by_venue[v].get("error") for v in venues):
        table.add_row("error", *(str(by_venue[v].get("error") or "") for v in venues))
    return table


def plan_text(plan: Mapping[str, Any], reason: str | None) -> Text:
    """The route plan in one or two lines: kind, legs, expected and minimum out, why."""
    legs = plan.get("legs", [])
    hops = ", ".join(
        f"{display_name(leg.get('venue', '?'))} "
        f"{leg.get('tokenIn')}→{leg.get('tokenOut')} {leg.get('amountIn')}→{leg.get('amountOut')}"
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
    text.append(f"  expect {plan.get('amountOut')}, at least {plan.get('minAmountOut')}")
    gain = plan.get("splitImprovementBps")
    if plan.get("kind") == "split" and gain:
        text.append(f", split gains {gain} bps")
    if reason:
        text.append("\n  why: ", style="bold")
        text.append(reason)
    return text


def fill_text(completed: Mapping[str, Any]) -> Text:
    text = Text()
    text.append("Filled ", style="bold green")
    text.append(
        f"on {venue_name(completed.get('selectedDex'))}: {completed.get('amountIn')} in, "
        f"{completed.get('amountOut')} out at {completed.get('executedPrice')}, "
        f"fee {completed.get('fee')}\n  tx {completed.get('txHash')}"
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
            parts.append(fill_text(progress.final))
        else:
            parts.append(failure_text(progress.final))
        total = elapsed(progress.submitted_at, progress.steps[-1][1])
        if total is not None:
            parts.append(Text(f"submit → {progress.final.get('status')} in {total:.3f} s"))
    if progress.error:
        parts.append(Text(progress.error, style="bold red"))
    return Group(*parts)


def order_view(order: Mapping[str, Any], events: Iterable[Mapping[str, Any]]) -> RenderableType:
    """`oee order show`: the read model's row, then its timeline from the stored events."""
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    rows = (
        ("order", order.get("id")),
        ("pair", f"{order.get('tokenIn')} → {order.get('tokenOut')}"),
        ("amount", order.get("amount")),
        ("slippage", order.get("slippage")),
        ("status", status_text(str(order.get("status")))),
        ("venue", venue_name(order.get("selectedDex"))),
        ("amount out", order.get("amountOut")),
        ("price", order.get("executedPrice")),
        ("fee", order.get("fee")),
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
    progress = OrderProgress(str(order.get("id")))
    for event in events:
        progress.apply(flatten_event(event))
    return Group(summary, Text(""), progress_view(progress))


def orders_table(page: Mapping[str, Any]) -> RenderableType:
    """`oee orders list`: one row per order, newest first, with the paging hint."""
    table = Table(show_edge=False)
    for column, justify in (
        ("order", "left"),
        ("pair", "left"),
        ("amount", "right"),
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
