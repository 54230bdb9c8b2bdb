"""settle_heap: what a long-running process allocated by its start leaves the collector's
reach, and young collections come less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.common.process import YOUNG_COLLECTION_THRESHOLD, settle_heap


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_objects_alive_at_the_call_are_frozen_and_the_young_threshold_raised() -> None:
    gc.unfreeze()
    long_lived = [{"n": n} for n in range(1_000)]
    settle_heap()
    assert gc.get_freeze_count() >= len(long_lived)
    assert gc.get_threshold()[0] == YOUNG_COLLECTION_THRESHOLD
    # A full collection no longer looks at them: they are in no generation it walks.
    assert not any(obj is long_lived for obj in gc.get_objects())
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1  # cycles made afterwards are still collected
