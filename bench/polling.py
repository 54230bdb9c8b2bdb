"""Waiting for a condition to hold: the one polling loop of the tests and the benchmarks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

T = TypeVar("T")


class HasLogs(Protocol):
    """Something whose logs say why a wait failed: the processes of a system under test."""

    def logs(self) -> str: ...


class TimedOut(AssertionError):
    """The deadline passed before the condition held (an assertion, so a test fails on it)."""


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    what: str | None = None,
    *,
    timeout: float = 20.0,
    interval: float = 0.1,
    system: HasLogs | None = None,
) -> T:
    """Poll `check` until it returns something truthy, and return that.

    Past `timeout` seconds raise `TimedOut` naming `what`, with `system`'s logs if given;
    `check` runs at least once, and once more at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() >= deadline:
            details = f"\n{system.logs()}" if system is not None else ""
            raise TimedOut(
                f"timed out after {timeout}s waiting for {what or 'the condition'}{details}"
            )
        await asyncio.sleep(interval)
