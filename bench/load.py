"""Open-loop load generator: drive the public API like real clients and say how the engine holds up.

Run (from the repository root):

    .venv/bin/python -m bench.load --rate 200 --duration 30 --venue-latency zero
    .venv/bin/python -m bench.load --find-max --venue-latency zero
    .venv/bin/python -m bench.load --rate 300 --duration 60 --venue-latency realistic --ws-share 1

Open loop: order k is due at a fixed time on the schedule whatever the server
does, and every latency is measured from that due time, so a slow server shows
its queueing instead of slowing the generator down (coordinated omission).
Clients POST `/api/orders/execute` and a share of them (`--ws-share`) then
watch their order on `/ws/{orderId}` until it closes.

Authentication is on, as users run it: the bench creates a key with a rate limit far above
what it offers (`bench.launcher.bench_key`) and sends it with every request; `--no-auth`
runs without. The bench starts the system itself as real processes (`python -m
services.cli api|router|projector`, the environment built by
`bench.launcher.settings_env`), and Kafka and PostgreSQL through the
project's launchers unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL name running
ones. Every request goes to 127.0.0.1; the number of orders is rate x
duration (plus the ramp), and the run stops by itself after `--drain-timeout`.

Where the figures come from:
- `accepted`: the 202's arrival minus the due time.
- `socket_completed`: the `completed` message on the socket minus the due time.
- `log_completed`: the final event's `occurred_at` minus the due time (every order).
- stages, from the events' `occurred_at` read back from the log after the run:
  `log_append` (OrderSubmitted stamped -> its 202 received), `routing`
  (submitted -> routed: the router's consume, quote and route), `build`
  (routed -> built), `submit` (built -> tx submitted), `execution` (tx
  submitted -> completed: the chain's swap and confirmation), and
  `projection_lag` (event stamped -> the projector's stored log position passed
  it; `read_model.log_positions` is sampled every `--position-interval`).
- processes: peak RSS, mean CPU while sending, and CPU per completed order (from
  the first send until drained) of every process from /proc (PostgreSQL is the
  postmaster plus its backends, summed), and consumer lag (log end minus the
  router group's committed offsets and minus the projector's stored positions).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from bench.clients import Clients, generate
from bench.launcher import Launched, Topology, run_launched
from bench.orderlog import end_offsets, read_orders
from bench.polling import TimedOut, eventually
from bench.report import analyse, machine, passes, print_report
from bench.samplers import LagSampler, PositionSampler, ProcessInfo, ProcessSampler
from bench.workload import LoadConfig
from services.common.settings import Settings


async def run_load(
    settings: Settings,
    base_urls: list[str],
    config: LoadConfig,
    processes: list[ProcessInfo] | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """One open-loop run against a running system, submitting with `api_key` (needed when its
    authentication is on); the report as a dict."""
    assert settings.kafka_bootstrap_servers
    assert settings.database_url
    partitions = settings.orders_topic_partitions
    starts = await end_offsets(settings.kafka_bootstrap_servers, settings.orders_topic, partitions)
    positions = PositionSampler(
        settings.database_url, settings.orders_topic, config.position_interval
    )
    lag = LagSampler(settings, positions)
    sampler = ProcessSampler(processes or [ProcessInfo("loadgen", os.getpid())])
    clients = Clients(base_urls, config, api_key)
    await positions.start()
    await lag.start()
    await sampler.start()
    began = time.time()
    try:
        traces = await generate(clients, config, deadline_after=config.drain_timeout)
        sent_until = time.time()
        wanted = {t.order_id for t in traces if t.order_id}
        on_log = await read_orders(settings, starts, wanted, sent_until + config.drain_timeout)
        ends = await end_offsets(
            settings.kafka_bootstrap_servers, settings.orders_topic, partitions
        )

        async def projected() -> bool:  # the sampler polls PostgreSQL: no event to wait on
            return positions.caught_up(ends)

        with contextlib.suppress(TimedOut):  # what is not projected, the report counts
            await eventually(projected, timeout=sent_until + config.drain_timeout - time.time())
    finally:
        await clients.close()
        await sampler.stop()
        await lag.stop()
        await positions.stop()
    report = analyse(config, traces, on_log, positions)
    report["processes"] = sampler.summary(began, sent_until, report["completed"])
    report["cpu_ms_per_order"] = round(
        sum(p["cpu_ms_per_order"] or 0 for p in report["processes"].values()), 2
    )
    report["consumer_lag_max"] = {
        "router_records": max(lag.router_lag, default=None),
        "projector_records": max(lag.projector_lag, default=None),
    }
    report["config"] = asdict(config)
    # Other work on the machine competes for the same cores: say how busy it was.
    report["loadavg_1m_end"] = os.getloadavg()[0]
    return report


async def main_async(args: argparse.Namespace, launched: Launched) -> dict[str, Any]:
    settings = launched.settings
    assert settings is not None
    urls = await launched.start_processes()
    await launched.wait_healthy(urls)
    # Let the router and projector join their groups before the clock starts.
    await asyncio.sleep(args.settle)

    def config(rate: float, duration: float, ramp: float) -> LoadConfig:
        return LoadConfig(
            rate=rate,
            duration=duration,
            ramp=ramp,
            ws_share=args.ws_share,
            max_usd=args.max_usd,
            seed=args.seed,
            connections=args.connections,
            drain_timeout=args.drain_timeout,
        )

    processes = launched.processes()
    key = launched.api_key
    result: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join(sys.argv),
        "venue_latency": args.venue_latency,
        "failure_rate": args.failure_rate,
        "topology": {"apis": args.apis, "routers": args.routers, "projectors": args.projectors},
        "auth": args.auth,
    }
    if args.warmup > 0:
        await run_load(settings, urls, config(min(args.rate, 100), args.warmup, 0), processes, key)
    if not args.find_max:
        profilers = await start_profilers(launched, args.py_spy, args.duration + args.ramp)
        report = await run_load(
            settings, urls, config(args.rate, args.duration, args.ramp), processes, key
        )
        for profiler in profilers:
            await profiler.wait()
        print_report(report)
        result["run"] = report
        return result
    steps: list[dict[str, Any]] = []
    rate, best = args.rate, None
    while rate <= args.max_rate:
        report = await run_load(settings, urls, config(rate, args.step_duration, 0), processes, key)
        print_report(report)
        report["passed"] = passes(report, args)
        steps.append(report)
        print(f"step {rate}/s: {'holds' if report['passed'] else 'breaks'}")
        if not report["passed"]:
            break
        best = rate
        rate = round(rate * args.step_factor)
        await asyncio.sleep(2)
    result["steps"] = steps
    result["max_sustainable_rate"] = best
    print(
        f"\nhighest sustainable rate: {best}/s"
        f" (p99 <= {args.max_p99_ms} ms, errors <= {args.max_error_rate:.2%})"
    )
    return result


async def start_profilers(
    launched: Launched, directory: Path | None, seconds: float
) -> list[asyncio.subprocess.Process]:
    """py-spy (100 Hz, collapsed stacks) on the API, router, projector and chain node for `seconds`,
    one `<process>.txt` each in `directory`; none without a directory."""
    if directory is None:
        return []
    os.makedirs(directory, exist_ok=True)
    spy = str(Path(sys.executable).with_name("py-spy"))
    started = []
    for name in ("api", "router", "projector", "chain"):
        pid = str(launched.children[name].pid)
        started.append(
            await asyncio.create_subprocess_exec(
                *(spy, "record", "--pid", pid, "--format", "raw", "--rate", "100"),
                *("--duration", str(round(seconds)), "--output", str(directory / f"{name}.txt")),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        )
    return started


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rate", type=float, default=100, help="orders per second (the start rate with --find-max)"
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds at the full rate")
    parser.add_argument(
        "--ramp", type=float, default=0, help="seconds of linear ramp before --duration"
    )
    parser.add_argument(
        "--ws-share", type=float, default=0.1, help="share of clients that watch /ws/{orderId}"
    )
    parser.add_argument(
        "--venue-latency", choices=("realistic", "zero"), default=Topology.venue_latency
    )
    parser.add_argument(
        "--failure-rate",
        type=float,
        default=Topology.failure_rate,
        help="transient venue failures (retries take 2-8 s)",
    )
    parser.add_argument(
        "--max-usd",
        type=float,
        default=10_000,
        help="largest order in dollars (log-uniform from $10)",
    )
    parser.add_argument("--find-max", action="store_true")
    parser.add_argument("--step-duration", type=float, default=20)
    parser.add_argument("--step-factor", type=float, default=1.25)
    parser.add_argument("--max-rate", type=float, default=5000)
    parser.add_argument(
        "--max-p99-ms", type=float, default=1000, help="find-max: p99 submit -> final event"
    )
    parser.add_argument("--max-error-rate", type=float, default=0.0)
    parser.add_argument(
        "--warmup", type=float, default=3, help="seconds of low-rate load before measuring"
    )
    parser.add_argument("--settle", type=float, default=3)
    parser.add_argument("--drain-timeout", type=float, default=60)
    parser.add_argument("--connections", type=int, default=200, help="HTTP keep-alive connections")
    parser.add_argument("--apis", type=int, default=Topology.apis)
    parser.add_argument("--routers", type=int, default=Topology.routers)
    parser.add_argument("--projectors", type=int, default=Topology.projectors)
    parser.add_argument("--partitions", type=int, default=Topology.partitions)
    parser.add_argument("--router-max-in-flight", type=int, default=Topology.router_max_in_flight)
    parser.add_argument("--kafka-heap", default=Topology.kafka_heap)
    parser.add_argument(
        "--pg-no-fsync", action="store_true", help="PostgreSQL without fsync (as the tests run it)"
    )
    parser.add_argument(
        "--auth",
        action=argparse.BooleanOptionalAction,
        default=Topology.auth,
        help="authentication on, submitting with a generated key of a high rate limit",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="profile the API, router, projector and chain node during the run (py-spy), into DIR",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    args = parser.parse_args(argv)
    total = args.rate * (args.duration + args.ramp / 2)
    if not args.find_max and total > 1_000_000:
        parser.error("more than 1,000,000 orders: lower --rate or --duration")
    return args


def main(argv: list[str] | None = None) -> None:
    """Start the system, run the load, print and write the report, stop everything."""
    args = parse_args(argv)
    launched = Launched(Topology.from_args(args))
    result = run_launched(launched, lambda: main_async(args, launched))
    if args.json:
        args.json.write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        print(f"report written to {args.json}")


if __name__ == "__main__":
    main()
