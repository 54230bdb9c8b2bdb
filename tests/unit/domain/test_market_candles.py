"""Candles: UTC buckets per interval, and folding that does not depend on batch boundaries."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from services.domain.market import (
    INTERVALS,
    Candle,
    UnknownInterval,
    bucket_start,
    fold,
    merge,
    trade_candle,
)

D = Decimal
AT = datetime(2026, 11, 30, 12, 34, 56, 789000, tzinfo=UTC)


def test_buckets_are_utc_and_aligned_per_interval() -> None:
    assert bucket_start(AT, "1s") == datetime(2026, 11, 30, 12, 34, 56, tzinfo=UTC)
    assert bucket_start(AT, "1m") == datetime(2026, 11, 30, 12, 34, tzinfo=UTC)
    assert bucket_start(AT, "1h") == datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert bucket_start(AT, "1d") == datetime(2026, 11, 30, tzinfo=UTC)
    # The same moment written in another zone lands in the same UTC bucket.
    elsewhere = AT.astimezone(timezone(timedelta(hours=-5)))
    assert bucket_start(elsewhere, "1d") == datetime(2026, 11, 30, tzinfo=UTC)
    with pytest.raises(UnknownInterval):
        bucket_start(AT, "5m")


def _trades(n: int, rng: random.Random) -> list[Candle]:
    return [
        trade_candle(
            "SOL-USDC", "1m", AT, seq, D(rng.randint(14000, 16000)) / 100,
            D(rng.randint(1, 10**9)) / 10**9, D(rng.randint(1, 10**6)) / 10**6,
        )
        for seq in range(1, n + 1)
    ]  # fmt: skip


def test_a_candle_is_open_high_low_close_and_volumes_of_its_trades() -> None:
    prices = ["150", "152.5", "149", "151"]
    candles: dict[tuple[str, str, datetime], Candle] = {}
    for seq, price in enumerate(prices, start=1):
        fold(candles, trade_candle("SOL-USDC", "1m", AT, seq, D(price), D(2), D(price) * 2))
    (candle,) = candles.values()
    ohlc = (candle.open, candle.high, candle.low, candle.close)
    assert ohlc == (D(150), D("152.5"), D(149), D(151))
    assert candle.volume_base == 8
    assert candle.volume_quote == sum(D(p) * 2 for p in prices)
    assert candle.trades == 4
    assert (candle.first_sequence, candle.last_sequence) == (1, 4)


@pytest.mark.parametrize("seed", range(20))
def test_merging_partial_candles_gives_the_same_candle_however_the_trades_are_cut(
    seed: int,
) -> None:
    rng = random.Random(seed)
    trades = _trades(rng.randint(1, 40), rng)
    whole = trades[0]
    for one in trades[1:]:
        whole = merge(whole, one)
    # Cut into batches at random points; each batch folded alone, then merged in any order.
    cuts = sorted(rng.sample(range(1, len(trades)), k=min(len(trades) - 1, rng.randint(0, 5))))
    parts = [trades[a:b] for a, b in zip([0, *cuts], [*cuts, len(trades)], strict=True)]
    partials = []
    for part in parts:
        candle = part[0]
        for one in part[1:]:
            candle = merge(candle, one)
        partials.append(candle)
    rng.shuffle(partials)
    merged = partials[0]
    for partial in partials[1:]:
        merged = merge(merged, partial)
    assert merged == whole
    assert merged.open == trades[0].open
    assert merged.close == trades[-1].close


def test_candles_of_different_buckets_do_not_merge() -> None:
    one = trade_candle("SOL-USDC", "1m", AT, 1, D(1), D(1), D(1))
    other = trade_candle("SOL-USDC", "1m", AT + timedelta(minutes=1), 2, D(1), D(1), D(1))
    with pytest.raises(ValueError, match="cannot merge"):
        merge(one, other)
    assert set(INTERVALS) == {"1s", "1m", "1h", "1d"}
