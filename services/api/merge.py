"""Pure: merge an order's stored history with its live events into exactly 1..n, in order.

A socket registers for live events *before* it reads the history, so the two
overlap; and the projector may lag the live consumer, so live events can run
ahead of what history holds. `SequenceMerge` takes items from either side in
any order, with duplicates, releases each sequence once and only after all
smaller ones, and says which sequences are missing so the caller can fetch them.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class SequenceMerge(Generic[T]):
    """Releases items strictly as 1, 2, 3, ... whatever order they are offered in."""

    def __init__(self) -> None:
        self.last_sent = 0
        self._waiting: dict[int, T] = {}

    def offer(self, sequence: int, item: T) -> list[T]:
        """Take one item; return the items that can now be sent, in sequence order."""
        if sequence <= self.last_sent or sequence in self._waiting:
            return []  # a duplicate: already sent or already held
        self._waiting[sequence] = item
        ready: list[T] = []
        while self.last_sent + 1 in self._waiting:
            self.last_sent += 1
            ready.append(self._waiting.pop(self.last_sent))
        return ready

    @property
    def gap(self) -> range:
        """Sequences that must arrive before anything held can be sent (empty when none is held)."""
        if not self._waiting:
            return range(0)
        return range(self.last_sent + 1, min(self._waiting))
