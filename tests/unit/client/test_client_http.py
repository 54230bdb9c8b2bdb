"""The API client and the commands: one line per failure, the right exit code, --json as given."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from services.cli import app
from services.client import cli as client_cli
from services.client.http import ApiClient, failure, websocket_url
from services.client.watch import close_problem
from services.common.logstats import lag_of


def test_error_answers_become_one_line() -> None:
    refused = failure(401, {"error": "UNAUTHORIZED", "message": "no key"}, "http://x/api/orders")
    assert str(refused) == (
        "the API refused the credentials (401: UNAUTHORIZED: no key);"
        " pass --api-key or set OEE_API_KEY"
    )
    assert refused.exit_code == 1
    assert "scope" in str(failure(403, None, "u"))
    broken = failure(503, {"error": "LOG_UNAVAILABLE"}, "http://x/api/orders/execute")
    assert str(broken).startswith(
        "the API failed at http://x/api/orders/execute (503: LOG_UNAVAILABLE)"
    )
    assert broken.exit_code == 2
    rejected = failure(
        400, {"error": "INVALID_AMOUNT", "message": "amount must be greater than 0"}, "u"
    )
    assert str(rejected) == "rejected (400): INVALID_AMOUNT: amount must be greater than 0"
    assert "\n" not in str(rejected)


def test_websocket_urls_follow_the_api_url() -> None:
    assert websocket_url("http://127.0.0.1:8000", "/ws/1") == "ws://127.0.0.1:8000/ws/1"
    assert websocket_url("https://api.example/oee/", "/ws/1") == "wss://api.example/oee/ws/1"


def test_close_codes_read_as_reasons() -> None:
    assert close_problem(1000) is None
    assert close_problem(None) is None
    assert "refused the credentials" in str(close_problem(4401, "UNAUTHORIZED"))
    assert close_problem(4999) == "the socket closed (close code 4999)"


def test_lag_counts_from_zero_where_a_group_has_no_position() -> None:
    assert lag_of({0: 10, 1: 5, 2: 0}, {0: 7, 1: 5}) == {0: 3, 1: 0, 2: 0}
    assert lag_of({0: 3}, {0: 9}) == {0: 0}  # a stale end offset never gives a negative lag


def _serve(monkeypatch: pytest.MonkeyPatch, handler: Any) -> list[httpx.Request]:
    """Route the commands' HTTP to `handler`; returns the requests it saw."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        response: httpx.Response = handler(request)
        return response

    class Client(ApiClient):
        def __init__(self, base_url: str, api_key: str | None = None, **_: Any) -> None:
            super().__init__(base_url, api_key, transport=httpx.MockTransport(record))

    monkeypatch.setattr(client_cli, "ApiClient", Client)
    return seen


