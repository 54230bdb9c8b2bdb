"""What long-running processes share: stop on SIGTERM/SIGINT, retry while a dependency is down."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")
log = logging.getLogger(__name__)


def settle_heap() -> None:
    """Call once a long-running process has imported its code: the objects so far (modules,
    classes, pydantic schemas: about 140,000 in the API) leave the collector's reach.

    Why: each full collection walked every one of them. In the API under wrk the collector
    paused it for up to 144 ms (660 ms in 15 s, five full collections), which was the 202's
    p99; frozen, the longest pause was 15 ms (55 ms in all), measured with gc.callbacks
    (docs/benchmarks.md). Raising the young generation's threshold (700 -> 10,000) saved
    another 1.7 % of a core but held 12 MB more garbage with 5,000 sockets, so it stays.
    """
    gc.collect()
    gc.freeze()


def stop_event_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, so loops can finish their batch and exit cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@overload
async def retry_while_down(
    action: Callable[[], Awaitable[T]],
    *,
    is_outage: Callable[[BaseException], bool],
    what: str,
    stop: asyncio.Event,
    max_delay: float = ...,
) -> T | None: ...


@overload
async def retry_while_down(
    action: Callable[[], Awaitable[T]],
    *,
    is_outage: Callable[[BaseException], bool],
    what: str,
    stop: None = None,
    max_delay: float = ...,
) -> T: ...


async def retry_while_down(
    action: Callable[[], Awaitable[T]],
    *,
    is_outage: Callable[[BaseException], bool],
    what: str,
    stop: asyncio.Event | None = None,
    max_delay: float = 5.0,
) -> T | None:
    """Run `action` until it succeeds, waiting while `is_outage` says its dependency is down.

    The one retry cadence of every process (producer restarts, appends, the chain, stored
    positions): waits double from 0.2 s to `max_delay`, quick to notice a recovery without
    hammering a server that is down. Without `stop` it waits as long as the outage lasts;
    with it, it returns None if asked to stop while waiting. Other errors propagate.
    """
    delay = 0.2
    while True:
        try:
            return await action()
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning("%s unavailable (%s); retrying in %.1fs", what, _first_line(exc), delay)
        if stop is None:
            await asyncio.sleep(delay)
        else:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return None
            except TimeoutError:
                pass
        delay = min(delay * 2, max_delay)
