"""Samplers that run beside a load: the projector's log positions, each process's RSS and CPU
from /proc, and consumer lag."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.common.settings import Settings


class Background:
    """A sampler's loop (`_run`), running as a task between `start()` and `stop()`."""

    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class PositionSampler(Background):
    """Polls the projector's stored log positions, to time when each event was projected."""

    def __init__(self, database_url: str, topic: str, interval: float) -> None:
        self.database_url = database_url
        self.topic = topic
        self.interval = interval
        self.samples: dict[int, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
        self.latest: dict[int, int] = {}

    async def _run(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True
        ) as conn:
            while True:
                cursor = await conn.execute(
                    "SELECT partition, next_offset FROM read_model.log_positions WHERE topic = %s",
                    (self.topic,),
                )
                now = time.time()
                for partition, offset in await cursor.fetchall():
                    if self.latest.get(partition) != offset:
                        self.latest[partition] = offset
                        offsets, times = self.samples[partition]
                        offsets.append(offset)
                        times.append(now)
                await asyncio.sleep(self.interval)

    def projected_at(self, partition: int, offset: int) -> float | None:
        """When the stored position first passed `offset` (None: not seen yet)."""
        offsets, times = self.samples.get(partition, ([], []))
        i = bisect.bisect_right(offsets, offset)
        return times[i] if i < len(times) else None

    def caught_up(self, ends: dict[int, int]) -> bool:
        return all(self.latest.get(p, 0) >= end for p, end in ends.items() if end > 0)


@dataclass
class ProcessInfo:
    name: str
    pid: int
    with_children: bool = False


def children_of(pid: int) -> list[int]:
    """The process's direct children."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                found.extend(int(c) for c in text.split())
    return found


def _stat(pid: int) -> tuple[int, int]:
    """(CPU ticks including reaped children, RSS in kB) of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return ticks, rss


class ProcessSampler(Background):
    """Samples RSS and CPU ticks of each process every `interval` seconds."""

    def __init__(self, processes: list[ProcessInfo], interval: float = 1.0) -> None:
        self.processes = processes
        self.interval = interval
        self.series: dict[str, list[tuple[float, int, int]]] = defaultdict(list)
        self.tick = os.sysconf("SC_CLK_TCK")

    def sample(self) -> None:
        now = time.time()
        for info in self.processes:
            pids = [info.pid, *(children_of(info.pid) if info.with_children else [])]
            ticks = rss = 0
            for pid in pids:
                with contextlib.suppress(OSError, ValueError, IndexError):
                    t, r = _stat(pid)
                    ticks += t
                    rss += r
            if rss:
                self.series[info.name].append((now, ticks, rss))

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        await super().stop()
        self.sample()  # the last figures, as the run ends

    def summary(self, since: float, until: float, orders: int) -> dict[str, dict[str, Any]]:
        """Per process: RSS, mean CPU while sending, and CPU per order from `since` to the end.

        The last sample is taken once the system has drained, so CPU per order counts
        all the work the run's orders caused, whatever the backlog when sending stopped.
        """
        out: dict[str, dict[str, Any]] = {}
        for name, series in self.series.items():
            window = [s for s in series if since <= s[0] <= until] or series[-2:]
            first, last = window[0], window[-1]
            elapsed = last[0] - first[0]
            cpu = (last[1] - first[1]) / self.tick / elapsed * 100 if elapsed > 0 else 0.0
            whole_run = (series[-1][1] - first[1]) / self.tick
            rss = [s[2] for s in window]
            out[name] = {
                "peak_rss_mb": round(max(s[2] for s in series) / 1024, 1),
                "rss_start_mb": round(rss[0] / 1024, 1),
                "rss_end_mb": round(rss[-1] / 1024, 1),
                "cpu_percent_mean": round(cpu, 1),
                "cpu_ms_per_order": round(whole_run * 1000 / orders, 2) if orders else None,
            }
        return out


class LagSampler(Background):
    """Consumer lag each second: log end minus router commits and projector positions."""

    def __init__(self, settings: Settings, positions: PositionSampler) -> None:
        self.settings = settings
        self.positions = positions
        self.router_lag: list[int] = []
        self.projector_lag: list[int] = []

    async def _run(self) -> None:
        servers = str(self.settings.kafka_bootstrap_servers)
        topic = self.settings.orders_topic
        consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
        admin = AIOKafkaAdminClient(bootstrap_servers=servers)
        await consumer.start()
        await admin.start()
        tps = [TopicPartition(topic, p) for p in range(self.settings.orders_topic_partitions)]
        try:
            while True:
                ends = await consumer.end_offsets(tps)
                total = sum(ends.values())
                with contextlib.suppress(Exception):
                    committed = await admin.list_consumer_group_offsets(self.settings.router_group)
                    done = sum(
                        m.offset
                        for tp, m in committed.items()
                        if tp.topic == topic and m.offset >= 0
                    )
                    self.router_lag.append(total - done)
                self.projector_lag.append(total - sum(self.positions.latest.values()))
                await asyncio.sleep(1.0)
        finally:
            await consumer.stop()
            await admin.close()
