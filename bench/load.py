"""Open-loop load generator: drive the public API like real clients and say how the engine holds up.

Run (from the repository root):

    .venv/bin/python bench/load.py --rate 200 --duration 30 --venue-latency zero
    .venv/bin/python bench/load.py --find-max --venue-latency zero
    .venv/bin/python bench/load.py --rate 300 --duration 60 --venue-latency realistic --ws-share 1

Open loop: order k is due at a fixed time on the schedule whatever the server
does, and every latency is measured from that due time, so a slow server shows
its queueing instead of slowing the generator down (coordinated omission).
Clients POST `/api/orders/execute` and a share of them (`--ws-share`) then
watch their order on `/ws/{orderId}` until it closes.

The bench starts the system itself as real processes (`python -m
services.cli api|router|projector`, the environment built by
`tests.e2e.system.settings_env`), and Kafka and PostgreSQL through the
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
import bisect
import contextlib
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402  (a faust-streaming dependency: cheaper per request than httpx)
import orjson  # noqa: E402
import psycopg  # noqa: E402
from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402

from infra.kafka.launcher import free_port  # noqa: E402
from services.common.settings import Settings  # noqa: E402

FINAL = {"OrderCompleted": "completed", "OrderFailed": "failed"}
STATUS_OF = {
    "OrderSubmitted": "pending",
    "OrderRouted": "routing",
    "TransactionBuilt": "building",
    "TransactionSubmitted": "submitted",
    "OrderRetrying": "retrying",
    "OrderCompleted": "completed",
    "OrderFailed": "failed",
}
# (tokenIn, tokenOut, dollar price of one tokenIn): direct pools and two-hop pairs.
PAIRS = (
    ("SOL", "USDC", 150.0),
    ("USDC", "SOL", 1.0),
    ("SOL", "USDT", 150.0),
    ("USDT", "USDC", 1.0),
    ("JUP", "USDC", 0.9),
    ("RAY", "USDC", 2.5),
    ("BONK", "USDC", 0.00002),
    ("JUP", "SOL", 0.9),  # two hops through USDC
    ("BONK", "SOL", 0.00002),
)
PAIR_WEIGHTS = (30, 10, 10, 10, 10, 10, 10, 5, 5)
DECIMALS = {"SOL": 9, "USDC": 6, "USDT": 6, "JUP": 6, "RAY": 6, "BONK": 5}


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class LoadConfig:
    """One open-loop run: the schedule and what the clients do."""

    rate: float
    duration: float
    ramp: float = 0.0
    ws_share: float = 0.1
    min_usd: float = 10.0
    max_usd: float = 10_000.0
    slippage: str = "0.05"
    seed: int = 7
    connections: int = 200
    http_timeout: float = 10.0
    drain_timeout: float = 60.0
    max_in_flight: int = 20_000
    position_interval: float = 0.025

    @property
    def total(self) -> int:
        return round(self.rate * self.ramp / 2) + round(self.rate * self.duration)


def schedule(config: LoadConfig) -> list[float]:
    """Due times (seconds from the start) of every order: a linear ramp to `rate`, then flat."""
    times: list[float] = []
    in_ramp = round(config.rate * config.ramp / 2)
    for k in range(in_ramp):  # N(t) = rate t^2 / (2 ramp)  =>  t = sqrt(2 ramp k / rate)
        times.append(math.sqrt(2 * config.ramp * k / config.rate))
    flat = round(config.rate * config.duration)
    times.extend(config.ramp + k / config.rate for k in range(flat))
    return times


def order_payloads(config: LoadConfig) -> Iterator[tuple[bytes, str]]:
    """A seeded mix of pairs and log-uniform dollar sizes, as request bodies (and the pair)."""
    rng = random.Random(f"{config.seed}:orders")
    while True:
        token_in, token_out, price = rng.choices(PAIRS, weights=PAIR_WEIGHTS)[0]
        usd = math.exp(rng.uniform(math.log(config.min_usd), math.log(config.max_usd)))
        places = min(DECIMALS[token_in], 6)
        amount = f"{usd / price:.{places}f}"
        body = {
            "tokenIn": token_in,
            "tokenOut": token_out,
            "amount": amount,
            "slippage": config.slippage,
        }
        yield orjson.dumps(body), f"{token_in}/{token_out}"


# --------------------------------------------------------------------------- the clients


@dataclass
class OrderTrace:
    """What one client saw of one order (wall-clock seconds)."""

    index: int
    due: float
    watch: bool
    pair: str
    order_id: str | None = None
    accepted_at: float | None = None
    error: str | None = None
    socket: dict[str, float] = field(default_factory=dict)  # status -> received at
    socket_sequences: list[int] = field(default_factory=list)
    socket_close: int | None = None
    socket_close_reason: str | None = None


class Clients:
    """HTTP and WebSocket clients spread over the API processes."""

    def __init__(self, base_urls: list[str], config: LoadConfig) -> None:
        for url in base_urls:
            host = url.split("://", 1)[1].split(":", 1)[0]
            if host != "127.0.0.1":
                raise SystemExit(f"refusing to send load to {url}: loopback (127.0.0.1) only")
        self.base_urls = base_urls
        self.config = config
        timeout = aiohttp.ClientTimeout(total=config.http_timeout)
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=config.connections), timeout=timeout
        )
        # Sockets get their own unlimited connector: they must not queue behind submissions.
        self.ws = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def close(self) -> None:
        await self.http.close()
        await self.ws.close()

    async def run_order(self, trace: OrderTrace, body: bytes, deadline: float) -> None:
        base = self.base_urls[trace.index % len(self.base_urls)]
        try:
            async with self.http.post(
                f"{base}/api/orders/execute",
                data=body,
                headers={"content-type": "application/json"},
            ) as response:
                answer = await response.read()
                trace.accepted_at = time.time()
                if response.status != 202:
                    trace.error = f"http_{response.status}"
                    return
                trace.order_id = orjson.loads(answer)["orderId"]
        except TimeoutError:
            trace.error = "http_timeout"
            return
        except aiohttp.ClientError as exc:
            trace.error = f"http_{type(exc).__name__}"
            return
        if trace.watch:
            await self._watch(trace, base, deadline)

    async def _watch(self, trace: OrderTrace, base: str, deadline: float) -> None:
        url = base.replace("http://", "ws://") + f"/ws/{trace.order_id}"
        try:
            async with asyncio.timeout(max(1.0, deadline - time.time())):
                async with self.ws.ws_connect(url, max_msg_size=1 << 20) as socket:
                    while True:
                        message = await socket.receive()
                        if message.type is aiohttp.WSMsgType.CLOSE:
                            # The server's reason: an error code, or why it gave up on us.
                            trace.socket_close_reason = message.extra or None
                        if message.type is not aiohttp.WSMsgType.TEXT:
                            break
                        received = time.time()
                        data = orjson.loads(message.data)
                        if "sequence" in data:
                            trace.socket.setdefault(data["status"], received)
                            trace.socket_sequences.append(data["sequence"])
                    trace.socket_close = socket.close_code
        except TimeoutError:
            trace.error = "ws_timeout"
        except aiohttp.ClientError as exc:
            trace.error = f"ws_{type(exc).__name__}"


async def generate(clients: Clients, config: LoadConfig, deadline_after: float) -> list[OrderTrace]:
    """Send every order at its due time; return when all clients are done or the deadline passes."""
    loop = asyncio.get_running_loop()
    rng = random.Random(f"{config.seed}:watch")
    payloads = order_payloads(config)
    traces: list[OrderTrace] = []
    tasks: set[asyncio.Task[None]] = set()
    start_mono = loop.time() + 0.2
    start_wall = time.time() + 0.2
    due_times = schedule(config)
    deadline = start_wall + (due_times[-1] if due_times else 0) + deadline_after
    for index, offset in enumerate(due_times):
        delay = start_mono + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        body, pair = next(payloads)
        trace = OrderTrace(index, start_wall + offset, rng.random() < config.ws_share, pair)
        traces.append(trace)
        if len(tasks) >= config.max_in_flight:
            trace.error = "generator_saturated"  # the generator's own bound, counted as an error
            continue
        task = asyncio.create_task(clients.run_order(trace, body, deadline))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=max(0.1, deadline - time.time()))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return traces


# --------------------------------------------------------------------------- what the log says


@dataclass
class OrderOnLog:
    times: dict[str, float] = field(default_factory=dict)  # event type -> occurred_at (epoch)
    final: str | None = None
    positions: dict[str, tuple[int, int]] = field(
        default_factory=dict
    )  # type -> (partition, offset)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def end_offsets(servers: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: ends[tp] for tp in tps}
    finally:
        await consumer.stop()


async def read_orders(
    settings: Settings, starts: dict[int, int], wanted: set[str], deadline: float
) -> dict[str, OrderOnLog]:
    """Read the log from `starts` until every wanted order has its final event (or the deadline)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    found: dict[str, OrderOnLog] = defaultdict(OrderOnLog)
    unfinished = set(wanted)
    try:
        tps = [TopicPartition(settings.orders_topic, p) for p in starts]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp.partition])
        while unfinished and time.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for record in records:
                    event = orjson.loads(record.value)
                    order_id = event["order_id"]
                    if order_id not in wanted:
                        continue
                    seen = found[order_id]
                    kind = event["type"]
                    if kind in seen.times:
                        continue  # a re-emitted duplicate: keep the first
                    seen.times[kind] = _epoch(event["occurred_at"])
                    seen.positions[kind] = (record.partition, record.offset)
                    if kind in FINAL:
                        seen.final = FINAL[kind]
                        unfinished.discard(order_id)
    finally:
        await consumer.stop()
    return dict(found)


