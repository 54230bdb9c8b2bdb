"""The load generator still runs end to end: a few seconds at a low rate, counts only.

Performance targets live in `bench.load` and docs/benchmarks.md, never here:
nothing below asserts a latency.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.launcher import BENCH_SOCKETS_PER_KEY, bench_key
from bench.load import run_load
from bench.samplers import ProcessInfo
from bench.workload import LoadConfig, schedule
from schemas.events import OrderFailed
from tests.e2e.system import System, read_log


def test_the_schedule_ramps_then_holds_the_rate() -> None:
    times = schedule(LoadConfig(rate=100, duration=2, ramp=1))
    assert len(times) == 50 + 200
    assert times == sorted(times)
    assert times[50] == pytest.approx(1.0)
    assert times[-1] == pytest.approx(1.0 + 199 / 100)


async def test_a_short_low_rate_run_completes_every_order(start_system: Any) -> None:
    # As the bench runs by default: authentication on, with a key of a high rate limit; the
    # deployment's default (1/s, burst 1) would refuse all but the first orders. The one key
    # watches up to 30 sockets at once, more than the default 20 per key.
    system: System = await start_system(
        auth="enabled",
        rate_limit_orders_per_second=1,
        rate_limit_burst=1,
        ws_max_connections_per_key=BENCH_SOCKETS_PER_KEY,
    )
    assert system.settings.database_url
    key = bench_key(system.settings.database_url)
    config = LoadConfig(rate=20, duration=3, ws_share=0.5, drain_timeout=30)
    processes = [ProcessInfo(name, p.pid) for name, p in system.processes.items()]

    report = await run_load(system.settings, [system.base_url], config, processes, key)

    assert report["sent"] == 60
    assert report["accepted"] == 60
    assert report["completed"] + report["failed"] == 60
    log = [e for _, _, e in await read_log(system.settings)]
    failures = [
        f"{e.payload.code}: {e.payload.error}" for e in log if isinstance(e.payload, OrderFailed)
    ]
    # An order re-quoted after a first hop's slippage (a two-hop behind other orders in its
    # block) also has an OrderRetrying: one more kind of event, projected too.
    retried = len({e.order_id for e in log if e.type == "OrderRetrying"})
    assert report["completed"] == 60, (report["errors"], failures)
    assert report["error_count"] == 0, report["errors"]
    assert report["watched"] > 0
    assert report["latency_ms"]["socket_completed"]["count"] == report["watched"]
    assert report["latency_ms"]["projection_lag"]["count"] == 5 * 60 + retried
    assert set(report["processes"]) >= {"api", "router", "projector"}