def test_submit_sends_the_order_with_the_key_and_prints_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = _serve(
        monkeypatch, lambda r: httpx.Response(202, json={"orderId": "abc", "status": "pending"})
    )
    result = CliRunner().invoke(
        app,
        [
            "order",
            "submit",
            "sol",
            "usdc",
            "10.5",
            "--slippage",
            "0.02",
            "--json",
            "--api-key",
            "k1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"orderId": "abc", "status": "pending"}
    assert seen[0].headers["authorization"] == "Bearer k1"
    assert json.loads(seen[0].content) == {
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amount": "10.5",
        "slippage": "0.02",
    }


def test_the_key_and_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _serve(
        monkeypatch,
        lambda r: httpx.Response(200, json={"orders": [], "total": 0, "nextCursor": None}),
    )
    monkeypatch.setenv("OEE_API_KEY", "from-env")
    monkeypatch.setenv("OEE_API_URL", "http://127.0.0.1:8123")
    result = CliRunner().invoke(
        app, ["orders", "list", "--status", "failed", "--token-in", "sol", "--limit", "5"]
    )
    assert result.exit_code == 0, result.output
    assert seen[0].headers["authorization"] == "Bearer from-env"
    assert seen[0].url.port == 8123
    assert dict(seen[0].url.params) == {"status": "failed", "tokenIn": "SOL", "limit": "5"}
    assert "0 of 0 order(s)" in result.stdout


def test_a_wrong_key_is_one_line_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(
        monkeypatch,
        lambda r: httpx.Response(401, json={"error": "UNAUTHORIZED", "message": "Unknown API key"}),
    )
    result = CliRunner().invoke(app, ["order", "show", "abc", "--api-key", "wrong"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: the API refused the credentials (401: UNAUTHORIZED: Unknown API key);"
        " pass --api-key or set OEE_API_KEY"
    ]
    assert result.stdout == ""


def test_an_api_that_is_down_is_one_line_and_exit_2() -> None:
    result = CliRunner().invoke(app, ["orders", "list", "--api-url", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: cannot reach the API at http://127.0.0.1:9 (connection refused);"
        " is it running? (`oee up`, or set --api-url)"
    ]


def test_conditional_commands_send_the_issue_17_bodies(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _serve(
        monkeypatch,
        lambda r: httpx.Response(
            200 if r.method in ("DELETE", "PATCH") else 202,
            json={"orderId": "abc", "status": "open", "message": "resting"},
        ),
    )
    runner = CliRunner()
    commands = [
        ["order", "limit", "SOL", "USDC", "10", "--price", "160", "--expires", "1d"],
        ["order", "stop", "SOL", "USDC", "10", "--trigger", "120"],
        ["order", "oco", "SOL", "USDC", "10", "--take-profit", "180", "--stop-loss", "120"],
        ["order", "cancel", "abc"],
        ["order", "amend", "abc", "--price", "161"],
    ]
    for command in commands:
        result = runner.invoke(app, [*command, "--json"])
        assert result.exit_code == 0, (command, result.output)
    bodies: list[Any] = [json.loads(r.content) if r.content else None for r in seen]
    assert bodies[0]["orderType"] == "limit"
    assert bodies[0]["limitPrice"] == "160"
    assert bodies[0]["expiresAt"].endswith("+00:00")
    assert bodies[1] == {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "10",
                         "orderType": "stop", "triggerPrice": "120"}  # fmt: skip
    assert (bodies[2]["takeProfitPrice"], bodies[2]["stopLossPrice"]) == ("180", "120")
    assert (seen[3].method, seen[3].url.path, bodies[3]) == ("DELETE", "/api/orders/abc", None)
    assert (seen[4].method, bodies[4]) == ("PATCH", {"limitPrice": "161"})


def test_expires_takes_durations_and_times() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert client_cli.expires_at("1d", now) == "2026-03-02T00:00:00+00:00"
    assert client_cli.expires_at("30m", now) == "2026-03-01T00:30:00+00:00"
    assert client_cli.expires_at("2026-04-01T00:00:00Z", now) == "2026-04-01T00:00:00Z"
    assert client_cli.expires_at(None, now) is None


SNIPER = "4f6b2a40-0000-4000-8000-000000000018"
SNIPER_SUBMITTED = {
    "type": "OrderSubmitted",
    "sequence": 0,
    "status": "open",
    "occurredAt": "2025-01-01T00:00:00Z",
    "payload": {
        "tokenIn": "SOL",
        "tokenOut": "MEME",
        "amount": "2",
        "orderType": "sniper",
        "maxPrice": "0.0004",
        "checks": {"mintRenounced": True, "freezeRenounced": True, "lpBurned": False},
    },
}


def _sniper_api(request: httpx.Request) -> httpx.Response:
    """A read model before migration 0011: the sniper's row has no maxPrice or checks."""
    row = {"id": SNIPER, "orderType": "sniper", "tokenIn": "SOL", "tokenOut": "MEME",
           "amount": "2", "slippage": "0.15", "status": "open", "attempts": 0,
           "createdAt": "2025-01-01T00:00:00Z"}  # fmt: skip
    if request.url.path == "/api/orders":
        return httpx.Response(200, json={"orders": [row], "total": 1, "nextCursor": None})
    if request.url.path == f"/api/orders/{SNIPER}":
        return httpx.Response(200, json=row)
    if request.url.path == f"/api/orders/{SNIPER}/events":
        return httpx.Response(200, json={"orderId": SNIPER, "events": [SNIPER_SUBMITTED]})
    return httpx.Response(404, json={"error": "NOT_FOUND"})


def test_open_snipers_are_listed_with_their_token_and_max_price(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = _serve(monkeypatch, _sniper_api)
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["orders", "list", "--status", "open"])
    assert result.exit_code == 0, result.output
    assert "sniper MEME, max price 0.0004 SOL/MEME" in result.stdout
    assert [r.url.path for r in seen] == ["/api/orders", f"/api/orders/{SNIPER}/events"]


def test_order_show_gives_a_snipers_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(monkeypatch, _sniper_api)
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["order", "show", SNIPER])
    assert result.exit_code == 0, result.output
    assert "mint renounced, freeze renounced" in result.stdout
    assert "max price 0.0004" in result.stdout
