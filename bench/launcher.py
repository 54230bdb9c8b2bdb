"""The engine as real processes (`python -m services.cli api|router|projector`).

Shared by the benchmarks and the end-to-end tests (`tests/e2e/system.py`): the
environment that makes a child see a `Settings`, starting and stopping children
with their output in log files, and waiting until an API answers `/health`.
`Launched` is the benchmarks' whole system: Kafka and PostgreSQL (through the
project's launchers unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL name running
ones), then the engine's processes in the topology the command line asks for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import httpx

from bench.polling import HasLogs, eventually
from bench.samplers import ProcessInfo
from infra.kafka.launcher import free_port
from services.common.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process see `settings`."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": str(settings.kafka_bootstrap_servers),
        "DATABASE_URL": str(settings.database_url),
        "OEE_ORDERS_TOPIC": settings.orders_topic,
        "OEE_ORDERS_TOPIC_PARTITIONS": str(settings.orders_topic_partitions),
        "OEE_DEAD_LETTER_TOPIC": settings.dead_letter_topic,
        "OEE_CONSUMER_GROUP_PREFIX": settings.consumer_group_prefix,
        "OEE_VENUE_LATENCY": settings.venue_latency,
        "OEE_VENUE_FAILURE_RATE": str(settings.venue_failure_rate),
        "OEE_RETRY_DELAYS_SECONDS": json.dumps(list(settings.retry_delays_seconds)),
        "OEE_API_PORT": str(settings.api_port),
        "OEE_API_WORKERS": str(settings.api_workers),
        "OEE_DATA_DIR": str(settings.data_dir),
        "OEE_LOG_FORMAT": "json",
        "OEE_ROUTER_METRICS_PORT": str(settings.router_metrics_port),
        "OEE_PROJECTOR_METRICS_PORT": str(settings.projector_metrics_port),
        "OEE_TRIGGERS_METRICS_PORT": str(settings.triggers_metrics_port),
        "OEE_AUTH": settings.auth,
        "OEE_RATE_LIMIT_ORDERS_PER_SECOND": str(settings.rate_limit_orders_per_second),
        "OEE_RATE_LIMIT_BURST": str(settings.rate_limit_burst),
        "OEE_WS_MAX_CONNECTIONS_PER_KEY": str(settings.ws_max_connections_per_key),
        "OEE_PRODUCE_TIMEOUT_SECONDS": str(settings.produce_timeout_seconds),
        # The chain the router executes on, and the node `oee chain` runs.
        "OEE_SOLANA_RPC_URL": settings.solana_rpc_url,
        "OEE_CHAIN_DRY_RUN": str(settings.chain_dry_run).lower(),
        "OEE_CHAIN_HOST": settings.chain_host,
        "OEE_CHAIN_PORT": str(settings.chain_port),
        "OEE_CHAIN_SEED": str(settings.chain_seed),
        "OEE_CHAIN_WALLETS": str(settings.chain_wallets),
        "OEE_SLOT_MS": str(settings.slot_ms),
        # The market process (`oee market`) and the topics the API and projector read it from.
        "OEE_MARKET_TICKS_TOPIC": settings.market_ticks_topic,
        "OEE_MARKET_TRADES_TOPIC": settings.market_trades_topic,
        "OEE_MARKET_COMMANDS_TOPIC": settings.market_commands_topic,
        "OEE_MARKET_TOPIC_PARTITIONS": str(settings.market_topic_partitions),
        "OEE_MARKET_SEED": str(settings.market_seed),
        "OEE_MARKET_VOLATILITY": str(settings.market_volatility),
        "OEE_MARKET_MAKER_WALLET": str(settings.market_maker_wallet),
        "OEE_CHAIN_EVENTS_TOPIC": settings.chain_events_topic,
        **({"OEE_WALLET_KEYPAIR": str(settings.wallet_keypair)} if settings.wallet_keypair else {}),
    }


def chain_on(port: int) -> dict[str, Any]:
    """Settings for a chain node of its own on `port`, and the router's RPC URL naming it."""
    return {"chain_port": port, "solana_rpc_url": f"http://127.0.0.1:{port}"}


