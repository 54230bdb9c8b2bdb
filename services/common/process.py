"""What long-running processes share: stop on SIGTERM/SIGINT, retry while a dependency is down."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def stop_event_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, so loops can finish their batch and exit cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def retry_while_down(
    action: Callable[[], Awaitable[T]],
    *,
    is_outage: Callable[[BaseException], bool],
    what: str,
    stop: asyncio.Event,
    max_delay: float = 5.0,
) -> T | None:
    """Run `action` until it succeeds, waiting and retrying while `is_outage` says it is down.

    Returns None if asked to stop while waiting. Other errors propagate.
    """
    delay = 0.2
    while True:
        try:
            return await action()
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning(
                "%s unavailable (%s); retrying in %.1fs",
                what,
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                delay,
            )
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return None
        except TimeoutError:
            delay = min(delay * 2, max_delay)
