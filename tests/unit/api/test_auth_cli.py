"""`oee keys create` refuses a bad rate limit before it touches the database."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from services.api.auth.cli import keys_app


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        (["--rate-limit", "0"], "rate limit must be a positive"),
        (["--rate-limit", "-5"], "rate limit must be a positive"),
        (["--rate-limit", "500", "--burst", "0"], "burst must be at least 1"),
    ],
)
def test_a_bad_rate_limit_is_refused_with_its_reason(options: list[str], complaint: str) -> None:
    result = CliRunner().invoke(keys_app, ["create", "--name", "bot", *options])
    assert result.exit_code == 2
    assert complaint in " ".join(result.output.split())
