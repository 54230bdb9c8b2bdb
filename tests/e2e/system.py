"""The whole system as real processes (`oee chain`, `oee api`, `oee router`, `oee projector`)
for e2e tests.

Starting, stopping and health-checking the processes is `bench.launcher`'s, shared with the
benchmarks; waiting is `bench.polling.eventually`, re-exported here for the tests.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.launcher import (
    logs_tail,
    start_process,
    stop_processes,
    wait_chain_healthy,
    wait_healthy,
)
from bench.launcher import settings_env as settings_env  # re-exported for the tests
from bench.polling import eventually as eventually  # re-exported for the tests
from infra.kafka.launcher import free_port
from schemas.codec import UndecodableEvent, decode
from schemas.envelope import Envelope
from schemas.events import OrderCompleted, TransactionSubmitted
from services.common.settings import Settings

PROCESSES = ("chain", "projector", "router", "api")


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
        process = start_process(name, env, self.log_dir / f"{key.replace(':', '-')}.log")
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
        stop_processes(self.processes.values())

    def logs(self) -> str:
        return logs_tail(self.log_dir, 3000)

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
        await wait_healthy(base_url or self.base_url, timeout=timeout, system=self)

    async def wait_chain(self, timeout: float = 60) -> None:
        """Until this system's chain node answers its RPC."""
        await wait_chain_healthy(self.settings.solana_rpc_url, timeout=timeout, system=self)


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


async def landed_on_chain(settings: Settings, signatures: list[str]) -> dict[str, bool]:
    """Of these signatures, those the chain node landed (in its own store, `svm.transactions`),
    each with whether it succeeded (False: it landed failed, a program error)."""
    async with await psycopg.AsyncConnection.connect(str(settings.database_url)) as conn:
        cursor = await conn.execute(
            "SELECT signature, err IS NULL FROM svm.transactions WHERE signature = ANY(%s)",
            (signatures,),
        )
        return dict(await cursor.fetchall())


async def assert_no_swap_landed_twice(
    settings: Settings, envelopes: list[Envelope], order_ids: set[str]
) -> dict[str, str]:
    """For each order, of all the signatures its `TransactionSubmitted` events recorded, at most
    one landed successfully on the chain, and a completed order's signature is that one; an
    order not completed landed nothing successfully. (Failed landings may precede the success:
    an earlier hop's slippage lands failed and the order retries.) Returns each order's
    successfully landed signature."""
    submitted: dict[str, set[str]] = {o: set() for o in order_ids}
    finals: dict[str, Envelope] = {}
    for envelope in envelopes:
        order_id = str(envelope.order_id)
        if order_id not in order_ids:
            continue
        if isinstance(envelope.payload, TransactionSubmitted):
            submitted[order_id].add(envelope.payload.tx_hash)
        if envelope.status.is_final:
            finals[order_id] = envelope
    landed = await landed_on_chain(settings, [s for sigs in submitted.values() for s in sigs])
    filled: dict[str, str] = {}
    for order_id, signatures in submitted.items():
        ours = {s: landed[s] for s in signatures if s in landed}
        history = [
            f"{e.type}({getattr(e.payload, 'attempt', '')}, {getattr(e.payload, 'code', '')})"
            for e in envelopes
            if str(e.order_id) == order_id
        ]
        succeeded = [s for s, ok in ours.items() if ok]
        assert len(succeeded) <= 1, f"order {order_id} swapped twice: {ours}; events {history}"
        final = finals.get(order_id)
        if isinstance(final.payload if final else None, OrderCompleted):
            assert final is not None
            assert isinstance(final.payload, OrderCompleted)
            assert succeeded == [final.payload.tx_hash], (order_id, ours, final.payload.tx_hash)
        else:
            assert not succeeded, f"order {order_id} is not completed but its swap landed"
        if succeeded:
            filled[order_id] = succeeded[0]
    return filled
