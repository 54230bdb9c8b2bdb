"""The tokens the engine trades, and the conversion between whole tokens and base units."""

from __future__ import annotations

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


# Tokens launched on the chain since genesis that this process has been told of (issue 18: the
# router, when a sniper fires on a launch the log names). Grows only; TOKENS stays the seeded
# market's, which genesis funds and the API quotes.
_LAUNCHED: dict[str, Token] = {}


def register_launched(token: Token) -> None:
    """Make a launched token known here; the same token again is a no-op."""
    known = TOKENS.get(token.symbol) or _LAUNCHED.get(token.symbol)
    if known is not None and known != token:
        msg = f"{token.symbol} is already {known.mint}, not {token.mint}"
        raise ValueError(msg)
    _LAUNCHED[token.symbol] = token


def launched_by_mint(mint: str) -> Token | None:
    """A launched token registered here, by its mint."""
    return next((t for t in _LAUNCHED.values() if t.mint == mint), None)


def get_token(symbol: str) -> Token:
    """Look a token up by symbol, failing with a typed error the API can map to a 400."""
    try:
        return TOKENS[symbol]
    except KeyError:
        launched = _LAUNCHED.get(symbol)
        if launched is None:
            raise UnknownTokenError(symbol) from None
        return launched


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
