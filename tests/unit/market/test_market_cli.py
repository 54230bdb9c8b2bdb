"""`oee market PAIR` shows a pair; `oee market move` stays a command (the process is tested
elsewhere): the pair is read as the show command's argument, never as an unknown command."""

from __future__ import annotations

from decimal import Decimal

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.market.commands import parse_price

UNREACHABLE = "http://127.0.0.1:1"


def test_a_pair_is_shown_through_the_api() -> None:
    result = CliRunner().invoke(app, ["market", "SOL-USDC", "--api-url", UNREACHABLE])
    assert result.exit_code == 2, result.output
    assert "cannot reach the API" in result.output


def test_move_is_still_a_command_and_checks_its_price() -> None:
    result = CliRunner().invoke(app, ["market", "move", "SOL-USDC", "--to", "nope"])
    assert result.exit_code == 1, result.output
    assert "not a price" in result.output


@pytest.mark.parametrize("text", ["160", " 0.00002 ", "1e3"])
def test_a_price_for_a_move_is_a_positive_decimal(text: str) -> None:
    assert parse_price(text) == Decimal(text.strip())


@pytest.mark.parametrize(
    ("text", "why"),
    [("nope", "not a price"), ("", "not a price"), ("0", "positive"), ("-1", "positive"),
     ("NaN", "positive"), ("Infinity", "positive")],
)  # fmt: skip
def test_a_bad_price_for_a_move_says_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_price(text)
