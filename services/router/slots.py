"""The router's execution slots, in two lanes: high-priority orders first, without starving
the rest.

`max_in_flight` orders run at once. When a slot frees up it goes to the oldest waiting
high-priority order (snipers, and market orders whose key has `orders:priority`), unless
`HIGH_BURST` high-priority orders in a row have been let in while a normal order waited: then
the oldest normal order goes, so a stream of snipes slows the market lane down to 1 slot in
`HIGH_BURST + 1` at worst but never stops it.
"""

from __future__ import annotations

import asyncio
from collections import deque

HIGH_BURST = 8


class PrioritySlots:
    """A semaphore with a high and a normal lane (FIFO within each)."""

    def __init__(self, slots: int, *, high_burst: int = HIGH_BURST) -> None:
        self._free = slots
        self._high_burst = high_burst
        self._in_a_row = 0  # high grants since the last normal one while normal ones waited
        self._waiting: dict[bool, deque[asyncio.Future[None]]] = {True: deque(), False: deque()}

    @property
    def waiting(self) -> tuple[int, int]:
        """(high, normal) orders waiting for a slot."""
        return len(self._waiting[True]), len(self._waiting[False])

    async def acquire(self, *, high: bool) -> None:
        if self._free > 0 and not any(self._waiting.values()):
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[high].append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted as it was cancelled: hand the slot on
            else:
                self._waiting[high].remove(waiter)
            raise

    def release(self) -> None:
        self._free += 1
        while self._free > 0:
            lane = self._next_lane()
            if lane is None:
                return
            waiter = self._waiting[lane].popleft()
            if waiter.done():
                continue  # cancelled while waiting
            self._free -= 1
            waiter.set_result(None)

    def _next_lane(self) -> bool | None:
        high, normal = self._waiting[True], self._waiting[False]
        if not high and not normal:
            return None
        if high and (not normal or self._in_a_row < self._high_burst):
            self._in_a_row = self._in_a_row + 1 if normal else 0
            return True
        self._in_a_row = 0
        return False
