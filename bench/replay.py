"""Write 1,000,000 valid order events to a fresh topic, then time `oee replay rebuild` over it.

Run: `.venv/bin/python -m bench.replay [--events N] [--batch-size B] [--workers W]`. Uses
KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set, else starts a broker and PostgreSQL
in a temp dir. Orders follow realistic lifecycles of 5 to 7 events (completed,
retried then completed, retried then failed), hash-chained as the router writes
them, a few thousand in flight at once so an order's events are spread over the
log. Prints the rebuild's events/s and the process's RSS sampled while rebuilding.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

from schemas import codec
from schemas.envelope import Envelope, event_id_for, genesis_hash, record_hash
from schemas.events import (
    FailureCode,
    OrderCompleted,
    OrderEvent,
    OrderFailed,
    OrderRetrying,
    OrderRouted,
    OrderSubmitted,
    RouteLeg,
    RoutePlan,
    TransactionBuilt,
    TransactionSubmitted,
    VenueQuote,
)
from services.common.db import migrate
from services.common.kafka import TopicSpec, ensure_topics
from services.common.settings import Settings
from services.replay.rebuild import rebuild

PARTITIONS = 12
IN_FLIGHT = 3000  # orders whose events interleave on the log
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
PAGE = os.sysconf("SC_PAGE_SIZE")


def _plan(attempt: int) -> OrderRouted:
    legs = (
        RouteLeg(venue="METEORA", token_in="SOL", token_out="USDC", amount_in=Decimal("2.4"),
                 amount_out=Decimal("360.12"), fee=Decimal("0.0024"), share=Decimal("0.6")),
        RouteLeg(venue="RAYDIUM", token_in="SOL", token_out="USDC", amount_in=Decimal("1.6"),
                 amount_out=Decimal("239.70"), fee=Decimal("0.004"), share=Decimal("0.4")),
    )  # fmt: skip
    quotes = (
        VenueQuote(venue="METEORA", amount_out=Decimal("599.10"), fee=Decimal("0.004"),
                   price_impact=Decimal("0.0011")),
        VenueQuote(venue="RAYDIUM", amount_out=Decimal("598.85"), fee=Decimal("0.01"),
                   price_impact=Decimal("0.0016")),
    )  # fmt: skip
    plan = RoutePlan(
        kind="split", legs=legs, amount_out=Decimal("599.82"), min_amount_out=Decimal("596.82"),
        price_impact=Decimal("0.0009"), split_improvement_bps=Decimal("12.0"),
        market_slot=1042, quoted_at=1_767_600_000.5,
    )  # fmt: skip
    return OrderRouted(
        attempt=attempt, quotes=quotes, plan=plan,
        reason="split 60/40 beats METEORA alone by 12.0 bps",
    )  # fmt: skip


def _lifecycles() -> list[list[OrderEvent]]:
    """Three shapes: completed (5 events), retried then completed (7), retried then failed (6)."""
    submitted = OrderSubmitted(
        token_in="SOL", token_out="USDC", amount=Decimal(4), slippage=Decimal("0.005")
    )
    tx = "5" * 88
    built = TransactionBuilt(attempt=1, min_amount_out=Decimal("596.82"))
    sent = TransactionSubmitted(attempt=1, tx_hash=tx)
    done = OrderCompleted(
        tx_hash=tx, selected_dex="METEORA+RAYDIUM", amount_in=Decimal(4),
        amount_out=Decimal("599.5"), executed_price=Decimal("149.875"), fee=Decimal("0.0064"),
    )  # fmt: skip
    retry = OrderRetrying(
        attempt=1, code=FailureCode.QUOTE_EXPIRED, error="quote older than 2s",
        delay_seconds=Decimal(2),
    )  # fmt: skip
    failed = OrderFailed(
        code=FailureCode.SLIPPAGE_EXCEEDED, error="received 590 < 596.82", retryable=False,
        attempts=2,
    )  # fmt: skip
    built2 = TransactionBuilt(attempt=2, min_amount_out=Decimal("596.82"))
    return [
        [submitted, _plan(1), built, sent, done],
        [submitted, _plan(1), retry, _plan(2), built2, sent, done],
        [submitted, _plan(1), retry, _plan(2), built2, failed],
    ]


class Generator:
    """Valid, hash-chained events from templates: one encode per shape, then field swaps."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        order_id = uuid.UUID(int=0)
        self.templates: list[list[dict[str, Any]]] = [
            [
                orjson.loads(
                    codec.encode(
                        Envelope.new(
                            order_id=order_id,
                            sequence=n,
                            producer="oee-router" if n > 1 else "oee-api",
                            prev_hash="0" * 64,
                            payload=payload,
                            occurred_at=T0,
                        )
                    )
                )
                for n, payload in enumerate(shape, start=1)
            ]
            for shape in _lifecycles()
        ]

    def events(self, count: int) -> Iterator[tuple[bytes, bytes, int]]:
        """(key, value, timestamp ms) in log order, `count` of them, orders interleaved."""
        emitted = 0
        clock = T0
        while emitted < count:
            window = []
            for _ in range(IN_FLIGHT):
                shape = self.templates[self.rng.choices((0, 1, 2), (60, 25, 15))[0]]
                window.append((uuid.UUID(int=self.rng.getrandbits(128), version=4), shape))
            chains = {order_id: genesis_hash(order_id) for order_id, _ in window}
            for step in range(7):
                for order_id, shape in window:
                    if step >= len(shape) or emitted >= count:
                        continue
                    clock += timedelta(microseconds=300)
                    template = shape[step]
                    event = dict(template)
                    event["order_id"] = str(order_id)
                    event["event_id"] = str(event_id_for(order_id, step + 1))
                    event["prev_hash"] = chains[order_id]
                    event["occurred_at"] = clock.isoformat().replace("+00:00", "Z")
                    if "tx_hash" in template["payload"]:
                        event["payload"] = {**template["payload"], "tx_hash": order_id.hex * 2
                                            + order_id.hex[:24]}  # fmt: skip
                    value = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
                    chains[order_id] = record_hash(value)
                    emitted += 1
                    yield str(order_id).encode(), value, int(clock.timestamp() * 1000)


