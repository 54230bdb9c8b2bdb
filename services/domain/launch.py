"""A token launch as asked for (`oee market launch`, `POST /api/markets/launches`), and the
facts a sniper's rug checks read back from the chain.

Pure: the chain edge (`services/chain/launch.py`) turns a `LaunchSpec` into transactions and
reads a launched pool back into `LaunchFacts`; the checks here decide on those facts alone, so
the same decision is made in a test, in the router and in a replay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from services.domain.tokens import TOKENS, to_base_units

SYMBOL_PATTERN = re.compile(r"^[A-Z][A-Z0-9]{1,9}$")  # MEME, BONK2: what `tokenOut` may name
_DURATION = re.compile(r"^(\d+)(s|m|h)?$")
_SECONDS = {"s": 1, "m": 60, "h": 3600}
MAX_OPEN_IN_SECONDS = 7 * 24 * 3600  # a launch further out than a week is a typo, not a plan
DEFAULT_DECIMALS = 6
DEFAULT_SUPPLY = Decimal(1_000_000_000)  # whole tokens; all of it goes into the pool


class LaunchVenue(StrEnum):
    RAYDIUM = "raydium"
    METEORA = "meteora"


class InvalidLaunchError(ValueError):
    """A launch request the chain cannot carry out as asked (the API answers 400)."""


def check_symbol(symbol: str) -> str:
    """The symbol if it has a token symbol's format (2-10 capitals and digits, a letter first)."""
    if not SYMBOL_PATTERN.match(symbol):
        msg = f"{symbol!r} is not a token symbol (2-10 capital letters or digits, a letter first)"
        raise InvalidLaunchError(msg)
    return symbol


def parse_open_in(text: str) -> int:
    """Seconds from `10s`, `5m`, `1h` or a bare number of seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        msg = f"{text!r} is not a duration such as 10s, 5m or 1h"
        raise InvalidLaunchError(msg)
    seconds = int(match.group(1)) * _SECONDS[match.group(2) or "s"]
    if seconds > MAX_OPEN_IN_SECONDS:
        msg = f"open-in {text} is beyond {MAX_OPEN_IN_SECONDS // 86400} days"
        raise InvalidLaunchError(msg)
    return seconds


def burns_lp(venue: LaunchVenue, lp: str | None) -> bool:
    """The `--lp` choice as a flag: burn or keep as asked; unset, a CPMM launch burns (the safe
    default) and a DLMM one has nothing to burn."""
    if lp is None:
        return venue is LaunchVenue.RAYDIUM
    return lp == "burn"


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """What to launch: a new token, paired with `liquidity` of an existing quote token."""

    symbol: str
    quote: str
    liquidity: Decimal  # whole quote tokens deposited beside the new token's supply
    venue: LaunchVenue
    open_in_seconds: int
    renounce_mint_authority: bool = True
    renounce_freeze_authority: bool = True
    burn_lp: bool = True
    decimals: int = DEFAULT_DECIMALS
    supply: Decimal = DEFAULT_SUPPLY  # whole tokens minted, all deposited in the pool

    def __post_init__(self) -> None:
        check_symbol(self.symbol)
        if self.symbol in TOKENS:
            msg = f"{self.symbol} is already a token; a launch makes a new one"
            raise InvalidLaunchError(msg)
        if self.quote not in TOKENS:
            msg = f"unknown quote token {self.quote!r}; known: {', '.join(TOKENS)}"
            raise InvalidLaunchError(msg)
        if not self.liquidity.is_finite() or self.liquidity <= 0:
            msg = f"liquidity must be a positive amount of {self.quote}, not {self.liquidity}"
            raise InvalidLaunchError(msg)
        try:
            to_base_units(self.quote, self.liquidity)
        except ValueError as exc:
            raise InvalidLaunchError(str(exc)) from None
        if not self.supply.is_finite() or self.supply <= 0:
            msg = f"supply must be positive, not {self.supply}"
            raise InvalidLaunchError(msg)
        if self.supply_units >= 2**64:
            msg = f"supply {self.supply} with {self.decimals} decimals overflows a u64"
            raise InvalidLaunchError(msg)
        if not 0 <= self.decimals <= 9:
            msg = f"decimals must be 0-9, not {self.decimals}"
            raise InvalidLaunchError(msg)
        if not 0 <= self.open_in_seconds <= MAX_OPEN_IN_SECONDS:
            msg = f"open-in must be 0-{MAX_OPEN_IN_SECONDS} s, not {self.open_in_seconds}"
            raise InvalidLaunchError(msg)
        if self.venue is LaunchVenue.METEORA and self.burn_lp:
            # A DLMM pair has positions, not LP tokens: there is nothing to burn.
            msg = "a meteora launch has no LP tokens to burn: leave --lp out (or --lp keep)"
            raise InvalidLaunchError(msg)

    @property
    def quote_units(self) -> int:
        """The quote liquidity in base units."""
        return to_base_units(self.quote, self.liquidity)

    @property
    def supply_units(self) -> int:
        """The new token's supply in base units (truncated to a whole base unit)."""
        return int(self.supply.scaleb(self.decimals))


@dataclass(frozen=True, slots=True)
class LaunchFacts:
    """What the chain says about a launched token and its pool, as the rug checks read it."""

    mint_authority: str | None  # None: renounced
    freeze_authority: str | None
    lp_supply: int | None  # LP tokens in circulation; 0: all burned; None: no LP token (DLMM)
    quote_liquidity: Decimal  # whole quote tokens in the pool
    open_time: int  # unix seconds
