"""`OEE_API_WORKERS=2`: two forked API processes share one port (SO_REUSEPORT) and stop together."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx

from bench.samplers import children_of
from tests.e2e.system import System


async def test_two_workers_share_the_port_and_stop_with_their_parent(start_system: Any) -> None:
    system: System = await start_system(processes=("api",), api_workers=2)
    parent = system.processes["api"]
    workers = children_of(parent.pid)
    assert len(workers) == 2
    async with httpx.AsyncClient(base_url=system.base_url, timeout=10) as http:
        # Fresh connections, so the kernel spreads them over both workers.
        answers = await asyncio.gather(
            *(
                http.post(
                    "/api/orders/execute",
                    json={"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"},
                    headers={"Connection": "close"},
                )
                for _ in range(20)
            )
        )
    assert [a.status_code for a in answers] == [202] * 20
    assert len({a.json()["orderId"] for a in answers}) == 20
    system.stop_all()
    assert parent.returncode == 0, system.logs()
    # The parent waited for each worker: a reaped process is gone.
    assert not [w for w in workers if _exists(w)]


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
