"""Pure: the market's read side in numbers: candle intervals, UTC buckets, and candle folding.

A candle is an associative summary of the trades in one bucket: merging the candle of
trades 1..k with the candle of trades k+1..n gives the candle of 1..n, whatever the
batch boundaries. The projector folds each batch into partial candles and merges
them into the stored rows (the SQL upsert mirrors `merge`), so the live projector and
`oee replay rebuild`, which cut the log into different batches, store equal rows.
Open and close are the trades with the lowest and highest per-pair sequence number
(the market publishes a pair's trades in slot order, so that is slot order too).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal
from types import MappingProxyType

INTERVALS = MappingProxyType({"1s": 1, "1m": 60, "1h": 3600, "1d": 86400})
"""Candle intervals, as the API and the tables name them, in seconds."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Volumes are sums of many amounts with up to 9 decimals: never let a sum round.
_SUMS = Context(prec=60)


class UnknownInterval(ValueError):
    """Not one of INTERVALS."""


def interval_seconds(interval: str) -> int:
    try:
        return INTERVALS[interval]
    except KeyError:
        raise UnknownInterval(interval) from None


def bucket_start(at: datetime, interval: str) -> datetime:
    """The UTC start of the interval's bucket holding `at` (buckets are aligned on the epoch,
    so a day starts at 00:00 UTC)."""
    seconds = interval_seconds(interval)
    elapsed = int((at.astimezone(UTC) - _EPOCH).total_seconds() // seconds)
    return _EPOCH + timedelta(seconds=elapsed * seconds)


@dataclass(frozen=True, slots=True)
class Candle:
    """OHLCV of one pair in one bucket of one interval."""

    pair: str
    interval: str
    bucket: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume_base: Decimal
    volume_quote: Decimal
    trades: int
    first_sequence: int  # the trade that set `open`
    last_sequence: int  # the trade that set `close`

    @property
    def key(self) -> tuple[str, str, datetime]:
        return (self.pair, self.interval, self.bucket)


def trade_candle(
    pair: str,
    interval: str,
    at: datetime,
    sequence: int,
    price: Decimal,
    amount_base: Decimal,
    amount_quote: Decimal,
) -> Candle:
    """The candle of a single trade."""
    return Candle(
        pair, interval, bucket_start(at, interval), price, price, price, price,
        amount_base, amount_quote, 1, sequence, sequence,
    )  # fmt: skip


def merge(a: Candle, b: Candle) -> Candle:
    """The candle of the trades of `a` and of `b` (same pair, interval and bucket; disjoint)."""
    if a.key != b.key:
        raise ValueError(f"cannot merge candles of {a.key} and {b.key}")
    first = a if a.first_sequence <= b.first_sequence else b
    closing = a if a.last_sequence >= b.last_sequence else b
    return Candle(
        a.pair,
        a.interval,
        a.bucket,
        open=first.open,
        high=max(a.high, b.high),
        low=min(a.low, b.low),
        close=closing.close,
        volume_base=_SUMS.add(a.volume_base, b.volume_base),
        volume_quote=_SUMS.add(a.volume_quote, b.volume_quote),
        trades=a.trades + b.trades,
        first_sequence=first.first_sequence,
        last_sequence=closing.last_sequence,
    )


def fold(candles: dict[tuple[str, str, datetime], Candle], candle: Candle) -> None:
    """Merge `candle` into the one of its key in `candles` (in place)."""
    found = candles.get(candle.key)
    candles[candle.key] = candle if found is None else merge(found, candle)
