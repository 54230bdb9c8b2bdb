"""Processes dying under load: SIGKILL of an API process, SIGTERM of each process.

Router, projector and chain SIGKILLs are in tests/e2e/test_crashes.py. Every test here
ends with the same proof, from the log, the chain node's own record and the read models:
every order on the log (each 202 among them) has exactly one final event, at
most one fill, the read models hold exactly the log, and `oee replay verify`
(a rebuild from the log, compared row by row) finds no difference.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from typing import Any

import pytest

from tests.e2e.system import System, eventually, new_port
from tests.e2e.test_order_flow import assert_log_matches_read_models
from tests.reliability.support import (
    Load,
    orders_on_log,
    router_ready,
    terminate,
    wait_all_final,
)

# A process that takes longer than this to honour SIGTERM would be killed by most supervisors.
EXIT_WITHIN_SECONDS = 20.0


async def second_api(system: System) -> str:
    port = new_port()
    system.start("api", api_port=port)
    url = f"http://127.0.0.1:{port}"
    await system.wait_healthy(url)
    return url


async def assert_nothing_lost(system: System, load: Load) -> set[str]:
    """Every order on the log is final once; every 202 is on the log; nothing ran twice."""
    on_log = await orders_on_log(system)
    assert load.accepted <= on_log, f"accepted but not on the log: {load.accepted - on_log}"
    await wait_all_final(system, on_log)
    await assert_log_matches_read_models(system, on_log)
    await system.assert_replay_verifies()
    return on_log


@pytest.mark.slow
async def test_an_api_process_killed_mid_load_loses_no_accepted_order(start_system: Any) -> None:
    # Realistic latency keeps a few hundred orders in flight while the API dies.
    system: System = await start_system(
        venue_latency="realistic", venue_failure_rate="0.1", own_database=True
    )
    victim_url = system.base_url
    survivor_url = await second_api(system)
    await router_ready(system)
    load = Load([victim_url, survivor_url])
    rng = random.Random(3)

    # Clients go on until the third restart (a count would run out early: requests to the
    # dead API fail at once), paced to keep a few hundred orders in all.
    task = asyncio.create_task(load.run(2000, concurrency=6, pause=0.15))
    survivor_during_outage = []
    for _ in range(3):
        await asyncio.sleep(rng.uniform(0.5, 1.5))
        before = load.accepted_by[survivor_url]
        system.kill("api")
        await asyncio.sleep(rng.uniform(0.2, 0.8))
        system.start("api")
        await system.wait_healthy(victim_url)
        survivor_during_outage.append(load.accepted_by[survivor_url] - before)
    load.stop.set()
    await task

    # The survivor kept accepting while the victim was down; the victim's clients saw it die.
    assert all(survivor_during_outage), (survivor_during_outage, load.outcomes)
    assert load.accepted_by[victim_url] > 0, load.accepted_by
    assert sum(n for k, n in load.outcomes.items() if k not in ("202", "503")) > 0, load.outcomes
    on_log = await assert_nothing_lost(system, load)
    # Requests cut off by the kill may have reached the log without their 202: those run too.
    assert len(on_log) >= len(load.accepted)


@pytest.mark.slow
async def test_sigterm_of_each_process_under_load_exits_promptly_and_loses_nothing(
    start_system: Any,
) -> None:
    system: System = await start_system(venue_latency="realistic", own_database=True)
    survivor_url = await second_api(system)
    # Clients of the API being stopped see it go; the other API keeps taking orders.
    await router_ready(system)
    load = Load([system.base_url, survivor_url])
    task = asyncio.create_task(load.run(2000, concurrency=10, pause=0.05))
    stops: dict[str, tuple[float, int | None]] = {}
    for victim in ("router", "projector", "api"):
        # Orders mid-swap in the router, batches mid-write in the projector, requests mid-flight.
        await asyncio.sleep(1.0)
        stops[victim] = await asyncio.to_thread(terminate, system, victim, 60)
        system.start(victim)
        if victim == "api":
            await system.wait_healthy()
    await asyncio.sleep(1.0)
    load.stop.set()
    await task

    for victim, (elapsed, code) in stops.items():
        assert code is not None, f"{victim} ignored SIGTERM for 60 s; logs in {system.log_dir}"
        assert elapsed < EXIT_WITHIN_SECONDS, f"{victim} took {elapsed:.1f}s to stop"
        assert code in (0, -signal.SIGTERM), f"{victim} exited with {code}"
    assert load.outcomes["202"] >= 250, load.outcomes
    await assert_nothing_lost(system, load)


async def test_a_supervised_process_that_dies_unasked_is_restarted_and_counted(
    start_system: Any,
) -> None:
    """The outage tests' "nothing restarted" means something: the harness does restart, as
    `oee up` does, a child that exits without the test asking, and counts it."""
    system: System = await start_system(supervise=True)
    await router_ready(system)
    victim = system.processes["projector"]
    os.kill(victim.pid, signal.SIGKILL)  # not system.kill: the harness must not know
    await eventually(
        lambda: _restarted(system, "projector", victim.pid),
        timeout=20,
        what="projector restarted",
        system=system,
    )
    assert dict(system.restarts) == {"projector": 1}
    load = Load([system.base_url])
    await load.run(5, concurrency=1)
    await wait_all_final(system, load.accepted)  # the successor projects new orders


async def _restarted(system: System, key: str, old_pid: int) -> bool:
    process = system.processes[key]
    return process.pid != old_pid and process.poll() is None
