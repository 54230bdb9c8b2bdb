"""The broker's CPU per record as produce and fetch requests carry more or fewer records.

Run: `.venv/bin/python -m bench.broker_requests [--rate 900] [--seconds 10] [--readers 3]`.
Starts a broker of its own (its CPU is read from /proc, so it must be a child), warms it
with one shorter unmeasured pass of every case, then writes `--rate` records a second
(700 bytes, as an order event, acks=all, idempotent) to a 12-partition topic for
`--seconds`, read live by `--readers` consumers of no group, once per case:

- `produce linger N`: no readers, the producer's linger N ms.
- `readers: aiokafka defaults`: each fetch answered as soon as one byte is there.
- `readers: batching while busy`: as the projector reads
  (`services.common.kafka.batch_fetches_while_busy`).
- `readers: fixed 64 KiB / 10 ms`: the fixed setting tried before (an idle reader then polls
  100 times a second).

Prints, per case, the broker's CPU in ms per 1,000 records (its idle CPU over the same time
subtracted) and the produce and fetch requests sent.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from infra.kafka.launcher import KafkaBroker
from services.common.kafka import batch_fetches_while_busy

PARTITIONS = 12
RECORD = b"x" * 700
TICK = 100  # clock ticks a second in /proc/<pid>/stat


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def count_fetches(reader: AIOKafkaConsumer, counts: dict[str, int]) -> None:
    """Count the fetch requests a started reader sends into `counts`."""
    fetcher = reader._fetcher
    fetch = fetcher._proc_fetch_request

    async def counted(assignment: Any, node_id: int, request: Any) -> Any:
        counts["fetch"] += 1
        return await fetch(assignment, node_id, request)

    fetcher._proc_fetch_request = counted


@dataclass(frozen=True)
class Case:
    name: str
    readers: int
    linger_ms: int = 0
    batching: bool = False
    reader_options: tuple[tuple[str, int], ...] = ()


async def run_case(servers: str, pid: int, case: Case, rate: int, seconds: float) -> dict[str, Any]:
    topic = f"bench.broker-requests.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    counts = {"fetch": 0, "produce": 0}
    producer = AIOKafkaProducer(
        bootstrap_servers=servers, acks="all", enable_idempotence=True, linger_ms=case.linger_ms
    )
    await producer.start()
    send = producer.client.send

    async def counted_send(node_id: int, request: Any, **kwargs: Any) -> Any:
        if type(request).__name__.startswith("ProduceRequest"):
            counts["produce"] += 1
        return await send(node_id, request, **kwargs)

    producer.client.send = counted_send
    readers = [
        AIOKafkaConsumer(
            topic,
            bootstrap_servers=servers,
            group_id=None,
            isolation_level="read_committed",
            **dict(case.reader_options),
        )
        for _ in range(case.readers)
    ]
    received = 0
    total = int(rate * seconds)
    all_read = asyncio.Event()

    async def read(reader: AIOKafkaConsumer) -> None:
        nonlocal received
        while True:
            batches = await reader.getmany(timeout_ms=1000)
            received += sum(len(records) for records in batches.values())
            if received >= total * case.readers:
                all_read.set()

    for reader in readers:
        await reader.start()
        if case.batching:
            batch_fetches_while_busy(reader)
        count_fetches(reader, counts)
    tasks = [asyncio.create_task(read(reader)) for reader in readers]
    try:
        await asyncio.sleep(1)  # the readers' first fetches are in flight
        counts.update(fetch=0, produce=0)
        start_cpu, start = cpu_seconds(pid), time.monotonic()
        pending = []
        for k in range(total):
            delay = start + k / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(await producer.send(topic, RECORD, key=str(k).encode()))
        await asyncio.gather(*pending)
        if case.readers:
            await asyncio.wait_for(all_read.wait(), 10)
        elapsed = time.monotonic() - start
        used = cpu_seconds(pid) - start_cpu
    finally:
        for task in tasks:
            task.cancel()
        for reader in readers:
            await reader.stop()
        await producer.stop()
    return {
        "case": case.name,
        "records": total,
        "seconds": elapsed,
        "cpu": used,
        "read": received,
        **counts,
    }


async def idle_cpu_per_second(pid: int, seconds: float = 10) -> float:
    start = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - start) / seconds


async def measure(servers: str, pid: int, rate: int, seconds: float, readers: int) -> None:
    cases = [
        Case("produce linger 0", 0, linger_ms=0),
        Case("produce linger 2 (the API's)", 0, linger_ms=2),
        Case("produce linger 5 (the router's)", 0, linger_ms=5),
        Case("readers: aiokafka defaults", readers),
        Case("readers: batching while busy", readers, batching=True),
        Case(
            "readers: fixed 64 KiB / 10 ms",
            readers,
            reader_options=(("fetch_min_bytes", 64 * 1024), ("fetch_max_wait_ms", 10)),
        ),
    ]
    for case in cases:  # unmeasured: the broker's JIT compiles the paths these take
        await run_case(servers, pid, case, rate, min(seconds, 5))
    idle = await idle_cpu_per_second(pid)
    print(f"broker idle: {idle * 1000:.0f} ms of CPU a second; {rate} records/s for {seconds} s")
    print(f"{'case':36} {'CPU ms/1k records':>18} {'produce req':>12} {'fetch req':>10}")
    for case in cases:
        result = await run_case(servers, pid, case, rate, seconds)
        busy = result["cpu"] - idle * result["seconds"]
        per_k = busy * 1000 / result["records"] * 1000
        print(f"{result['case']:36} {per_k:18.0f} {result['produce']:12d} {result['fetch']:10d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=900, help="records a second")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--readers", type=int, default=3)
    args = parser.parse_args()
    # A new topic's first fetches meet "not leader" until its leaders are known: retried.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="oee-broker-requests-") as tmp:
        broker = KafkaBroker(Path(tmp) / "kafka", port=0, heap="512m", log_level="WARN")
        broker.start()
        try:
            assert broker.pid is not None
            asyncio.run(
                measure(broker.bootstrap_servers, broker.pid, args.rate, args.seconds, args.readers)
            )
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
