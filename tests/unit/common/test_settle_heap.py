"""settle_heap: what a long-running process allocated by its start leaves the collector's reach."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.common.process import settle_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_objects_alive_at_the_call_are_frozen_and_later_cycles_still_collected() -> None:
    long_lived = [{"n": n} for n in range(1_000)]
    settle_heap()
    assert gc.get_freeze_count() >= len(long_lived)
    # A full collection no longer walks them: they are in no generation it looks at.
    assert not any(obj is long_lived for obj in gc.get_objects())
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
