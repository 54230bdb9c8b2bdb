"""`oee order snipe`: the sniper body it sends."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from services.cli import app
from services.client import cli as client_cli
from services.client.http import ApiClient


def serve(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"orderId": "abc", "status": "open", "message": "armed"})

    class Client(ApiClient):
        def __init__(self, base_url: str, api_key: str | None = None, **_: Any) -> None:
            super().__init__(base_url, api_key, transport=httpx.MockTransport(record))

    monkeypatch.setattr(client_cli, "ApiClient", Client)
    return seen


def test_snipe_sends_a_sniper_with_its_checks_and_auto_sell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = serve(monkeypatch)
    args = ["order", "snipe", "meme", "--in", "sol", "--amount", "2", "--max-price", "0.0001",
            "--lp-burned", "--min-liquidity", "50", "--take-profit-pct", "100",
            "--stop-loss-pct", "30", "--only-at-launch"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "sniper order abc open" in result.stdout
    assert json.loads(seen[0].content) == {
        "tokenIn": "SOL",
        "tokenOut": "MEME",
        "amount": "2",
        "orderType": "sniper",
        "maxPrice": "0.0001",
        "checks": {
            "mintRenounced": True,
            "freezeRenounced": True,
            "lpBurned": True,
            "minLiquidity": "50",
        },
        "onlyAtLaunch": True,
        "autoSell": {"takeProfitPct": "100", "stopLossPct": "30"},
    }


def test_snipe_refuses_half_an_auto_sell(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = serve(monkeypatch)
    result = CliRunner().invoke(
        app,
        ["order", "snipe", "MEME", "--amount", "2", "--max-price", "1", "--take-profit-pct", "50"],
    )
    assert result.exit_code != 0
    assert seen == []