# --------------------------------------------------------------------------- samplers


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


def _children(pid: int) -> list[int]:
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
            pids = [info.pid, *(_children(info.pid) if info.with_children else [])]
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


# --------------------------------------------------------------------------- figures


def percentiles(values: list[float]) -> dict[str, float | int]:
    """p50 / p90 / p99 / p99.9 / max in milliseconds (nearest rank)."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {
        "count": len(ordered),
        "p50": round(rank(0.50) * 1000, 1),
        "p90": round(rank(0.90) * 1000, 1),
        "p99": round(rank(0.99) * 1000, 1),
        "p99.9": round(rank(0.999) * 1000, 1),
        "max": round(ordered[-1] * 1000, 1),
    }


def analyse(
    config: LoadConfig,
    traces: list[OrderTrace],
    on_log: dict[str, OrderOnLog],
    positions: PositionSampler,
) -> dict[str, Any]:
    """Counts, errors by kind and latency percentiles of one run."""
    errors: Counter[str] = Counter()
    latency: dict[str, list[float]] = defaultdict(list)
    outcomes: Counter[str] = Counter()
    for trace in traces:
        if trace.error and trace.order_id is None:
            errors[trace.error] += 1
            continue
        assert trace.accepted_at is not None
        assert trace.order_id is not None
        latency["accepted"].append(trace.accepted_at - trace.due)
        if trace.error:
            errors[trace.error] += 1
        order = on_log.get(trace.order_id)
        if order is None or order.final is None:
            errors["not_final_on_log"] += 1
        else:
            outcomes[order.final] += 1
            t = order.times
            final_type = "OrderCompleted" if order.final == "completed" else "OrderFailed"
            latency["log_completed"].append(t[final_type] - trace.due)
            if "OrderSubmitted" in t:
                latency["log_append"].append(trace.accepted_at - t["OrderSubmitted"])
            for stage, (a, b) in {
                "routing": ("OrderSubmitted", "OrderRouted"),
                "build": ("OrderRouted", "TransactionBuilt"),
                "submit": ("TransactionBuilt", "TransactionSubmitted"),
                "execution": ("TransactionSubmitted", "OrderCompleted"),
            }.items():
                if a in t and b in t and "OrderRetrying" not in t:
                    latency[stage].append(t[b] - t[a])
            for kind, (partition, offset) in order.positions.items():
                projected = positions.projected_at(partition, offset)
                if projected is None:
                    errors["not_projected"] += kind in FINAL
                else:
                    latency["projection_lag"].append(projected - t[kind])
        if trace.watch:
            if "completed" in trace.socket:
                latency["socket_completed"].append(trace.socket["completed"] - trace.due)
            final_seen = any(s in trace.socket for s in ("completed", "failed"))
            expected = list(range(1, len(trace.socket_sequences) + 1))
            if not final_seen:  # with the close code the server gave, if it gave one
                reason = f" ({trace.socket_close_reason})" if trace.socket_close_reason else ""
                errors[f"ws_no_final_event_{trace.socket_close}{reason}"] += 1
            elif trace.socket_sequences != expected:
                errors["ws_sequence_gap"] += 1
            elif trace.socket_close != 1000:
                errors[f"ws_close_{trace.socket_close}"] += 1
    sent = len(traces)
    span = (traces[-1].due - traces[0].due) if len(traces) > 1 else 0.0
    accepted = sum(1 for t in traces if t.order_id)
    completed_times = sorted(
        on_log[t.order_id].times.get("OrderCompleted", 0)
        for t in traces
        if t.order_id in on_log and on_log[t.order_id].final == "completed"
    )
    completed_span = completed_times[-1] - completed_times[0] if len(completed_times) > 1 else 0
    return {
        "target_rate": config.rate,
        "duration_s": config.duration,
        "ramp_s": config.ramp,
        "sent": sent,
        "send_rate": round(sent / span, 1) if span else None,
        "accepted": accepted,
        "completed": outcomes["completed"],
        "failed": outcomes["failed"],
        "completion_rate": round(len(completed_times) / completed_span, 1)
        if completed_span
        else None,
        "watched": sum(1 for t in traces if t.watch and t.order_id),
        "errors": dict(errors),
        "error_count": sum(errors.values()),
        "latency_ms": {name: percentiles(values) for name, values in sorted(latency.items())},
    }


# --------------------------------------------------------------------------- the system


class Launched:
    """Kafka, PostgreSQL (unless named by the environment) and the engine's processes."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="oee-bench-"))
        self.broker: Any = None
        self.postgres: Any = None
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.settings: Settings | None = None

    def start_dependencies(self) -> Settings:
        from infra.kafka.launcher import KafkaBroker
        from infra.postgres.launcher import EmbeddedPostgres

        servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        database_url = os.environ.get("DATABASE_URL")
        if not servers:
            self.broker = KafkaBroker(self.tmp / "kafka", port=0, heap=self.args.kafka_heap)
            self.broker.start()
            servers = self.broker.bootstrap_servers
        if not database_url:
            self.postgres = EmbeddedPostgres(
                self.tmp / "postgres", free_port(), durable=not self.args.pg_no_fsync
            )
            self.postgres.start()
            database_url = self.postgres.url
        suffix = uuid.uuid4().hex[:8]
        self.settings = Settings(
            kafka_bootstrap_servers=servers,
            database_url=database_url,
            orders_topic=f"bench.orders.{suffix}",
            dead_letter_topic=f"bench.deadletter.{suffix}",
            orders_topic_partitions=self.args.partitions,
            consumer_group_prefix=f"bench-{suffix}",
            venue_latency=self.args.venue_latency,
            venue_failure_rate=self.args.failure_rate,
            api_port=free_port(),
            data_dir=self.tmp / "data",
        )
        from services.common.dependencies import prepare

        prepare(self.settings)  # migrations and topics, before any process starts
        return self.settings

    def start_processes(self) -> list[str]:
        from tests.e2e.system import settings_env

        assert self.settings is not None
        logs = self.tmp / "logs"
        logs.mkdir(exist_ok=True)
        base_env = os.environ | settings_env(self.settings)
        base_env |= {
            "OEE_AUTH": "disabled",
            "OEE_LOG_LEVEL": "WARNING",
            "OEE_ROUTER_MAX_IN_FLIGHT": str(self.args.router_max_in_flight),
        }
        urls: list[str] = []
        plan = [("projector", i) for i in range(self.args.projectors)]
        plan += [("router", i) for i in range(self.args.routers)]
        plan += [("api", i) for i in range(self.args.apis)]
        for name, i in plan:
            env = dict(base_env)
            if name == "api":
                port = self.settings.api_port if i == 0 else free_port()
                env["OEE_API_PORT"] = str(port)
                urls.append(f"http://127.0.0.1:{port}")
            key = f"{name}{i + 1}" if i else name
            with (logs / f"{key}.log").open("ab") as log:
                self.children[key] = subprocess.Popen(
                    [sys.executable, "-m", "services.cli", name],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                )
        return urls

    def processes(self) -> list[ProcessInfo]:
        found = [ProcessInfo(key, p.pid) for key, p in self.children.items()]
        if self.broker is not None and self.broker.pid:
            found.append(ProcessInfo("kafka", self.broker.pid))
        if self.postgres is not None and self.postgres._process is not None:
            found.append(ProcessInfo("postgres", self.postgres._process.pid, with_children=True))
        found.append(ProcessInfo("loadgen", os.getpid()))
        return found

    def logs_tail(self) -> str:
        return "\n".join(
            f"== {p.name}\n{p.read_text()[-2000:]}"
            for p in sorted((self.tmp / "logs").glob("*.log"))
        )

    def stop(self) -> None:
        for process in self.children.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.children.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()


