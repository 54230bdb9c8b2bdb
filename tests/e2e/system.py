"""The whole system as real processes (`oee api`, `oee router`, `oee projector`) for e2e tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
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
    }


@dataclass
class System:
    """Child processes of one system under test; each can be killed and restarted."""

    settings: Settings
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"

    def start(
        self, name: str, *, api_port: int | None = None, instance: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `oee <name>`; a second process of a kind needs an `api_port` or an `instance`."""
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
        return process

    def kill(self, key: str) -> None:
        """SIGKILL: no cleanup, as in a crash."""
        process = self.processes[key]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop_all(self) -> None:
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
