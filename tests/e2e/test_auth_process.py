"""Keys made with `oee keys`, used against a real `oee api` process; the disabled mode's guard."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import orjson
import websockets

from tests.e2e.system import System, eventually, order_payload, settings_env


def oee(
    system: System, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = os.environ | settings_env(system.settings) | (extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_key_from_the_cli_trades_and_once_revoked_is_refused(start_system: Any) -> None:
    system: System = await start_system(auth="enabled")
    created = oee(system, "keys", "create", "--name", "e2e-client")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("oee_")
    assert key not in created.stderr
    [key_id] = [word for word in created.stderr.split() if word.count("-") == 4]

    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=system.base_url) as client:
        assert (await client.post("/api/orders/execute", json=order_payload())).status_code == 401
        accepted = await client.post("/api/orders/execute", json=order_payload(), headers=headers)
        assert accepted.status_code == 202, accepted.text
        order_id = accepted.json()["orderId"]

        url = f"ws://127.0.0.1:{system.settings.api_port}/ws/{order_id}"
        async with websockets.connect(url, additional_headers=headers) as socket:
            statuses = [orjson.loads(raw)["status"] async for raw in socket]
        assert statuses[0] == "connected"
        assert statuses[-1] in {"completed", "failed"}
        assert socket.close_code == 1000

        listed = oee(system, "keys", "list")
        assert listed.returncode == 0, listed.stderr
        assert f"{key_id}  e2e-client" in listed.stdout
        assert key not in listed.stdout

        revoked = oee(system, "keys", "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr

        async def refused() -> bool:
            response = await client.get(f"/api/orders/{order_id}", headers=headers)
            return response.status_code == 401

        # Within OEE_AUTH_CACHE_SECONDS (5 s by default) every API process refuses it.
        await eventually(refused, timeout=15, what="the revoked key refused", system=system)
    system.stop_all()
    assert key not in system.logs()
    assert key.removeprefix("oee_") not in "".join(
        path.read_text() for path in system.log_dir.glob("*.log")
    )


async def test_disabled_auth_refuses_to_listen_beyond_loopback(start_system: Any) -> None:
    system: System = await start_system(processes=())
    refused = oee(system, "api", extra_env={"OEE_AUTH": "disabled", "OEE_API_HOST": "0.0.0.0"})
    assert refused.returncode != 0
    [line] = refused.stderr.strip().splitlines()
    assert "OEE_AUTH=disabled" in line
    assert "0.0.0.0" in line
