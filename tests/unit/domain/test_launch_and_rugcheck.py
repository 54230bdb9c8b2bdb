"""A launch request's validation, and each rug check passing and failing on its own."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from services.domain.launch import (
    InvalidLaunchError,
    LaunchFacts,
    LaunchSpec,
    LaunchVenue,
    burns_lp,
    parse_open_in,
)
from services.domain.rugcheck import RugChecks, run_rug_checks

CLEAN = LaunchFacts(
    mint_authority=None,
    freeze_authority=None,
    lp_supply=0,
    quote_liquidity=Decimal(200),
    open_time=1_750_000_010,
)


@pytest.mark.parametrize(("text", "seconds"), [("10s", 10), ("5m", 300), ("1h", 3600), ("7", 7)])
def test_open_in_durations(text: str, seconds: int) -> None:
    assert parse_open_in(text) == seconds


@pytest.mark.parametrize("text", ["", "10d", "-5s", "1.5s", "soon", "200h"])
def test_open_in_refuses_what_is_not_a_duration_or_too_far(text: str) -> None:
    with pytest.raises(InvalidLaunchError):
        parse_open_in(text)


@pytest.mark.parametrize(
    ("venue", "lp", "burn"),
    [
        (LaunchVenue.RAYDIUM, None, True),
        (LaunchVenue.RAYDIUM, "keep", False),
        (LaunchVenue.METEORA, None, False),
        (LaunchVenue.METEORA, "keep", False),
        (LaunchVenue.METEORA, "burn", True),  # asked for: the spec refuses it with a reason
    ],
)
def test_lp_unset_burns_on_raydium_and_means_nothing_on_meteora(
    venue: LaunchVenue, lp: str | None, burn: bool
) -> None:
    assert burns_lp(venue, lp) is burn


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"symbol": "meme"}, "not a token symbol"),
        ({"symbol": "SOL"}, "already a token"),
        ({"quote": "DOGE"}, "unknown quote token"),
        ({"liquidity": Decimal(0)}, "positive"),
        ({"liquidity": Decimal("0.0000000001")}, "base units"),
        ({"decimals": 12}, "decimals"),
        ({"venue": LaunchVenue.METEORA, "burn_lp": True}, "no LP tokens"),
    ],
)
def test_launch_spec_refuses_bad_fields(changes: dict[str, object], words: str) -> None:
    fields: dict[str, object] = {
        "symbol": "MEME",
        "quote": "SOL",
        "liquidity": Decimal(200),
        "venue": LaunchVenue.RAYDIUM,
        "open_in_seconds": 10,
    }
    with pytest.raises(InvalidLaunchError, match=words):
        LaunchSpec(**(fields | changes))  # type: ignore[arg-type]


def test_clean_launch_passes_every_check() -> None:
    every = RugChecks(True, True, True, Decimal(200))
    assert run_rug_checks(every, CLEAN) == ()


@pytest.mark.parametrize(
    ("facts", "code", "seen"),
    [
        (replace(CLEAN, mint_authority="Auth1"), "RUG_CHECK_MINT_AUTHORITY", "Auth1"),
        (replace(CLEAN, freeze_authority="Frz1"), "RUG_CHECK_FREEZE_AUTHORITY", "Frz1"),
        (replace(CLEAN, lp_supply=5), "RUG_CHECK_LP_NOT_BURNED", "5 LP base units held"),
        (replace(CLEAN, lp_supply=None), "RUG_CHECK_LP_NOT_BURNED", "no LP token"),
        (replace(CLEAN, quote_liquidity=Decimal(49)), "RUG_CHECK_LIQUIDITY", "49"),
    ],
)
def test_each_check_fails_alone_with_what_it_saw(facts: LaunchFacts, code: str, seen: str) -> None:
    failures = run_rug_checks(RugChecks(True, True, True, Decimal(50)), facts)
    assert [(f.code, f.seen) for f in failures] == [(code, seen)]


def test_a_check_not_asked_for_passes() -> None:
    rugged = LaunchFacts("Auth1", "Frz1", 10**9, Decimal(1), CLEAN.open_time)
    assert run_rug_checks(RugChecks(False, False, False, None), rugged) == ()
    codes = [f.code for f in run_rug_checks(RugChecks(), rugged)]
    assert codes == ["RUG_CHECK_MINT_AUTHORITY", "RUG_CHECK_FREEZE_AUTHORITY"]
