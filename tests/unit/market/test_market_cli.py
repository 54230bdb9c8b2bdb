"""`oee market PAIR` shows a pair; `oee market move` stays a command (the process is tested
elsewhere): the pair is read as the show command's argument, never as an unknown command."""

from __future__ import annotations

from typer.testing import CliRunner

from services.cli import app

UNREACHABLE = "http://127.0.0.1:1"


def test_a_pair_is_shown_through_the_api() -> None:
    result = CliRunner().invoke(app, ["market", "SOL-USDC", "--api-url", UNREACHABLE])
    assert result.exit_code == 2, result.output
    assert "cannot reach the API" in result.output


def test_move_is_still_a_command_and_checks_its_price() -> None:
    result = CliRunner().invoke(app, ["market", "move", "SOL-USDC", "--to", "nope"])
    assert result.exit_code == 1, result.output
    assert "not a price" in result.output
