"""The projector's reader gathers records into fewer fetches while they flow, and only then."""

from __future__ import annotations

from services.common.kafka import BUSY_FETCH_MAX_WAIT_MS, BUSY_FETCH_MIN_BYTES, FetchWait
from services.common.kafka import next_fetch_wait as wait_after

AIOKAFKA_DEFAULT = FetchWait(min_bytes=1, max_wait_ms=500)


def test_records_make_the_next_fetch_wait_a_moment_for_more() -> None:
    assert wait_after(True, AIOKAFKA_DEFAULT) == FetchWait(
        BUSY_FETCH_MIN_BYTES, BUSY_FETCH_MAX_WAIT_MS
    )
    # A few ms at most: every live reader (the router, the sockets' feed) waits this per hop.
    assert BUSY_FETCH_MAX_WAIT_MS <= 5


def test_an_empty_fetch_restores_the_consumers_own_settings() -> None:
    assert wait_after(False, AIOKAFKA_DEFAULT) == AIOKAFKA_DEFAULT
    own = FetchWait(min_bytes=1, max_wait_ms=100)
    assert wait_after(False, own) == own


def test_a_consumer_asking_for_more_bytes_keeps_asking_for_them() -> None:
    big = FetchWait(min_bytes=4 * BUSY_FETCH_MIN_BYTES, max_wait_ms=500)
    assert wait_after(True, big).min_bytes == big.min_bytes
