"""The start-up guard: no authentication means loopback only; JWT settings must be complete."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from services.api.auth.mode import is_loopback, startup_problem, warn_if_disabled
from services.common.settings import Settings


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("api.example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_disabled_auth_refuses_a_public_host_in_one_line() -> None:
    problem = startup_problem(Settings(auth="disabled", api_host="0.0.0.0"))
    assert problem is not None
    assert "0.0.0.0" in problem
    assert "\n" not in problem
    assert startup_problem(Settings(auth="disabled", api_host="127.0.0.1")) is None
    assert startup_problem(Settings(auth="enabled", api_host="0.0.0.0")) is None


def test_an_incomplete_jwt_configuration_is_refused_without_echoing_the_secret() -> None:
    secret = "k" * 40
    problem = startup_problem(Settings(jwt_key=SecretStr(secret)))
    assert problem is not None
    assert "OEE_JWT_ISSUER" in problem
    assert secret not in problem


def test_the_disabled_mode_warns_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        warn_if_disabled(Settings(auth="enabled"))
        assert not caplog.records
        warn_if_disabled(Settings(auth="disabled"))
    assert "AUTHENTICATION IS DISABLED" in caplog.text


def test_auth_setting_comes_from_oee_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OEE_AUTH", "disabled")
    monkeypatch.setenv("OEE_CORS_ORIGINS", '["https://app.example.com"]')
    settings = Settings()
    assert settings.auth == "disabled"
    assert settings.cors_origins == ("https://app.example.com",)
    monkeypatch.delenv("OEE_AUTH")
    assert Settings().auth == "enabled"
    assert Settings().cors_origins == ("https://app.example.com",)
