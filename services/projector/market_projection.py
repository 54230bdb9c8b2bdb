"""Pure market projection: a batch of `market.trades` / `market.ticks` records -> rows to write.

No I/O here. The market projector and `oee replay rebuild` both call `project_market`,
so the tables they build cannot differ. Each pair's records carry a per-pair
sequence number: a record at or below the last one applied is a duplicate and is
dropped (a redelivery, or a producer's retry), so a trade is counted in the candles
once. Candles come out as partial candles of this batch's trades, which the store
merges into the stored rows (see `services.domain.market.merge`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.market import MarketTick, MarketTrade, UndecodableMarketRecord, decode_market
from services.domain.market import INTERVALS, Candle, fold, trade_candle
from services.projector.projection import LogRecord, Rejected

CandleKey = tuple[str, str, datetime]


@dataclass(frozen=True, slots=True)
class TradeRow:
    """A row of `market_data.trades`."""

    sequence: int
    trade: MarketTrade


@dataclass(frozen=True, slots=True)
class TickRow:
    """A row of `market_data.latest_ticks`."""

    sequence: int
    tick: MarketTick


@dataclass
class MarketProjection:
    """What one batch changes: trades, partial candles, newest ticks, sequences, positions."""

    trades: list[TradeRow] = field(default_factory=list)
    candles: dict[CandleKey, Candle] = field(default_factory=dict)
    ticks: dict[str, TickRow] = field(default_factory=dict)  # the newest per pair
    # (topic, pair) -> last sequence applied, after this batch
    sequences: dict[tuple[str, str], int] = field(default_factory=dict)
    positions: dict[tuple[str, int], int] = field(default_factory=dict)  # next offsets
    rejected: list[Rejected] = field(default_factory=list)
    duplicates: int = 0
    gaps: int = 0  # records whose sequence skipped some (applied; counted for the logs)


def project_market(
    records: Sequence[LogRecord],
    last_sequences: Mapping[tuple[str, str], int],
    *,
    ticks_topic: str,
    trades_topic: str,
) -> MarketProjection:
    """Fold `records` (log order per partition) past `last_sequences` ((topic, pair) -> seq)."""
    result = MarketProjection()
    for record in records:
        result.positions[(record.topic, record.partition)] = record.offset + 1
        try:
            decoded = decode_market(record.value)
        except UndecodableMarketRecord as exc:
            result.rejected.append(Rejected(record, str(exc)))
            continue
        payload = decoded.payload
        expected = MarketTick if record.topic == ticks_topic else MarketTrade
        if record.topic not in (ticks_topic, trades_topic) or not isinstance(payload, expected):
            result.rejected.append(
                Rejected(record, f"a {decoded.type} does not belong on {record.topic}")
            )
            continue
        key = (record.topic, payload.pair)
        last = result.sequences.get(key, last_sequences.get(key, 0))
        if decoded.sequence <= last:
            result.duplicates += 1
            continue
        if decoded.sequence > last + 1:
            result.gaps += 1
        result.sequences[key] = decoded.sequence
        if isinstance(payload, MarketTrade):
            result.trades.append(TradeRow(decoded.sequence, payload))
            for interval in INTERVALS:
                fold(result.candles, trade_candle_of(payload, decoded.sequence, interval))
        else:
            result.ticks[payload.pair] = TickRow(decoded.sequence, payload)
    return result


def trade_candle_of(trade: MarketTrade, sequence: int, interval: str) -> Candle:
    return trade_candle(
        trade.pair, interval, trade.at, sequence, trade.price, trade.amount_base, trade.amount_quote
    )


def venues_json(tick: MarketTick) -> list[dict[str, Any]]:
    """The tick's venues as stored in `latest_ticks.venues` (the wire's JSON)."""
    return [venue.model_dump(mode="json") for venue in tick.venues]


TRADE_COLUMNS: tuple[str, ...] = (
    "pair", "sequence", "base", "quote", "venue", "side", "amount_base", "amount_quote", "price",
    "slot", "at", "signature", "source",
)  # fmt: skip


def trade_values(row: TradeRow) -> tuple[Any, ...]:
    t = row.trade
    return (
        t.pair, row.sequence, t.base, t.quote, t.venue, t.side, t.amount_base, t.amount_quote,
        t.price, t.slot, t.at, t.signature, t.source,
    )  # fmt: skip


CANDLE_COLUMNS: tuple[str, ...] = (
    "pair", "interval", "bucket_start", "open", "high", "low", "close", "volume_base",
    "volume_quote", "trades", "first_sequence", "last_sequence",
)  # fmt: skip


def candle_values(c: Candle) -> tuple[Any, ...]:
    return (
        c.pair, c.interval, c.bucket, c.open, c.high, c.low, c.close, c.volume_base,
        c.volume_quote, c.trades, c.first_sequence, c.last_sequence,
    )  # fmt: skip
