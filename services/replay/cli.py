"""`oee replay ...`: rebuild the read models from the log, verify them, tell one order's story."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from services.common.db import LIVE_SCHEMA
from services.common.errors import DependencyUnavailable
from services.common.process import stop_event_on_signals
from services.common.settings import Settings, get_settings
from services.replay.market import MarketReport, rebuild_market, verify_market
from services.replay.rebuild import rebuild
from services.replay.rebuilder import (
    Interrupted,
    RebuildError,
    RebuildReport,
    Until,
    parse_until,
)
from services.replay.timeline import read_order, render, to_json
from services.replay.verify import verify

T = TypeVar("T")

replay_app = typer.Typer(
    help="Replay the order event log: rebuild or verify the read models, show an order's story.",
    no_args_is_help=True,
)
console = Console(stderr=True)


class _Rate(ProgressColumn):
    """Events per second over rich's moving window."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} events/s" if speed else "- events/s", style="cyan")


@contextmanager
def _progress(what: str) -> Iterator[Callable[[int, int], None]]:
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(what, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def _settings() -> Settings:
    return get_settings().with_local_servers()


def _run(main: Callable[[asyncio.Event], Coroutine[Any, Any, T]]) -> T:
    """Run `main(stop)` where Ctrl-C/SIGTERM set `stop`; one-line errors, exit codes 2 and 130."""

    async def with_signals() -> T:
        return await main(stop_event_on_signals())

    try:
        return asyncio.run(with_signals())
    except Interrupted:
        console.print("[yellow]interrupted: the partial schema was dropped,"
                      " the live read model is untouched[/yellow]")  # fmt: skip
        raise typer.Exit(130) from None
    except (DependencyUnavailable, RebuildError) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None


def _summary(report: RebuildReport) -> None:
    console.print(
        f"read {report.records:,} records of {report.topic} in {report.seconds:.1f}s"
        f" ({report.records_per_second:,.0f} events/s): {report.events:,} events applied,"
        f" {report.duplicates:,} duplicates ignored, {report.rejected:,} rejected"
    )
    for rejected in report.rejects[:5]:
        record = rejected.record
        console.print(f"  rejected {record.partition}/{record.offset}: {rejected.reason}")
    for partition, (asked, end) in sorted(report.short.items()):
        console.print(f"[red]log shorter than expected[/red]: partition {partition} ends at"
                      f" {end:,}, the read model claims {asked:,}")  # fmt: skip
    if report.first_break is None:
        console.print(f"[green]hash chain intact[/green] over {report.events:,} events")
    else:
        console.print(f"[red]hash chain broken[/red] in {report.chain_breaks} place(s);"
                      f" first: {report.first_break.describe()}")  # fmt: skip


# One process folds ~16,000 events/s; the partitions spread over the cores beside it.
DEFAULT_WORKERS = os.cpu_count() or 1
Workers = Annotated[
    int, typer.Option(min=1, max=64, help="Processes folding the log, each a share of partitions.")
]


@replay_app.command("rebuild")
def rebuild_command(
    until: Annotated[
        str | None,
        typer.Option(
            help="State at a moment: an ISO 8601 time (UTC if naive; the log's record times)"
            " or next offsets per partition as P:OFFSET,P:OFFSET (others not read)."
            " Never switched in.",
        ),
    ] = None,
    into: Annotated[
        str | None,
        typer.Option(help="Build into this new schema beside the live one instead of switching."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=100, help="Records per transaction.")] = 10_000,
    workers: Workers = DEFAULT_WORKERS,
    schema: Annotated[str, typer.Option(help="The live read-model schema.")] = LIVE_SCHEMA,
) -> None:
    """Rebuild the read models from the start of the log, then switch them in atomically."""
    try:
        stop_at: Until | None = parse_until(until) if until else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--until") from None
    settings = _settings()

    async def main(stop: asyncio.Event) -> None:
        with _progress("rebuilding") as progress:
            result = await rebuild(
                settings,
                into=into,
                until=stop_at,
                live=schema,
                batch_size=batch_size,
                on_progress=progress,
                stop=stop,
                workers=workers,
            )
        _summary(result.report)
        if stop_at is not None:
            console.print(f"state of {stop_at.describe()}")
        if result.replaced:
            console.print(f"[green]switched in[/green]: {result.schema} is the rebuilt read"
                          f" model; the former one is kept as {result.replaced}")  # fmt: skip
        else:
            console.print(f"rebuilt read model left beside the live one in schema {result.schema}")
        if stop_at is not None:
            console.print("market tables: not rebuilt with --until (they are always rebuilt whole)")
            return
        with _progress("rebuilding market") as progress:
            market = await rebuild_market(
                settings,
                into=f"{into}_market" if into else None,
                batch_size=batch_size,
                on_progress=progress,
                stop=stop,
            )
        _market_summary(market.report, market.skipped)
        if market.replaced:
            console.print(f"[green]switched in[/green]: {market.schema} is the rebuilt market"
                          f" data; the former one is kept as {market.replaced}")  # fmt: skip
        elif market.skipped is None:
            console.print(f"rebuilt market data left beside the live one in {market.schema}")

    _run(main)


def _market_summary(report: MarketReport, skipped: str | None) -> None:
    if skipped is not None:
        console.print(f"market tables: nothing to read ({skipped})")
        return
    console.print(
        f"read {report.records:,} market records in {report.seconds:.1f}s: {report.trades:,}"
        f" trades, {report.ticks:,} ticks, {report.duplicates:,} duplicates ignored,"
        f" {report.rejected:,} rejected"
    )
    for rejected in report.rejects[:5]:
        record = rejected.record
        console.print(f"  rejected {record.topic}/{record.partition}/{record.offset}:"
                      f" {rejected.reason}")  # fmt: skip


@replay_app.command("verify")
def verify_command(
    keep: Annotated[bool, typer.Option(help="Keep the scratch schema for inspection.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="Differences to print at most.")] = 20,
    workers: Workers = DEFAULT_WORKERS,
    schema: Annotated[str, typer.Option(help="The live read-model schema.")] = LIVE_SCHEMA,
) -> None:
    """Rebuild into a scratch schema, compare with the live read models, check the hash chain."""
    settings = _settings()

    async def main(stop: asyncio.Event) -> bool:
        with _progress("verifying") as progress:
            result = await verify(
                settings,
                live=schema,
                keep=keep,
                limit=limit,
                on_progress=progress,
                stop=stop,
                workers=workers,
            )
        _summary(result.report)
        compared = ",".join(f"{p}:{o}" for p, o in sorted(result.compared_at.items()))
        if not result.compared_at:
            compared = f"none (the live read model has not read {result.report.topic} yet)"
        if not any(result.differing.values()):
            console.print(f"[green]read models equal[/green] to the log at positions {compared}")
        else:
            counts = ", ".join(f"{n:,} {table} row(s)" for table, n in result.differing.items())
            console.print(f"[red]read models differ[/red] at positions {compared}: {counts}")
            for difference in result.differences:
                console.print(f"  {difference.describe()}", highlight=False)
        if result.scratch:
            console.print(f"scratch schema kept: {result.scratch}")
        with _progress("verifying market") as progress:
            market = await verify_market(
                settings, limit=limit, keep=keep, on_progress=progress, stop=stop
            )
        _market_summary(market.report, market.skipped)
        if market.skipped is None:
            where = ", ".join(f"{t}/{p}:{o}" for (t, p), o in sorted(market.compared_at.items()))
            if market.ok:
                console.print(f"[green]market tables equal[/green] to the log at {where or '-'}")
            else:
                counts = ", ".join(f"{n:,} {table} row(s)" for table, n in market.differing.items())
                console.print(f"[red]market tables differ[/red] at {where}: {counts}")
                for difference in market.differences:
                    console.print(f"  {difference.describe()}", highlight=False)
        return result.ok and market.ok

    if not _run(main):
        raise typer.Exit(1)


@replay_app.command("order")
def order_command(
    order_id: Annotated[uuid.UUID, typer.Argument(help="The order's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    schema: Annotated[str, typer.Option(help="The live read-model schema.")] = LIVE_SCHEMA,
) -> None:
    """An order's timeline from the log: events, quotes, decision and reason, fill, chain."""
    settings = _settings()

    async def main(stop: asyncio.Event) -> None:
        timeline = await read_order(settings, order_id, live=schema)
        if as_json:
            sys.stdout.buffer.write(to_json(timeline) + b"\n")
        elif not timeline.entries:
            console.print(f"order {order_id} is not on {timeline.topic}")
        else:
            render(timeline, Console())
        if not timeline.entries:
            raise typer.Exit(1)

    _run(main)