async def produce(servers: str, topic: str, count: int) -> float:
    """Write `count` events fast: hand-built batches per partition, many in flight."""
    producer = AIOKafkaProducer(
        bootstrap_servers=servers, acks=1, linger_ms=20, max_batch_size=1024 * 1024,
        max_request_size=4 * 1024 * 1024, request_timeout_ms=60_000,
    )  # fmt: skip
    await producer.start()
    started = time.perf_counter()
    try:
        batches = {p: producer.create_batch() for p in range(PARTITIONS)}
        in_flight: list[asyncio.Future[Any]] = []
        for key, value, timestamp in Generator(seed=7).events(count):
            partition = (murmur2(key) & 0x7FFFFFFF) % PARTITIONS  # Kafka's default partitioner
            if batches[partition].append(key=key, value=value, timestamp=timestamp) is None:
                in_flight.append(
                    await producer.send_batch(batches[partition], topic, partition=partition)
                )
                batches[partition] = producer.create_batch()
                batches[partition].append(key=key, value=value, timestamp=timestamp)
                if len(in_flight) >= 64:
                    await asyncio.gather(*in_flight)
                    in_flight.clear()
        for partition, batch in batches.items():
            if batch.record_count():
                in_flight.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*in_flight)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def _descendants() -> dict[int, tuple[list[str], bytes]]:
    """Every process below this one: pid -> (its /proc stat fields after the name, cmdline)."""
    stats: dict[int, list[str]] = {}
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            stats[int(entry)] = fields
            parents[int(entry)] = int(fields[1])
    below = {os.getpid()}
    grew = True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in below} - below
        below |= found
        grew = bool(found)
    below.discard(os.getpid())
    found_below: dict[int, tuple[list[str], bytes]] = {}
    for pid in below:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            found_below[pid] = (stats[pid], cmdline.read())
    return found_below


def _is_worker(cmdline: bytes) -> bool:
    return b"multiprocessing.spawn" in cmdline  # a rebuild worker (not the resource tracker)


def servers_cpu_seconds() -> float:
    """CPU time used so far by the broker and PostgreSQL (with its backends) this script
    started: the server side of the rebuild's cost. utime + stime, plus cutime + cstime
    (a backend that has exited counts in its postmaster's figures once reaped)."""
    ticks = sum(
        sum(int(tick) for tick in fields[11:15])
        for fields, cmdline in _descendants().values()
        if not _is_worker(cmdline)
    )
    return ticks / os.sysconf("SC_CLK_TCK")


