"""The pure market projection: trades into candles, newest ticks, duplicates and bad records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.market import encode_market
from services.projector.market_projection import project_market
from services.projector.projection import LogRecord
from tests.market_builders import T0, D, tick, trade

TICKS, TRADES = "market.ticks", "market.trades"


def _records(topic: str, values: list[bytes], start: int = 0) -> list[LogRecord]:
    return [LogRecord(topic, 0, start + i, b"SOL-USDC", v) for i, v in enumerate(values)]


def test_trades_fold_into_candles_of_every_interval_and_ticks_keep_the_newest() -> None:
    trades = [
        encode_market(1, trade(10, "150", "2", at=T0)),
        encode_market(2, trade(11, "152", "1", at=T0 + timedelta(seconds=30))),
        encode_market(3, trade(12, "149", "1", at=T0 + timedelta(seconds=61))),
    ]
    ticks = [encode_market(1, tick(10)), encode_market(2, tick(11, raydium="151"))]
    records = _records(TRADES, trades) + _records(TICKS, ticks)
    projection = project_market(records, {}, ticks_topic=TICKS, trades_topic=TRADES)
    assert [row.sequence for row in projection.trades] == [1, 2, 3]
    minute = projection.candles[("SOL-USDC", "1m", T0)]
    assert (minute.open, minute.high, minute.low, minute.close) == (D(150), D(152), D(150), D(152))
    assert minute.volume_base == 3
    assert minute.volume_quote == 452
    assert minute.trades == 2
    nxt = projection.candles[("SOL-USDC", "1m", T0 + timedelta(minutes=1))]
    assert nxt.open == nxt.close == 149
    hour = projection.candles[("SOL-USDC", "1h", T0)]
    assert (hour.open, hour.close, hour.trades) == (D(150), D(149), 3)
    assert len([k for k in projection.candles if k[1] == "1s"]) == 3
    assert projection.ticks["SOL-USDC"].sequence == 2
    assert projection.ticks["SOL-USDC"].tick.venues[0].mid == 151
    assert projection.sequences == {(TRADES, "SOL-USDC"): 3, (TICKS, "SOL-USDC"): 2}
    assert projection.positions == {(TRADES, 0): 3, (TICKS, 0): 2}


def test_records_at_or_below_the_last_sequence_are_duplicates_and_counted_once() -> None:
    values = [encode_market(s, trade(s, "150")) for s in (4, 5, 5, 6)]
    projection = project_market(
        _records(TRADES, values), {(TRADES, "SOL-USDC"): 4}, ticks_topic=TICKS, trades_topic=TRADES
    )
    assert [row.sequence for row in projection.trades] == [5, 6]
    assert projection.duplicates == 2
    assert projection.candles[("SOL-USDC", "1d", datetime(2026, 11, 30, tzinfo=UTC))].trades == 2


def test_unreadable_or_misplaced_records_are_rejected_and_passed() -> None:
    values = [b"not json", encode_market(1, tick(1)), encode_market(1, trade(1, "150"))]
    records = _records(TRADES, values)
    projection = project_market(records, {}, ticks_topic=TICKS, trades_topic=TRADES)
    assert len(projection.rejected) == 2
    assert "not JSON" in projection.rejected[0].reason
    assert "does not belong" in projection.rejected[1].reason
    assert len(projection.trades) == 1
    assert projection.positions == {(TRADES, 0): 3}