async def wait_healthy(urls: list[str], timeout: float = 90) -> None:
    deadline = time.time() + timeout
    async with aiohttp.ClientSession() as session:
        for url in urls:
            while True:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(
                        f"{url}/health", timeout=aiohttp.ClientTimeout(total=2)
                    ) as r:
                        if r.status == 200:
                            break
                if time.time() > deadline:
                    raise RuntimeError(f"{url} not healthy after {timeout}s")
                await asyncio.sleep(0.3)


# --------------------------------------------------------------------------- one run


async def run_load(
    settings: Settings,
    base_urls: list[str],
    config: LoadConfig,
    processes: list[ProcessInfo] | None = None,
) -> dict[str, Any]:
    """One open-loop run against a running system; the report as a dict."""
    assert settings.kafka_bootstrap_servers
    assert settings.database_url
    partitions = settings.orders_topic_partitions
    starts = await end_offsets(settings.kafka_bootstrap_servers, settings.orders_topic, partitions)
    positions = PositionSampler(
        settings.database_url, settings.orders_topic, config.position_interval
    )
    lag = LagSampler(settings, positions)
    sampler = ProcessSampler(processes or [ProcessInfo("loadgen", os.getpid())])
    clients = Clients(base_urls, config)
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
        # The sampler polls PostgreSQL: there is no event to wait on.
        while not positions.caught_up(ends) and time.time() < sent_until + config.drain_timeout:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
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


