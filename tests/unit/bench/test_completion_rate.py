"""The load bench's completion rate (`bench/report.py`), which `--find-max` holds to 95 %."""

from __future__ import annotations

from bench.report import completion_rate


def test_one_retried_order_at_the_end_does_not_read_as_falling_behind() -> None:
    steady = [k / 240 for k in range(4_800)]  # 240/s for 20 s
    retried = [*steady, steady[-1] + 6.0]  # one order waited out a 2 s and a 4 s backoff
    assert completion_rate(steady) == 240.0
    assert completion_rate(retried) == 240.0


def test_a_system_that_falls_behind_shows_its_own_rate() -> None:
    """Offered 240/s, it completes 150/s: its completions spread over 32 s, not 20."""
    assert completion_rate([k / 150 for k in range(4_800)]) == 150.0


def test_too_few_completions_have_no_rate() -> None:
    assert completion_rate([]) is None
    assert completion_rate([3.0]) is None
    assert completion_rate([3.0, 3.0]) is None