def start_process(name: str, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m services.cli <name>` from the repository root, its output appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", name],
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def stop_processes(processes: Iterable[subprocess.Popen[bytes]], grace: float = 20) -> None:
    """SIGTERM every process still running; SIGKILL those not gone within `grace` seconds."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def logs_tail(log_dir: Path, chars: int) -> str:
    """The last `chars` characters of each process's log, headed by the log's name."""
    return "\n".join(
        f"== {p.name}\n{p.read_text()[-chars:]}" for p in sorted(log_dir.glob("*.log"))
    )


async def wait_healthy(base_url: str, *, timeout: float, system: HasLogs | None = None) -> None:
    """Until `{base_url}/health` answers 200; on timeout, fail with `system`'s logs."""
    url = f"{base_url}/health"
    async with httpx.AsyncClient() as client:

        async def ok() -> bool:
            try:
                return (await client.get(url, timeout=2)).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(ok, f"{url} healthy", timeout=timeout, interval=0.2, system=system)


async def wait_chain_healthy(
    rpc_url: str, *, timeout: float, system: HasLogs | None = None
) -> None:
    """Until the chain node at `rpc_url` answers `/health` (its genesis built, its RPC up)."""
    url = f"{rpc_url.rstrip('/')}/health"
    async with httpx.AsyncClient() as client:

        async def ok() -> bool:
            try:
                return (await client.get(url, timeout=2)).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(
            ok, f"the chain at {rpc_url}", timeout=timeout, interval=0.1, system=system
        )


# A key's own limits for the benchmarks: far above any rate they offer, as a trading bot's key
# would be (`oee keys create --rate-limit 100000 --burst 100000`).
BENCH_RATE_LIMIT = 100_000.0
BENCH_BURST = 100_000
BENCH_SOCKETS_PER_KEY = 100_000


def bench_key(database_url: str) -> str:
    """A new API key with the benchmarks' rate limit, as a user would make one."""
    from services.api.auth.store import create_key
    from services.common.db import connect

    with connect(database_url, autocommit=True) as conn:
        _, key = create_key(
            conn, f"bench-{uuid.uuid4().hex[:8]}", rate_limit=BENCH_RATE_LIMIT, burst=BENCH_BURST
        )
    return key


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The request headers that present `api_key` (none without one)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


@dataclass(frozen=True)
class Topology:
    """What `Launched` starts: how many of each process, and how the venues and dependencies run."""

    venue_latency: Literal["realistic", "zero"] = "zero"
    failure_rate: float = 0.0
    apis: int = 1
    routers: int = 1
    projectors: int = 1
    partitions: int = 12
    router_max_in_flight: int = 2000
    kafka_heap: str = "512m"
    pg_no_fsync: bool = False
    market: bool = False  # also run `oee market` (moves the chain's pools every slot)
    # Authentication on, as users run the engine: the bench submits with a key of its own.
    auth: bool = True

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Topology:
        """From a command line whose options are named as the fields (absent ones: defaults)."""
        given = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        return cls(**given)


class Launched:
    """Kafka, PostgreSQL (unless named by the environment) and the engine's processes."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.tmp = Path(tempfile.mkdtemp(prefix="oee-bench-"))
        self.broker: Any = None
        self.postgres: Any = None
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.settings: Settings | None = None
        self.api_key: str | None = None

    def start_dependencies(self) -> Settings:
        from infra.kafka.launcher import KafkaBroker
        from infra.postgres.launcher import EmbeddedPostgres

        servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        database_url = os.environ.get("DATABASE_URL")
        if not servers:
            self.broker = KafkaBroker(self.tmp / "kafka", port=0, heap=self.topology.kafka_heap)
            self.broker.start()
            servers = self.broker.bootstrap_servers
        if not database_url:
            self.postgres = EmbeddedPostgres(
                self.tmp / "postgres", free_port(), durable=not self.topology.pg_no_fsync
            )
            self.postgres.start()
            database_url = self.postgres.url
        suffix = uuid.uuid4().hex[:8]
        self.settings = Settings(
            market_ticks_topic=f"bench.market.ticks.{suffix}",
            market_trades_topic=f"bench.market.trades.{suffix}",
            market_commands_topic=f"bench.market.commands.{suffix}",
            kafka_bootstrap_servers=servers,
            database_url=database_url,
            orders_topic=f"bench.orders.{suffix}",
            dead_letter_topic=f"bench.deadletter.{suffix}",
            orders_topic_partitions=self.topology.partitions,
            consumer_group_prefix=f"bench-{suffix}",
            chain_events_topic=f"bench.chain.events.{suffix}",
            venue_latency=self.topology.venue_latency,
            venue_failure_rate=self.topology.failure_rate,
            api_port=free_port(),
            # One client holding thousands of sockets (bench.sockets, --ws-share), with one key.
            ws_max_connections_per_key=BENCH_SOCKETS_PER_KEY,
            data_dir=self.tmp / "data",
            **chain_on(free_port()),
        )
        from services.common.dependencies import prepare

        prepare(self.settings)  # migrations and topics, before any process starts
        if self.topology.auth:
            self.api_key = bench_key(database_url)
        return self.settings

    async def start_processes(self, api_env: Mapping[str, str] | None = None) -> list[str]:
        """Start the chain node, the projectors, routers and APIs; the APIs' base URLs.

        The routers start once the chain answers (they would wait for it anyway, but a load
        measured from the first order should not include the chain's start)."""
        assert self.settings is not None
        logs = self.tmp / "logs"
        logs.mkdir(exist_ok=True)
        base_env = self.child_env()
        urls: list[str] = []
        self.children["chain"] = start_process("chain", base_env, logs / "chain.log")
        await wait_chain_healthy(self.settings.solana_rpc_url, timeout=60)
        plan = [("projector", i) for i in range(self.topology.projectors)]
        plan += [("router", i) for i in range(self.topology.routers)]
        plan += [("api", i) for i in range(self.topology.apis)]
        plan += [("market", 0)] if self.topology.market else []
        for name, i in plan:
            env = dict(base_env)
            if name == "api":
                env |= api_env or {}
                port = self.settings.api_port if i == 0 else free_port()
                env["OEE_API_PORT"] = str(port)
                urls.append(f"http://127.0.0.1:{port}")
            key = f"{name}{i + 1}" if i else name
            self.children[key] = start_process(name, env, logs / f"{key}.log")
        return urls

    def child_env(self) -> dict[str, str]:
        """The environment every engine process of this system starts with."""
        assert self.settings is not None
        return (
            os.environ
            | settings_env(self.settings)
            | {
                "OEE_AUTH": "enabled" if self.topology.auth else "disabled",
                "OEE_LOG_LEVEL": "WARNING",
                "OEE_ROUTER_MAX_IN_FLIGHT": str(self.topology.router_max_in_flight),
            }
        )

    async def wait_healthy(self, urls: list[str], timeout: float = 90) -> None:
        for url in urls:
            await wait_healthy(url, timeout=timeout)

    def processes(self) -> list[ProcessInfo]:
        found = [ProcessInfo(key, p.pid) for key, p in self.children.items()]
        if self.broker is not None and self.broker.pid:
            found.append(ProcessInfo("kafka", self.broker.pid))
        if self.postgres is not None and self.postgres._process is not None:
            found.append(ProcessInfo("postgres", self.postgres._process.pid, with_children=True))
        found.append(ProcessInfo("loadgen", os.getpid()))
        return found

    def logs_tail(self) -> str:
        return logs_tail(self.tmp / "logs", 2000)

    def stop(self) -> None:
        stop_processes(self.children.values())
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()


def run_launched(
    launched: Launched, main: Callable[[], Coroutine[Any, Any, dict[str, Any]]]
) -> dict[str, Any]:
    """Start the dependencies, run `main`, show the processes' logs if it fails, stop all."""
    try:
        launched.start_dependencies()
        return asyncio.run(main())
    except BaseException:
        with contextlib.suppress(Exception):
            print(launched.logs_tail(), file=sys.stderr)
        raise
    finally:
        launched.stop()
