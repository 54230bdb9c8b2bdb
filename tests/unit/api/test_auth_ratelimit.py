"""Token buckets per key and socket counts per key, on a fake clock."""

from __future__ import annotations

import math

import pytest

from services.api.auth.ratelimit import ConnectionLimiter, RateLimiter, retry_after
from services.api.auth.store import checked_limit


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


def test_a_key_with_its_own_limit_gets_its_own_rate_and_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=1, clock=clock)
    assert [limiter.take("bot", 500, 1000) for _ in range(1000)] == [0.0] * 1000
    wait = limiter.take("bot", 500, 1000)
    assert wait == pytest.approx(1 / 500)
    clock.now += 0.1001  # 50 tokens at 500/s (and a little over: float time)
    assert [limiter.take("bot", 500, 1000) for _ in range(50)] == [0.0] * 50
    assert limiter.take("bot", 500, 1000) > 0
    assert limiter.take("default") == 0.0
    assert limiter.take("default") == pytest.approx(1.0)


def test_a_key_limit_checks_rate_and_fills_the_burst() -> None:
    assert checked_limit(None, None) == (None, None)
    assert checked_limit(500, None) == (500, 1000)
    assert checked_limit(0.2, None) == (0.2, 1)
    assert checked_limit(500, 10) == (500, 10)
    for rate, burst in ((0, None), (-1, None), (math.inf, None), (math.nan, None), (5, 0)):
        with pytest.raises(ValueError, match=r"rate limit|burst"):
            checked_limit(rate, burst)
