"""The whole system as real processes (`oee api`, `oee router`, `oee projector`) for e2e tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.kafka.launcher import free_port
from schemas.codec import UndecodableEvent, decode
from schemas.envelope import Envelope
from services.common.settings import Settings

PROCESSES = ("projector", "router", "api")


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
        "OEE_DATA_DIR": str(settings.data_dir),
        "OEE_LOG_FORMAT": "json",
        "OEE_ROUTER_METRICS_PORT": str(settings.router_metrics_port),
        "OEE_PROJECTOR_METRICS_PORT": str(settings.projector_metrics_port),
        "OEE_AUTH": settings.auth,
        "OEE_PRODUCE_TIMEOUT_SECONDS": str(settings.produce_timeout_seconds),
    }


@dataclass
class System:
    """Child processes of one system under test; each can be killed and restarted.

    With `supervise()`, a child that exits on its own is started again, as `oee up`
    does, and counted in `restarts`; exits the test asks for (kill, terminate,
    stop_all) are not restarted.
    """

    settings: Settings
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    restarts: Counter[str] = field(default_factory=Counter)
    _launch: dict[str, tuple[str, int | None, str | None]] = field(default_factory=dict)
    _expected_exits: set[int] = field(default_factory=set)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _supervising: threading.Event = field(default_factory=threading.Event)
    _supervisor: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"

    def start(
        self, name: str, *, api_port: int | None = None, instance: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `oee <name>`; a second process of a kind needs an `api_port` or an `instance`."""
        with self._lock:
            return self._start(name, api_port=api_port, instance=instance)

    def _start(
        self, name: str, *, api_port: int | None = None, instance: str | None = None
    ) -> subprocess.Popen[bytes]:
        env = os.environ | settings_env(self.settings)
        key = name
        if api_port is not None:
            env["OEE_API_PORT"] = str(api_port)
            key = f"{name}:{api_port}"
        elif instance is not None:
            key = f"{name}:{instance}"
        log = (self.log_dir / f"{key.replace(':', '-')}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", name],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.processes[key] = process
        self._launch[key] = (name, api_port, instance)
        return process

    def expect_exit(self, key: str) -> subprocess.Popen[bytes]:
        """The test is about to stop this process itself: the supervisor must not restart it."""
        with self._lock:
            process = self.processes[key]
            self._expected_exits.add(process.pid)
            return process

    def kill(self, key: str) -> None:
        """SIGKILL: no cleanup, as in a crash."""
        process = self.expect_exit(key)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def supervise(self, interval: float = 0.5) -> None:
        """Restart any child that exits unasked, like `oee up`, counting each in `restarts`."""
        if self._supervisor is not None:
            return
        self._supervising.set()
        self._supervisor = threading.Thread(
            target=self._supervise, args=(interval,), name="oee-test-supervisor", daemon=True
        )
        self._supervisor.start()

    def _supervise(self, interval: float) -> None:
        while self._supervising.is_set():
            with self._lock:
                for key, process in list(self.processes.items()):
                    code = process.poll()
                    if code is None or process.pid in self._expected_exits:
                        continue
                    name, api_port, instance = self._launch[key]
                    with (self.log_dir / f"{key.replace(':', '-')}.log").open("a") as log:
                        log.write(f"\n== supervisor: {key} exited with {code}; restarting\n")
                    self.restarts[key] += 1
                    self._start(name, api_port=api_port, instance=instance)
            time.sleep(interval)

    def stop_all(self) -> None:
        self._supervising.clear()
        if self._supervisor is not None:
            self._supervisor.join(5)
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        return "\n".join(
            f"== {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.log_dir.glob("*.log"))
        )

    def replay_verify(self) -> subprocess.CompletedProcess[str]:
        """`oee replay verify` against this system's log and read models (exit 0: no difference)."""
        return subprocess.run(
            [sys.executable, "-m", "services.cli", "replay", "verify"],
            env=os.environ
            | settings_env(self.settings)
            | {"OEE_LOG_FORMAT": "console", "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    async def assert_replay_verifies(self) -> None:
        """The read models rebuilt from the log equal the live ones; every hash chain holds."""
        result = await asyncio.to_thread(self.replay_verify)
        output = f"{result.stdout}\n{result.stderr}"
        assert result.returncode == 0, f"oee replay verify found differences:\n{output}"
        assert "read models equal" in output, output
        assert "hash chain intact" in output, output

    async def wait_healthy(self, base_url: str | None = None, timeout: float = 60) -> None:
        url = f"{base_url or self.base_url}/health"
        async with httpx.AsyncClient() as client:
            await eventually(
                lambda: _is_ok(client, url), timeout=timeout, what=f"{url} healthy", system=self
            )


async def _is_ok(client: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await client.get(url, timeout=2)).status_code == 200
    except httpx.HTTPError:
        return False


async def eventually(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout: float,
    what: str,
    system: System | None = None,
    interval: float = 0.2,
) -> None:
    """Poll `check` until true; fail with the processes' logs when the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(interval)
    details = system.logs() if system else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{details}")


async def wait_all_final(
    system: System, order_ids: set[str], *, timeout: float, interval: float = 0.5
) -> None:
    """Wait until the read model shows every one of these orders completed or failed."""

    async def all_final() -> bool:
        with psycopg.connect(str(system.settings.database_url)) as conn:
            row = conn.execute(
                "SELECT count(*) FROM read_model.orders"
                " WHERE id = ANY(%s::uuid[]) AND status IN ('completed', 'failed')",
                (list(order_ids),),
            ).fetchone()
        return row is not None and row[0] == len(order_ids)

    await eventually(
        all_final,
        timeout=timeout,
        what=f"{len(order_ids)} orders final",
        system=system,
        interval=interval,
    )


async def read_log(
    settings: Settings, *, skip_undecodable: bool = False
) -> list[tuple[int, int, Envelope]]:
    """Every event on the order log as (partition, offset, envelope), in order per partition.

    With `skip_undecodable`, records nobody can read (poison) are left out instead of raising.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
        # Without it a fetch racing the seek below may reset to the end and read nothing.
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(settings.orders_topic, p)
            for p in range(settings.orders_topic_partitions)
        ]
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[tuple[int, int, Envelope]] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, messages in batches.items():
                for m in messages:
                    if m.offset >= ends[tp]:
                        continue
                    try:
                        found.append((m.partition, m.offset, decode(m.value)))
                    except UndecodableEvent:
                        if not skip_undecodable:
                            raise
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        return found
    finally:
        await consumer.stop()


def order_payload(
    token_in: str = "SOL", token_out: str = "USDC", amount: str = "1", **extra: Any
) -> dict[str, Any]:
    return {
        "tokenIn": token_in,
        "tokenOut": token_out,
        "amount": amount,
        "slippage": "0.05",
        **extra,
    }


def new_port() -> int:
    return free_port()


def random_key() -> str:
    return uuid.uuid4().hex
