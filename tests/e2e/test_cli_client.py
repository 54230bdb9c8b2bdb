"""`oee order|orders|status` as a user runs them, against the real processes."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import orjson
import pytest

from services.common.settings import Settings
from tests.e2e.system import System, settings_env


@pytest.fixture
async def system(start_system: Any, monkeypatch: pytest.MonkeyPatch) -> System:
    overrides: dict[str, Any] = {}
    if "auth" in Settings.model_fields:
        monkeypatch.setenv("OEE_AUTH", "disabled")
        overrides["auth"] = "disabled"
    started: System = await start_system(**overrides)
    return started


async def oee(system: System, *args: str) -> tuple[int, str, str]:
    """Run `oee ARGS` in a child process pointed at the system; (exit code, stdout, stderr)."""
    env = os.environ | settings_env(system.settings) | {"OEE_API_URL": system.base_url}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), 90)
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()


async def test_submit_watch_shows_every_status_the_quotes_the_route_and_the_fill(
    system: System,
) -> None:
    code, out, err = await oee(system, "order", "submit", "SOL", "USDC", "3", "--watch")
    assert code == 0, err
    for status in ("pending", "routing", "building", "submitted", "completed"):
        assert status in out
    assert "Raydium" in out
    assert "Meteora" in out
    assert "✓" in out  # the chosen venue's column
    assert "why:" in out
    assert "Filled on" in out


async def test_json_output_is_for_scripts(system: System) -> None:
    code, out, err = await oee(
        system, "order", "submit", "SOL", "USDC", "1", "--slippage", "0.05", "--watch", "--json"
    )
    assert code == 0, err
    lines = [orjson.loads(line) for line in out.splitlines()]
    order_id = lines[0]["orderId"]
    assert lines[1]["status"] == "connected"
    assert [m["status"] for m in lines[2:]] == [
        "pending",
        "routing",
        "building",
        "submitted",
        "completed",
    ]
    routed = lines[3]
    assert {q["venue"] for q in routed["quotes"]} == {"RAYDIUM", "METEORA"}

    async def stored() -> dict[str, Any]:
        for _ in range(100):
            code, out, _ = await oee(system, "order", "show", order_id, "--json")
            shown: dict[str, Any] = orjson.loads(out) if code == 0 else {}
            if shown and shown["order"]["status"] == "completed" and len(shown["events"]) == 5:
                return shown
            await asyncio.sleep(0.2)
        raise AssertionError(f"order {order_id} not stored as completed")

    shown = await stored()
    assert shown["order"]["id"] == order_id
    code, out, err = await oee(system, "order", "show", order_id)
    assert code == 0, err
    assert "Filled on" in out
    assert order_id in out

    code, out, err = await oee(system, "orders", "list", "--status", "completed", "--json")
    assert code == 0, err
    assert order_id in {o["id"] for o in orjson.loads(out)["orders"]}

    code, out, err = await oee(system, "status", "--json")
    assert code == 0, err
    report = orjson.loads(out)
    assert report["processes"][0] == {
        "name": "api",
        "state": "up",
        "detail": report["processes"][0]["detail"],
    }
    assert report["deadLetters"] == 0
    assert report["ordersByStatus"]["completed"] >= 1
    projector = system.settings.projector_group
    assert report["consumerLag"][projector] == 0, report


async def test_errors_are_one_line(system: System) -> None:
    code, _, err = await oee(system, "order", "submit", "SOL", "SOL", "1")
    assert code == 1
    assert err.strip().startswith("error: rejected (400): SAME_TOKEN_SWAP")
    assert len(err.strip().splitlines()) == 1
    code, _, err = await oee(system, "order", "show", "not-an-id")
    assert code == 1
    assert err.strip() == "error: rejected (404): ORDER_NOT_FOUND: Order not-an-id not found"
