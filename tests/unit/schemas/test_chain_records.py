"""Chain events round-trip through their envelope; unreadable records fail with one error type;
the launches fold is idempotent and order-aware (a later authority change wins)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from schemas.chain import (
    ChainEvent,
    PoolCreated,
    PoolOpened,
    TokenAuthorities,
    UndecodableChainRecord,
    decode_chain,
    encode_chain,
)
from services.domain.launches import fold_all

AT = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
MINT = "5p6JsgtdboVhFjUBXjQszJ6dwk8XHwZkYVVJYKj9c5k4"
POOL = "6S6AbdKrP94iu3M51eebDhTKSiVXMRxjZ7ftxojEMgm8"
LAUNCHER = "EyKdPrXrducgtvRMMNYb6r1tiL9j8563kKgstU5pg7nn"
SOL_MINT = "So11111111111111111111111111111111111111112"

AUTHORITIES = TokenAuthorities(
    symbol="MEME", mint=MINT, decimals=6, supply=10**15, mint_authority=LAUNCHER,
    freeze_authority=None, slot=10, at=AT,
)  # fmt: skip
CREATED = PoolCreated(
    symbol="MEME", quote="SOL", venue="RAYDIUM", pool=POOL, mint=MINT, quote_mint=SOL_MINT,
    decimals=6, open_time=1_750_000_030, token_amount=Decimal(10**9),
    quote_liquidity=Decimal(200), lp_mint=None, lp_supply=0, slot=10, at=AT, signatures=("s",),
)  # fmt: skip
OPENED = PoolOpened(
    symbol="MEME", quote="SOL", venue="RAYDIUM", pool=POOL, open_time=1_750_000_030, slot=75,
    at=AT,
)  # fmt: skip


@pytest.mark.parametrize("event", [AUTHORITIES, CREATED, OPENED])
def test_round_trip(event: TokenAuthorities | PoolCreated | PoolOpened) -> None:
    assert decode_chain(encode_chain(event)) == event


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (b"", "empty"),
        (b"{", "not JSON"),
        (b"[]", "not a JSON object"),
        (orjson.dumps({"type": "PoolClosed", "version": 1, "payload": {}}), "unknown"),
        (orjson.dumps({"type": "PoolOpened", "version": 9, "payload": {}}), "version"),
        (orjson.dumps({"type": "PoolOpened", "version": 1, "payload": {"pool": "x"}}), "invalid"),
    ],
)
def test_unreadable_records_fail_with_one_error(value: bytes, words: str) -> None:
    with pytest.raises(UndecodableChainRecord, match=words):
        decode_chain(value)


def test_fold_is_idempotent_and_tracks_the_launch() -> None:
    events: list[ChainEvent] = [AUTHORITIES, CREATED, OPENED]
    once = fold_all(events)
    assert fold_all(events * 2) == once
    token = once["MEME"]
    assert (token.pool, token.opened_slot, token.mint_authority) == (POOL, 75, LAUNCHER)
    renounced = AUTHORITIES.model_copy(update={"mint_authority": None, "slot": 20})
    assert fold_all([*events, renounced])["MEME"].mint_authority is None
    assert fold_all([renounced, *events])["MEME"].mint_authority is None  # the older one loses


def test_opened_before_created_is_ignored() -> None:
    assert "MEME" not in fold_all([OPENED])
    assert fold_all([OPENED, AUTHORITIES, CREATED])["MEME"].opened_slot is None
