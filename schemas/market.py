"""The market's records: what the market process publishes each slot, and every swap.

Two topics, both keyed by pair ("SOL-USDC") so one pair's records stay in order:
`market.ticks` (one `MarketTick` per pair per slot: each venue's mid and depth) and
`market.trades` (one `MarketTrade` per swap that landed, the engine's and the
background traders' alike). They are the market's source of truth, replayable like
the order log: candles and the latest tick are projections of them.

Each record is a versioned model in a small envelope of its own (`MarketRecord`):
market data has no per-order hash chain, but it has a per-pair sequence number so a
subscriber sees gaps and duplicates, and a version so old records stay readable.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from schemas.events import Amount, PositiveAmount, TokenSymbol, VenueName
from schemas.records import first_error, read_record

PairName = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,10}-[A-Z0-9]{2,10}$")]
"""A pair as people and URLs write it: base-quote, e.g. "SOL-USDC"."""


def pair_name(base: str, quote: str) -> str:
    return f"{base}-{quote}"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VenueTick(_Frozen):
    """One venue's pool for the pair in this slot."""

    venue: VenueName
    mid: PositiveAmount  # quote per base, whole tokens, before fees
    # What selling / buying moves the mid by 1 % takes, in base tokens: "liquidity near the mid".
    depth_bid: Amount
    depth_ask: Amount


class MarketTick(_Frozen):
    """A pair's state after a slot: each venue's mid and depth, and the reference price."""

    TYPE: ClassVar[str] = "MarketTick"
    VERSION: ClassVar[int] = 1

    pair: PairName
    base: TokenSymbol
    quote: TokenSymbol
    slot: int = Field(ge=0)
    at: AwareDatetime
    reference: PositiveAmount  # the random walk's price the background traders trade toward
    venues: tuple[VenueTick, ...]


class MarketTrade(_Frozen):
    """One swap that landed on a pair's pool, as the chain saw it."""

    TYPE: ClassVar[str] = "MarketTrade"
    VERSION: ClassVar[int] = 1

    pair: PairName
    base: TokenSymbol
    quote: TokenSymbol
    venue: VenueName
    side: Literal["buy", "sell"]  # of the base token, from the trader's side
    amount_base: PositiveAmount
    amount_quote: PositiveAmount
    price: PositiveAmount  # amount_quote / amount_base
    slot: int = Field(ge=0)
    at: AwareDatetime
    signature: str = Field(min_length=32, max_length=100)
    source: Literal["engine", "background"]


MARKET_TYPES: dict[str, type[MarketTick] | type[MarketTrade]] = {
    MarketTick.TYPE: MarketTick,
    MarketTrade.TYPE: MarketTrade,
}


class MarketRecord(_Frozen):
    """The envelope of a market record: the pair's sequence number, the type and version."""

    sequence: int = Field(ge=1)  # per pair and topic, from 1, no gaps
    type: str
    version: int = Field(ge=1)
    payload: MarketTick | MarketTrade


class UndecodableMarketRecord(ValueError):
    """Bytes on a market topic that are not a record this code can read."""


def encode_market(sequence: int, payload: MarketTick | MarketTrade) -> bytes:
    """Canonical JSON (sorted keys), as the order log writes its events."""
    record = MarketRecord(
        sequence=sequence, type=payload.TYPE, version=payload.VERSION, payload=payload
    )
    return orjson.dumps(record.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)


def decode_market(value: bytes | None) -> MarketRecord:
    """Parse and validate one market record; every failure is UndecodableMarketRecord."""
    raw, payload = read_record(value, MARKET_TYPES, UndecodableMarketRecord, "market")
    try:
        return MarketRecord(
            sequence=raw.get("sequence"), type=payload.TYPE, version=raw["version"], payload=payload
        )
    except ValidationError as exc:
        raise UndecodableMarketRecord(f"{payload.TYPE} invalid: {first_error(exc)}") from None
