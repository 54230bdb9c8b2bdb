"""What the order log says of a run: each order's events, read back after the clients are done."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.settings import Settings

FINAL = {"OrderCompleted": "completed", "OrderFailed": "failed"}


@dataclass
class OrderOnLog:
    times: dict[str, float] = field(default_factory=dict)  # event type -> occurred_at (epoch)
    final: str | None = None
    failure: str | None = None  # OrderFailed's code
    failure_error: str | None = None  # and its words
    retries: dict[int, str] = field(default_factory=dict)  # attempt -> OrderRetrying's code
    positions: dict[str, tuple[int, int]] = field(
        default_factory=dict
    )  # type -> (partition, offset)


def epoch(text: str) -> float:
    """An ISO-8601 timestamp (`Z` or an offset) as seconds since the epoch."""
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
                    payload = event["payload"]
                    if kind == "OrderRetrying":
                        seen.retries.setdefault(payload["attempt"], payload["code"])
                    if kind == "OrderFailed" and seen.failure is None:
                        seen.failure, seen.failure_error = payload["code"], payload["error"]
                    if kind in seen.times:
                        continue  # a re-emitted duplicate: keep the first
                    seen.times[kind] = epoch(event["occurred_at"])
                    seen.positions[kind] = (record.partition, record.offset)
                    if kind in FINAL:
                        seen.final = FINAL[kind]
                        unfinished.discard(order_id)
    finally:
        await consumer.stop()
    return dict(found)
