"""A rebuild spread over processes, each folding a share of the log's partitions.

One Python process folds about 16,000 events a second (decoding and validating
each event is most of it, see docs/benchmarks.md) while PostgreSQL and the broker
need a fraction of another core. An order lives in one partition, so shares of
the partitions rebuild independently into the same schema: each worker is an
ordinary `Rebuilder` limited to its partitions, and once they all reached their
stops the caller's rebuilder carries on from their positions (a switch's catch-up,
verify's comparison) with their findings added to its report.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event as ProcessEvent

from services.common.settings import Settings
from services.replay.rebuilder import Interrupted, Rebuilder, RebuildError, RebuildReport

_POLL_SECONDS = 0.2
_JOIN_SECONDS = 30.0


async def run_to_in_parallel(
    rebuilder: Rebuilder, stops: Mapping[int, int], workers: int
) -> RebuildReport:
    """`rebuilder.run_to(stops)`, with the partitions spread over up to `workers` processes."""
    starts = await rebuilder.positions()
    pending = sorted(p for p in rebuilder.partitions if starts[p] < stops.get(p, 0))
    if workers <= 1 or len(pending) < 2:
        return await rebuilder.run_to(stops)
    shares = [pending[i::workers] for i in range(min(workers, len(pending)))]
    context = multiprocessing.get_context("spawn")  # no forked copy of a running event loop
    results: multiprocessing.Queue[RebuildReport | str] = context.Queue()
    stopping = context.Event()
    done = [context.Value("q", 0) for _ in shares]
    processes = [
        context.Process(
            target=_rebuild_share,
            args=(
                _Share(
                    rebuilder.settings,
                    rebuilder.schema,
                    {p: (starts[p], stops[p]) for p in share},
                    rebuilder.batch_size,
                    rebuilder.cache.capacity,
                ),
                records,
                stopping,
                results,
            ),
            name=f"oee-rebuild-{n}",
            daemon=True,
        )
        for n, (share, records) in enumerate(zip(shares, done, strict=True))
    ]
    total = rebuilder.report.records + sum(stops[p] - starts[p] for p in pending)
    began = time.perf_counter()
    for process in processes:
        process.start()
    try:
        outcomes = await _collect(rebuilder, processes, results, stopping, done, total)
    finally:
        stopping.set()
        for process in processes:
            await asyncio.to_thread(process.join, _JOIN_SECONDS)
            if process.is_alive():
                process.kill()
    rebuilder.report.seconds += time.perf_counter() - began
    failures = [outcome for outcome in outcomes if isinstance(outcome, str)]
    if rebuilder.stop is not None and rebuilder.stop.is_set():
        raise Interrupted
    if failures or len(outcomes) < len(processes):
        raise RebuildError(f"a rebuild worker failed: {failures[0] if failures else 'it died'}")
    for outcome in outcomes:
        assert isinstance(outcome, RebuildReport)
        rebuilder.report.add(outcome)
    rebuilder.seek({p: rebuilder.report.positions.get(p, starts[p]) for p in pending})
    return rebuilder.report


async def _collect(
    rebuilder: Rebuilder,
    processes: Sequence[multiprocessing.process.BaseProcess],
    results: multiprocessing.Queue[RebuildReport | str],
    stopping: ProcessEvent,
    done: list[Synchronized[int]],
    total: int,
) -> list[RebuildReport | str]:
    """Every worker's report (or error), read as they come: a worker exits only once its
    report has been taken from the queue. Passes progress and a stop request along."""
    outcomes: list[RebuildReport | str] = []
    while len(outcomes) < len(processes):
        with contextlib.suppress(queue.Empty):
            outcomes.append(results.get_nowait())
            continue
        if rebuilder.stop is not None and rebuilder.stop.is_set():
            stopping.set()
        if rebuilder.on_progress is not None:
            rebuilder.on_progress(rebuilder.report.records + sum(d.value for d in done), total)
        if not any(process.is_alive() for process in processes) and results.empty():
            break  # a worker died without a word (killed): the caller reports it
        await asyncio.sleep(_POLL_SECONDS)
    return outcomes


@dataclass(frozen=True)
class _Share:
    """What one worker rebuilds: where, which partitions from which offset to which."""

    settings: Settings
    schema: str
    ranges: dict[int, tuple[int, int]]  # partition -> (start, stop) next offsets
    batch_size: int
    cache_size: int


def _rebuild_share(
    share: _Share,
    records: Synchronized[int],
    stopping: ProcessEvent,
    results: multiprocessing.Queue[RebuildReport | str],
) -> None:
    """A worker process: rebuild its share, report back (or say why it could not)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to pass on
    try:
        results.put(asyncio.run(_rebuild(share, records, stopping)))
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")


async def _rebuild(
    share: _Share, records: Synchronized[int], stopping: ProcessEvent
) -> RebuildReport:
    stop = asyncio.Event()

    def progress(done: int, _total: int) -> None:
        records.value = done

    async def watch() -> None:
        # A process-shared event cannot be awaited: look at it between batches' worth of time.
        while True:
            if stopping.is_set():
                stop.set()
                return
            await asyncio.sleep(_POLL_SECONDS)

    async with Rebuilder(
        share.settings,
        share.schema,
        batch_size=share.batch_size,
        cache_size=share.cache_size,
        on_progress=progress,
        stop=stop,
        partitions=share.ranges,
    ) as rebuilder:
        rebuilder.seek({p: start for p, (start, _) in share.ranges.items()})
        watcher = asyncio.create_task(watch())
        try:
            return await rebuilder.run_to({p: end for p, (_, end) in share.ranges.items()})
        finally:
            watcher.cancel()
