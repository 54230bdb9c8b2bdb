"""The chain's own events: token launches, their pools opening, and token authorities.

Topic `chain.events` (one partition, so every reader sees launches in one order; key = the
token's symbol), kept forever and replayable like the order log: which tokens and pools exist
beyond the seeded market is a fold of it (`services/domain/launches.py`). Each record is a
versioned model in a small envelope (`ChainRecord`); a reader drops a record it has already
folded (same type and pool) and dead-letters one it cannot read.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.events import Amount, PositiveAmount, TokenSymbol, VenueName
from schemas.records import read_record

Address = Annotated[str, Field(pattern=r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")]
"""A Solana address in base58."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TokenAuthorities(_Frozen):
    """A token's mint and its authorities as the chain holds them (None: renounced)."""

    TYPE: ClassVar[str] = "TokenAuthorities"
    VERSION: ClassVar[int] = 1

    symbol: TokenSymbol
    mint: Address
    decimals: int = Field(ge=0, le=9)
    supply: int = Field(ge=0)  # base units
    mint_authority: Address | None
    freeze_authority: Address | None
    slot: int = Field(ge=0)
    at: AwareDatetime


class PoolCreated(_Frozen):
    """A launched token's pool exists on the chain; it trades from `open_time` on."""

    TYPE: ClassVar[str] = "PoolCreated"
    VERSION: ClassVar[int] = 1

    symbol: TokenSymbol  # the new token (the pair's base)
    quote: TokenSymbol
    venue: VenueName
    pool: Address
    mint: Address
    quote_mint: Address
    decimals: int = Field(ge=0, le=9)
    open_time: int = Field(ge=0)  # unix seconds on the chain's clock
    token_amount: PositiveAmount  # whole new tokens deposited
    quote_liquidity: Amount  # whole quote tokens in the pool at creation
    lp_mint: Address | None  # None on a DLMM pair (positions, no LP token)
    lp_supply: int | None = Field(ge=0)  # LP base units in circulation; 0: all burned
    slot: int = Field(ge=0)
    at: AwareDatetime
    signatures: tuple[str, ...]


class PoolOpened(_Frozen):
    """The chain's clock reached a launched pool's open time: swaps land from this slot on."""

    TYPE: ClassVar[str] = "PoolOpened"
    VERSION: ClassVar[int] = 1

    symbol: TokenSymbol
    quote: TokenSymbol
    venue: VenueName
    pool: Address
    open_time: int = Field(ge=0)
    slot: int = Field(ge=0)  # the first slot at or after the open time
    at: AwareDatetime


ChainEvent = TokenAuthorities | PoolCreated | PoolOpened
CHAIN_TYPES: dict[str, type[TokenAuthorities] | type[PoolCreated] | type[PoolOpened]] = {
    TokenAuthorities.TYPE: TokenAuthorities,
    PoolCreated.TYPE: PoolCreated,
    PoolOpened.TYPE: PoolOpened,
}


class ChainRecord(_Frozen):
    """The envelope of a chain event: its type and version."""

    type: Literal["TokenAuthorities", "PoolCreated", "PoolOpened"]
    version: int = Field(ge=1)
    payload: ChainEvent


class UndecodableChainRecord(ValueError):
    """Bytes on `chain.events` that are not a record this code can read."""


def encode_chain(payload: ChainEvent) -> bytes:
    """Canonical JSON (sorted keys), as the other topics write theirs."""
    record = ChainRecord(type=payload.TYPE, version=payload.VERSION, payload=payload)
    return orjson.dumps(record.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)


def decode_chain(value: bytes | None) -> ChainEvent:
    """Parse and validate one chain record; every failure is UndecodableChainRecord."""
    _, payload = read_record(value, CHAIN_TYPES, UndecodableChainRecord, "chain")
    return payload
