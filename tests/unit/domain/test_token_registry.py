"""The token registry: seeded tokens always, launched ones once the chain's events say their
pool exists; it only grows, and a symbol keeps its first mint."""

from __future__ import annotations

from decimal import Decimal

import pytest

from schemas.chain import ChainEvent
from services.api.markets import PAIRS, launch_json, market_pairs
from services.domain.launches import (
    conflicting_launches,
    fold_all,
    learn_launched,
    tradeable_tokens,
)
from services.domain.tokens import TOKENS, Token, TokenRegistry, UnknownTokenError
from services.market.walk import LAUNCH_VOLATILITY_MULTIPLE, Walk
from tests.unit.schemas.test_chain_records import AUTHORITIES, CREATED, MINT, OPENED, POOL

MEME = Token("MEME", 6, MINT)


def test_a_fresh_registry_knows_the_seeded_tokens_only() -> None:
    tokens = TokenRegistry(TOKENS)
    assert tokens.get("SOL") == TOKENS["SOL"]
    with pytest.raises(UnknownTokenError):
        tokens.get("MEME")
    assert tokens.launched_by_mint(MINT) is None
    assert dict(tokens.launched) == {}


def test_learning_a_token_makes_it_known_by_symbol_and_mint_once() -> None:
    tokens = TokenRegistry(TOKENS)
    assert tokens.learn(MEME) is True
    assert tokens.learn(MEME) is False  # the same token again changes nothing
    assert tokens.get("MEME") == MEME
    assert tokens.launched_by_mint(MINT) == MEME
    assert dict(tokens.launched) == {"MEME": MEME}


@pytest.mark.parametrize("token", [Token("MEME", 6, "So11111111111111111111111111111111111111112"),
                                   Token("SOL", 9, MINT)])  # fmt: skip
def test_a_known_symbol_keeps_its_mint(token: Token) -> None:
    tokens = TokenRegistry(TOKENS)
    tokens.learn(MEME)
    with pytest.raises(ValueError, match="already"):
        tokens.learn(token)
    assert tokens.get(token.symbol) in (MEME, TOKENS["SOL"])


def test_a_token_is_tradeable_once_its_pool_exists_not_on_its_authorities_alone() -> None:
    tokens = TokenRegistry(TOKENS)
    only_mint = fold_all([AUTHORITIES])
    assert tradeable_tokens(only_mint) == []
    assert learn_launched(tokens, only_mint) == []
    with pytest.raises(UnknownTokenError):
        tokens.get("MEME")
    created = fold_all([AUTHORITIES, CREATED])
    assert [t.symbol for t in learn_launched(tokens, created)] == ["MEME"]
    assert tokens.get("MEME") == MEME
    # Folding further (the open) or again teaches nothing new.
    events: list[ChainEvent] = [AUTHORITIES, CREATED, OPENED]
    assert learn_launched(tokens, fold_all(events)) == []


def test_a_launch_names_its_target_once_the_pool_exists() -> None:
    assert fold_all([AUTHORITIES])["MEME"].target() is None
    target = fold_all([AUTHORITIES, CREATED])["MEME"].target()
    assert target is not None
    assert (target.symbol, target.mint, target.pool, target.venue) == (
        "MEME", MINT, POOL, "RAYDIUM",
    )  # fmt: skip
    assert (target.quote, target.decimals, target.open_time) == ("SOL", 6, CREATED.open_time)


def test_the_market_list_has_a_launched_pair_once_created_with_when_it_opens() -> None:
    assert market_pairs(fold_all([AUTHORITIES])) == PAIRS
    created = fold_all([AUTHORITIES, CREATED])
    pairs = market_pairs(created)
    assert list(pairs)[: len(PAIRS)] == list(PAIRS)
    assert pairs["MEME-SOL"] == ("MEME", "SOL")
    launch = launch_json(created["MEME"])
    assert (launch["pool"], launch["open"], launch["openedSlot"]) == (POOL, False, None)
    assert launch["opensAt"] == "2025-06-15T15:07:10Z"
    opened = launch_json(fold_all([AUTHORITIES, CREATED, OPENED])["MEME"])
    assert (opened["open"], opened["openedSlot"]) == (True, 75)


def test_a_launched_pair_walks_faster_on_the_same_seeded_path() -> None:
    walk = Walk(3, 0.0001)
    fast = walk.scaled(LAUNCH_VOLATILITY_MULTIPLE)
    assert fast.sigma == pytest.approx(walk.sigma * LAUNCH_VOLATILITY_MULTIPLE)
    start = Decimal(100)
    slow_moves = [abs(walk.step(start, "MEME-SOL", s) / start - 1) for s in range(200)]
    fast_moves = [abs(fast.step(start, "MEME-SOL", s) / start - 1) for s in range(200)]
    assert sum(fast_moves) > 20 * sum(slow_moves)
    assert Walk(3, 0.0).scaled(LAUNCH_VOLATILITY_MULTIPLE).step(start, "MEME-SOL", 1) == start


def test_a_launch_under_a_symbol_another_mint_holds_is_left_out_not_raised() -> None:
    """Anyone can launch any symbol: a second MEME must not stop the process folding it."""
    tokens = TokenRegistry(TOKENS)
    other = Token("MEME", 6, "So11111111111111111111111111111111111111112")
    tokens.learn(other)
    created = fold_all([AUTHORITIES, CREATED])
    assert learn_launched(tokens, created) == []
    assert [t.symbol for t in conflicting_launches(tokens, created)] == ["MEME"]
    assert tokens.get("MEME") == other
