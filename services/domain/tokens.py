"""The tokens the engine trades, and the conversion between whole tokens and base units."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, Rounded
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Token:
    """An SPL token: its symbol, how many decimals its base unit has, and its mint."""

    symbol: str
    decimals: int
    mint: str


# Shifting the decimal point must never round: a context that traps instead.
_EXACT = Context(prec=100, traps=[Inexact, Rounded])


class UnknownTokenError(KeyError):
    """The symbol is not one of the tokens the engine trades."""


TOKENS = MappingProxyType(
    {
        t.symbol: t
        for t in (
            Token("SOL", 9, "So11111111111111111111111111111111111111112"),
            Token("USDC", 6, "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"),
            Token("USDT", 6, "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"),
            Token("JUP", 6, "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"),
            Token("RAY", 6, "4k3Dyjzvzp8eMZWUXbBCjEvwSkkk59S5iCNLY3QrkX6R"),
            Token("BONK", 5, "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"),
        )
    }
)


class TokenRegistry:
    """The tokens one process knows: the seeded market's, and those launched on the chain since
    genesis that the process has learnt of.

    Launched tokens are learnt from `chain.events` (`services/common/chain_events.py` folds it
    from its start at a process's start, then follows it) and, in the router, from the launch a
    sniper's trigger names. It only grows, and a symbol keeps its first mint: a launch cannot
    take over a seeded symbol, nor a second launch an earlier one's.

    One registry per process, because the venue math and the pricing core look decimals up by
    symbol deep inside pure functions; what changes it is the two feeds above, nothing else.
    """

    def __init__(self, seeded: Mapping[str, Token]) -> None:
        self._seeded = seeded
        self._launched: dict[str, Token] = {}
        self._by_mint: dict[str, Token] = {}

    def get(self, symbol: str) -> Token:
        """A token by symbol, failing with a typed error the API can map to a 400."""
        token = self._seeded.get(symbol) or self._launched.get(symbol)
        if token is None:
            raise UnknownTokenError(symbol)
        return token

    def conflicts(self, token: Token) -> bool:
        """Whether another token already holds this one's symbol."""
        known = self._seeded.get(token.symbol) or self._launched.get(token.symbol)
        return known is not None and known != token

    def learn(self, token: Token) -> bool:
        """Know a launched token from now on; True when it is new, False when already known.

        A different token under a known symbol is refused (ValueError)."""
        known = self._seeded.get(token.symbol) or self._launched.get(token.symbol)
        if known is not None:
            if known != token:
                msg = f"{token.symbol} is already {known.mint}, not {token.mint}"
                raise ValueError(msg)
            return False
        self._launched[token.symbol] = token
        self._by_mint[token.mint] = token
        return True

    def launched_by_mint(self, mint: str) -> Token | None:
        """A launched token learnt here, by its mint."""
        return self._by_mint.get(mint)

    @property
    def launched(self) -> Mapping[str, Token]:
        """The launched tokens learnt so far, by symbol (a read-only view)."""
        return MappingProxyType(self._launched)


REGISTRY = TokenRegistry(TOKENS)
"""This process's registry (see `TokenRegistry` for who feeds it)."""


def register_launched(token: Token) -> None:
    """Make a launched token known in this process; the same token again is a no-op."""
    REGISTRY.learn(token)


def launched_by_mint(mint: str) -> Token | None:
    """A launched token known in this process, by its mint."""
    return REGISTRY.launched_by_mint(mint)


def get_token(symbol: str) -> Token:
    """Look a token up by symbol, failing with a typed error the API can map to a 400."""
    return REGISTRY.get(symbol)


def to_base_units(symbol: str, amount: Decimal) -> int:
    """Convert whole tokens to base units, refusing amounts finer than one base unit."""
    decimals = get_token(symbol).decimals
    if not amount.is_finite():
        msg = f"{amount} {symbol} is not a finite amount"
        raise ValueError(msg)
    scaled = amount.scaleb(decimals, context=_EXACT)
    if scaled != scaled.to_integral_value():
        msg = f"{amount} {symbol} is not a whole number of base units"
        raise ValueError(msg)
    return int(scaled)


def from_base_units(symbol: str, units: int) -> Decimal:
    """Convert base units to whole tokens, exactly."""
    return Decimal(units).scaleb(-get_token(symbol).decimals, context=_EXACT)
