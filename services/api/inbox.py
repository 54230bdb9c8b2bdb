"""A socket's bounded inbox: what the live feeds hand each subscriber, without ever waiting.

A list and at most one waiting future, instead of an `asyncio.Queue` and an `asyncio.Event`
with a task watching it: those were about 9 KB of each socket's ~41 KB of Python objects in
the API (tracemalloc, 400 sockets; `docs/benchmarks.md`, second round), and the feeds never
need a queue's blocking put. An inbox that would grow past `maxsize` gives up on its
subscriber instead: it drops what it holds and calls its overflow callback once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    """Items in arrival order for one consumer; `offer` never waits."""

    __slots__ = ("_items", "_maxsize", "_on_overflow", "_waiter", "overflowed")

    def __init__(self, maxsize: int) -> None:
        # A list, not a deque: an empty deque allocates a 64-slot block (~600 bytes) and the
        # inbox is nearly always empty; pop(0) over at most `maxsize` pointers is cheap.
        self._items: list[T] = []
        self._maxsize = maxsize
        self._waiter: asyncio.Future[None] | None = None
        self._on_overflow: Callable[[], None] | None = None
        self.overflowed = False

    def offer(self, item: T) -> None:
        """Append `item`; past `maxsize`, give up on this subscriber (once)."""
        if self.overflowed:
            return
        if len(self._items) >= self._maxsize:
            self.overflowed = True
            self._items.clear()
            if self._on_overflow is not None:
                self._on_overflow()
            return
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> T:
        """The oldest item, waiting for one. Cancelling the wait loses nothing: an item is
        only taken from the inbox by the call that returns it."""
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def get_nowait(self) -> T | None:
        return self._items.pop(0) if self._items else None

    def on_overflow(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the inbox overflows (at once if it already has)."""
        self._on_overflow = callback
        if self.overflowed:
            callback()
