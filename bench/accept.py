"""How fast the API answers 202: wrk POSTing a SOL -> USDC market order with an API key.

Run: `.venv/bin/python -m bench.accept [--duration 10] [--connections 32] [--threads 1]`
(needs `wrk`: `apt-get install wrk`). Starts the system as `bench.load` does (Kafka,
PostgreSQL, the chain node, a projector, a router and an API, authentication on with a
generated key of a high rate limit), runs `wrk -t1 -c32 -d10s -s bench/wrk_execute.lua`
against `/api/orders/execute` and prints wrk's report (requests/s, latency percentiles).
Every 202 is an order whose OrderSubmitted is acknowledged by all in-sync replicas; the
router and projector process them meanwhile on the same cores, as in the issue's side-by-side.
`--api-env NAME=VALUE` passes settings to the API process only (e.g. server options).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench.launcher import REPO, Launched, Topology, run_launched
from bench.report import machine
from bench.samplers import ProcessSampler, children_of

SCRIPT = Path(__file__).with_name("wrk_execute.lua")


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests per second, the answers that were not 2xx, and the script's percentiles."""
    found: dict[str, Any] = {}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", output):
        found["requests_per_second"] = float(m.group(1))
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        found["non_2xx"] = int(m.group(1))
    if m := re.search(r"(\d+) requests in", output):
        found["requests"] = int(m.group(1))
    for name in ("p50_ms", "p90_ms", "p99_ms"):
        if m := re.search(rf"^{name} ([\d.]+)$", output, re.MULTILINE):
            found[name] = float(m.group(1))
    return found


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process and its children (the API's workers), in clock ticks."""
    total = 0
    for one in [pid, *children_of(pid)]:
        fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


async def run(args: argparse.Namespace, launched: Launched) -> dict[str, Any]:
    urls = await launched.start_processes(api_env=dict(e.split("=", 1) for e in args.api_env))
    await launched.wait_healthy(urls)
    await asyncio.sleep(args.settle)  # the router and projector join their groups
    assert launched.api_key is not None
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        "--latency",
        "-s",
        str(SCRIPT.relative_to(REPO)),
        urls[0],
    ]
    env = os.environ | {"OEE_BENCH_KEY": launched.api_key}
    if args.warmup > 0:
        # A first wrk run, not reported: the broker's JVM compiles its hot paths in its first
        # seconds under load (C2), which a long-running system has long done.
        warmup = [*command[:3], f"-d{args.warmup}s", *command[4:]]
        await asyncio.to_thread(
            subprocess.run, warmup, cwd=REPO, env=env, capture_output=True, check=True
        )
        await asyncio.sleep(args.settle)
    api = launched.children["api"].pid
    tick = os.sysconf("SC_CLK_TCK")
    profiler = None
    if args.py_spy:
        # Collapsed stacks of the API while wrk runs (py-spy, 100 Hz, idle frames dropped).
        spy = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(api)]
        spy += ["--format", "raw", "--rate", "100", "--duration", str(args.duration)]
        profiler = await asyncio.create_subprocess_exec(
            *spy, "--output", str(args.py_spy), cwd=REPO
        )
    cpu_before = cpu_ticks(api)
    # Where the two cores go meanwhile: the API, and the processes working through the
    # orders it accepts (broker, router, chain, projector, PostgreSQL).
    sampler = ProcessSampler([p for p in launched.processes() if p.name != "loadgen"])
    await sampler.start()
    began = time.time()
    try:
        done = await asyncio.to_thread(
            subprocess.run, command, cwd=REPO, env=env, capture_output=True, text=True, check=True
        )
    finally:
        await sampler.stop()
    if profiler is not None:
        await profiler.wait()
    api_cpu_seconds = (cpu_ticks(api) - cpu_before) / tick
    print(done.stdout)
    found = parse_wrk(done.stdout)
    requests = found.get("requests") or 0
    return {
        "machine": machine(),
        "command": " ".join(sys.argv),
        "wrk": " ".join(command),
        "api_env": args.api_env,
        **found,
        # The API's own CPU per answer: what the 202 path costs, whatever else the cores do
        # (the machine is shared, so requests/s and latency move with its load).
        "api_cpu_ms_per_request": round(api_cpu_seconds * 1000 / requests, 3) if requests else None,
        "cpu_percent_during_wrk": {
            name: figures["cpu_percent_mean"]
            for name, figures in sampler.summary(began, time.time(), requests).items()
        },
        "loadavg_1m_end": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--settle", type=float, default=3)
    parser.add_argument(
        "--routers",
        type=int,
        default=1,
        help="0: accept only, no execution on the same cores (the accept path's own ceiling)",
    )
    parser.add_argument("--projectors", type=int, default=1)
    parser.add_argument(
        "--warmup", type=int, default=5, help="seconds of an unreported wrk run first (0: none)"
    )
    parser.add_argument("--api-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--py-spy", type=Path, default=None, help="profile the API to this file")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")
    launched = Launched(
        Topology(pg_no_fsync=False, routers=args.routers, projectors=args.projectors)
    )
    report = run_launched(launched, lambda: run(args, launched))
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    if args.json:
        args.json.write_text(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
