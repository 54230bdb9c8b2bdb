"""Token buckets per key and socket counts per key, on a fake clock."""

from __future__ import annotations

import pytest

from services.api.auth.ratelimit import ConnectionLimiter, RateLimiter, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate_then_recovery() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a")
    assert wait == pytest.approx(0.5)
    assert retry_after(wait) == "1"
    clock.now += 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    clock.now += 60  # refills to the burst, never beyond
    assert [limiter.take("a") for _ in range(4)][:3] == [0.0, 0.0, 0.0]
    assert limiter.take("a") > 0


def test_keys_do_not_share_a_bucket() -> None:
    limiter = RateLimiter(rate=1, burst=1, clock=Clock())
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0.0


def test_refused_attempts_do_not_push_recovery_further_away() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=1, clock=clock)
    limiter.take("a")
    for _ in range(10):
        assert limiter.take("a") > 0
    clock.now += 1
    assert limiter.take("a") == 0.0


def test_memory_is_bounded_by_forgetting_the_least_recent_key() -> None:
    limiter = RateLimiter(rate=1, burst=1, clock=Clock(), max_keys=2)
    for key in ("a", "b", "c"):
        limiter.take(key)
    assert limiter.take("a") == 0.0  # forgotten, so a full bucket again
    assert limiter.take("c") > 0


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert retry_after(0.01) == "1"
    assert retry_after(1.2) == "2"


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(rate=0, burst=1)


def test_sockets_are_counted_per_key() -> None:
    limits = ConnectionLimiter(2)
    assert limits.acquire("a")
    assert limits.acquire("a")
    assert not limits.acquire("a")
    assert limits.acquire("b")
    limits.release("a")
    assert limits.open_for("a") == 1
    assert limits.acquire("a")
    limits.release("a")
    limits.release("a")
    assert limits.open_for("a") == 0
