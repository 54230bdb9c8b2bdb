"""A sniper's rug checks: one pure function per check over what the chain says of a launch.

What traders learned the hard way, as open-source sniper bots check it: a mint whose authority
is kept can be inflated after you buy; a kept freeze authority can freeze your account; LP
tokens the launcher keeps can pull the liquidity; and a thin pool moves against you. Each check
that fails gives its own code and the value it saw, so a failed order says exactly why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from services.domain.launch import LaunchFacts


@dataclass(frozen=True, slots=True)
class RugChecks:
    """Which checks an order asks for; a check not asked for always passes."""

    mint_renounced: bool = True
    freeze_renounced: bool = True
    lp_burned: bool = False
    min_liquidity: Decimal | None = None  # whole quote tokens in the pool


@dataclass(frozen=True, slots=True)
class CheckFailure:
    """One failed check: its code, what it wanted, and what the chain showed."""

    code: str
    expected: str
    seen: str


def check_mint_authority(checks: RugChecks, facts: LaunchFacts) -> CheckFailure | None:
    if checks.mint_renounced and facts.mint_authority is not None:
        return CheckFailure("RUG_CHECK_MINT_AUTHORITY", "renounced", facts.mint_authority)
    return None


def check_freeze_authority(checks: RugChecks, facts: LaunchFacts) -> CheckFailure | None:
    if checks.freeze_renounced and facts.freeze_authority is not None:
        return CheckFailure("RUG_CHECK_FREEZE_AUTHORITY", "renounced", facts.freeze_authority)
    return None


def check_lp_burned(checks: RugChecks, facts: LaunchFacts) -> CheckFailure | None:
    if not checks.lp_burned or facts.lp_supply == 0:
        return None
    seen = "no LP token" if facts.lp_supply is None else f"{facts.lp_supply} LP base units held"
    return CheckFailure("RUG_CHECK_LP_NOT_BURNED", "all LP tokens burned", seen)


def check_liquidity(checks: RugChecks, facts: LaunchFacts) -> CheckFailure | None:
    wanted = checks.min_liquidity
    if wanted is None or facts.quote_liquidity >= wanted:
        return None
    return CheckFailure("RUG_CHECK_LIQUIDITY", f">= {wanted}", str(facts.quote_liquidity))


CHECKS: tuple[Callable[[RugChecks, LaunchFacts], CheckFailure | None], ...] = (
    check_mint_authority,
    check_freeze_authority,
    check_lp_burned,
    check_liquidity,
)


def run_rug_checks(checks: RugChecks, facts: LaunchFacts) -> tuple[CheckFailure, ...]:
    """Every failed check, in a fixed order (the first one is the order's failure code)."""
    return tuple(f for check in CHECKS if (f := check(checks, facts)) is not None)