def rebuild_cpu_seconds() -> float:
    """CPU time of this process and of the rebuild workers it has reaped."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def rss_mib() -> tuple[float, int]:
    """RSS of this process plus its rebuild workers, and how many workers there are."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    workers = [fields for fields, cmdline in _descendants().values() if _is_worker(cmdline)]
    pages += sum(int(fields[21]) for fields in workers)  # rss, in pages
    return pages * PAGE / 2**20, len(workers)


async def run(servers: str, url: str, events: int, batch_size: int, workers: int) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic = f"bench.replay.{suffix}"
    settings = Settings(
        kafka_bootstrap_servers=servers, database_url=url, orders_topic=topic,
        orders_topic_partitions=PARTITIONS,
    )  # fmt: skip
    await asyncio.to_thread(migrate, url)
    await ensure_topics(servers, [TopicSpec(topic, PARTITIONS, {"retention.ms": "-1"})])
    print(f"writing {events:,} events to {topic} ({PARTITIONS} partitions) ...", flush=True)
    seconds = await produce(servers, topic, events)
    print(f"  written in {seconds:.1f}s ({events / seconds:,.0f} events/s)", flush=True)

    samples: list[tuple[int, float]] = []
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] >= 1.0 or done == total:
            last[0] = now
            rss, running = rss_mib()
            samples.append((done, rss))
            print(f"  {done:>9,}/{total:,}  RSS {rss:6.1f} MiB ({running} workers)", flush=True)

    schema = f"read_model_bench_{suffix}"
    print(f"rebuilding into {schema} ...", flush=True)
    rss_before, _ = rss_mib()
    cpu_before = rebuild_cpu_seconds()
    servers_before = servers_cpu_seconds()
    result = await rebuild(
        settings, into=schema, batch_size=batch_size, on_progress=progress, workers=workers
    )
    report = result.report
    cpu = rebuild_cpu_seconds() - cpu_before
    servers_cpu = servers_cpu_seconds() - servers_before
    peak = max(rss for _, rss in samples)
    quarter = [rss for done, rss in samples if done <= events // 4][-1:] or [rss_before]
    print(
        f"\nrebuild: {report.records:,} records, {report.events:,} events applied,"
        f" {report.rejected} rejected, chain breaks {report.chain_breaks},"
        f" {report.seconds:.1f}s, {report.records_per_second:,.0f} events/s"
    )
    # CPU per event says what the rebuild costs even when other work shares the cores.
    per_event = 1e6 / max(report.records, 1)
    print(
        f"CPU of the rebuilding processes ({workers} worker(s) and this one): {cpu:.1f}s,"
        f" {cpu * per_event:.1f} µs per event;"
        f" of the broker and PostgreSQL this script started: {servers_cpu:.1f}s,"
        f" {servers_cpu * per_event:.1f} µs per event (load average {os.getloadavg()[0]:.1f})"
    )
    own_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_max = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"RSS of this process and its workers: {rss_before:.0f} MiB before, {quarter[0]:.0f} MiB"
        f" at 25%, {peak:.0f} MiB peak while rebuilding, {samples[-1][1]:.0f} MiB at the end"
        f" (peak of this process {own_max:.0f} MiB, of the largest worker {worker_max:.0f} MiB)"
    )
    from psycopg import AsyncConnection

    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


@contextlib.contextmanager
def dependencies() -> Iterator[tuple[str, str]]:
    """The configured broker and database, or our own in a temp dir."""
    servers, url = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("DATABASE_URL")
    with contextlib.ExitStack() as stack:
        if not servers or not url:
            from infra.kafka.launcher import KafkaBroker, free_port
            from infra.postgres.launcher import EmbeddedPostgres

            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="oee-bench-")))
            if not servers:
                broker = KafkaBroker(tmp / "kafka", port=0, heap="1g").start()
                stack.callback(broker.stop)
                servers = broker.bootstrap_servers
            if not url:
                server = EmbeddedPostgres(tmp / "pg" / "data", free_port(), durable=False).start()
                stack.callback(server.stop)
                url = server.url
        yield servers, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with dependencies() as (servers, url):
        asyncio.run(
            asyncio.wait_for(run(servers, url, args.events, args.batch_size, args.workers), 1800)
        )


if __name__ == "__main__":
    main()
