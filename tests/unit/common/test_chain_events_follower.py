"""What a chain-events follower does with the fold, without a broker: each tradeable launch is
learnt and announced once per follower, a failed announcement is retried, a symbol already
another mint's is ignored."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.common.chain_events import ChainEventsFollower
from services.domain.launches import LaunchedToken, fold_all
from services.domain.tokens import TOKENS, Token, TokenRegistry
from tests.unit.schemas.test_chain_records import AUTHORITIES, CREATED, MINT, POOL

OTHER_MINT = "So11111111111111111111111111111111111111112"


def follower(tokens: TokenRegistry, told: list[str], *, failures: int = 0) -> ChainEventsFollower:
    remaining = [failures]

    async def on_launch(token: LaunchedToken) -> None:
        if remaining[0] > 0:
            remaining[0] -= 1
            raise OSError("the chain's RPC is down")
        told.append(token.pair)

    return ChainEventsFollower(
        "127.0.0.1:1", "chain.events", client_id="test", tokens=tokens, on_launch=on_launch
    )


async def test_a_launch_is_announced_once_its_pool_exists_and_only_once() -> None:
    tokens, told = TokenRegistry(TOKENS), list[str]()
    chain = follower(tokens, told)
    chain.launches = fold_all([AUTHORITIES])
    await chain._learn()
    assert told == []  # authorities alone: no market yet
    chain.launches = fold_all([AUTHORITIES, CREATED])
    await chain._learn()
    await chain._learn()
    assert told == ["MEME-SOL"]
    assert tokens.get("MEME") == Token("MEME", 6, MINT)


async def test_two_followers_sharing_a_registry_each_announce() -> None:
    tokens, first, second = TokenRegistry(TOKENS), list[str](), list[str]()
    for told in (first, second):
        chain = follower(tokens, told)
        chain.launches = fold_all([AUTHORITIES, CREATED])
        await chain._learn()
    assert first == second == ["MEME-SOL"]


async def test_a_failed_announcement_is_retried_at_the_next_read() -> None:
    tokens, told = TokenRegistry(TOKENS), list[str]()
    chain = follower(tokens, told, failures=1)
    chain.launches = fold_all([AUTHORITIES, CREATED])
    await chain._learn()
    assert told == []
    await chain._learn()
    assert told == ["MEME-SOL"]


@pytest.mark.parametrize("symbol", ["SOL", "MEME"])
async def test_a_symbol_taken_by_another_mint_is_ignored(symbol: str) -> None:
    tokens, told = TokenRegistry(TOKENS), list[str]()
    tokens.learn(Token("MEME", 6, OTHER_MINT[:-1] + "3"))
    chain = follower(tokens, told)
    launches = fold_all([AUTHORITIES, CREATED])
    chain.launches = {symbol: replace(launches["MEME"], symbol=symbol, pool=POOL)}
    await chain._learn()
    await chain._learn()
    assert told == []
    assert tokens.get(symbol).mint != MINT