def passes(report: dict[str, Any], args: argparse.Namespace) -> bool:
    """A find-max step holds when errors, p99 and the achieved rate are all within bounds."""
    sent = max(1, report["sent"])
    p99 = report["latency_ms"].get("log_completed", {}).get("p99", math.inf)
    rate_ok = (report["completion_rate"] or 0) >= 0.95 * report["target_rate"]
    return bool(
        report["error_count"] / sent <= args.max_error_rate and p99 <= args.max_p99_ms and rate_ok
    )


def print_report(report: dict[str, Any]) -> None:
    print(
        f"\nrate {report['target_rate']}/s for {report['duration_s']}s (ramp {report['ramp_s']}s):"
        f" sent {report['sent']} at {report['send_rate']}/s, accepted {report['accepted']},"
        f" completed {report['completed']}, failed {report['failed']},"
        f" completions {report['completion_rate']}/s, watched {report['watched']}"
    )
    print(f"errors: {report['errors'] or 'none'}")
    print(f"{'latency (ms)':<18}{'count':>8}{'p50':>9}{'p90':>9}{'p99':>9}{'p99.9':>9}{'max':>9}")
    for name, p in report["latency_ms"].items():
        if p.get("count"):
            print(
                f"{name:<18}{p['count']:>8}{p['p50']:>9}{p['p90']:>9}{p['p99']:>9}"
                f"{p['p99.9']:>9}{p['max']:>9}"
            )
    print(
        f"{'process':<12}{'peak RSS MB':>12}{'RSS start':>11}{'RSS end':>9}{'CPU %':>8}"
        f"{'CPU ms/order':>14}"
    )
    for name, p in sorted(report.get("processes", {}).items()):
        print(
            f"{name:<12}{p['peak_rss_mb']:>12}{p['rss_start_mb']:>11}{p['rss_end_mb']:>9}"
            f"{p['cpu_percent_mean']:>8}{p['cpu_ms_per_order'] or '-':>14}"
        )
    per_order = report.get("cpu_ms_per_order")
    if per_order:
        cores = os.cpu_count() or 1
        print(
            f"CPU per completed order, all processes: {per_order} ms; {cores} cores"
            f" could complete at most {cores * 1000 / per_order:.0f} orders/s"
        )
    print(f"consumer lag max (records): {report.get('consumer_lag_max')}")


async def main_async(args: argparse.Namespace, launched: Launched) -> dict[str, Any]:
    settings = launched.settings
    assert settings is not None
    urls = launched.start_processes()
    await wait_healthy(urls)
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
    result: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join(sys.argv),
        "venue_latency": args.venue_latency,
        "failure_rate": args.failure_rate,
        "topology": {"apis": args.apis, "routers": args.routers, "projectors": args.projectors},
    }
    if args.warmup > 0:
        await run_load(settings, urls, config(min(args.rate, 100), args.warmup, 0), processes)
    if not args.find_max:
        report = await run_load(
            settings, urls, config(args.rate, args.duration, args.ramp), processes
        )
        print_report(report)
        result["run"] = report
        return result
    steps: list[dict[str, Any]] = []
    rate, best = args.rate, None
    while rate <= args.max_rate:
        report = await run_load(settings, urls, config(rate, args.step_duration, 0), processes)
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


def machine() -> dict[str, Any]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "unknown",
    )  # fmt: skip
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(int(memory) / 1024 / 1024, 1),
        "python": sys.version.split()[0],
    }


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
    parser.add_argument("--venue-latency", choices=("realistic", "zero"), default="zero")
    parser.add_argument(
        "--failure-rate",
        type=float,
        default=0.0,
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
    parser.add_argument("--apis", type=int, default=1)
    parser.add_argument("--routers", type=int, default=1)
    parser.add_argument("--projectors", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--router-max-in-flight", type=int, default=2000)
    parser.add_argument("--kafka-heap", default="512m")
    parser.add_argument(
        "--pg-no-fsync", action="store_true", help="PostgreSQL without fsync (as the tests run it)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    args = parser.parse_args(argv)
    total = args.rate * (args.duration + args.ramp / 2)
    if not args.find_max and total > 1_000_000:
        parser.error("more than 1,000,000 orders: lower --rate or --duration")
    return args


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


def main(argv: list[str] | None = None) -> None:
    """Start the system, run the load, print and write the report, stop everything."""
    args = parse_args(argv)
    launched = Launched(args)
    result = run_launched(launched, lambda: main_async(args, launched))
    if args.json:
        args.json.write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        print(f"report written to {args.json}")


if __name__ == "__main__":
    main()
