"""The trigger engine on the real broker: recovery of N open orders, tick -> `triggered`, a mass
trigger.

Run: `.venv/bin/python -m bench.trigger_engine [--open N] [--few-ticks F] [--mass M]`
(starts Kafka and PostgreSQL of its own unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL name
them). It writes N + 3F + M resting orders' `OrderSubmitted` straight to a fresh order log
(no API: the figure is the engine's), then starts `TriggerEngine` in this process and
measures:

- recovery: from start to the book rebuilt (the engine's own `recovery_seconds`; the read
  model is empty here, so it folds the whole log) and the process's RSS growth;
- tick -> `triggered` through Kafka when few cross: F ticks, each crossing 3 limits, the
  latency being the triggered record's log time minus the tick's (both stamped by their
  producers on this host), p50 / p99;
- one tick crossing M stops: from the tick's log time to the last of the M `OrderTriggered`
  on the log; with `--execute` the chain node, projector, router and API run too (as
  processes, the read model then being the projector's) and the figure goes on to every
  one of the M executed (completed or failed in the read model).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from aiokafka import AIOKafkaProducer, TopicPartition

from bench.launcher import Launched, Topology
from bench.polling import eventually
from bench.triggers import rss_bytes
from schemas.codec import decode, encode
from schemas.envelope import Envelope, genesis_hash, record_hash
from schemas.events import OrderSubmitted, OrderType
from schemas.market import MarketTick, VenueTick, encode_market
from services.common.db import open_pool
from services.common.kafka import log_reader
from services.common.settings import Settings
from services.triggers.main import TriggerEngine

MID = Decimal(150)
FEW_PER_TICK = 3


def submitted(
    kind: OrderType, price: Decimal, now: datetime, amount: Decimal = Decimal(1)
) -> tuple[bytes, bytes]:
    """One resting order's `OrderSubmitted` record: (key, value)."""
    order_id = uuid.uuid4()
    prices = {"limit_price": price} if kind is OrderType.LIMIT else {"trigger_price": price}
    event = OrderSubmitted(
        token_in="SOL", token_out="USDC", amount=amount, slippage=Decimal("0.2"),
        order_type=kind, expires_at=now + timedelta(days=7), owner="bench", **prices,
    )  # fmt: skip
    envelope = Envelope.new(
        order_id=order_id, sequence=1, producer="api", prev_hash=genesis_hash(order_id),
        payload=event, occurred_at=now,
    )  # fmt: skip
    return str(order_id).encode(), encode(envelope)


def few_level(i: int) -> Decimal:
    """The i-th few-cross level: limits just above the mid, one tick apart."""
    return MID * Decimal("1.001") + Decimal(i) / 100


async def write_orders(
    settings: Settings, args: argparse.Namespace
) -> tuple[float, list[tuple[bytes, bytes, int, int]]]:
    """The orders on the log; the seconds it took and each (key, value, partition, offset)."""
    now = datetime.now(UTC)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=50,
        max_batch_size=1 << 20, acks=1,
    )  # fmt: skip
    await producer.start()
    began = time.perf_counter()
    try:
        pending = []
        done: list[Any] = []
        records: list[tuple[bytes, bytes]] = []
        for i in range(args.open):
            # Resting, crossed by nothing here: stops 1-40 % below the mid, limits above it
            # beyond the few-cross levels.
            offset = Decimal(1 + i % 3_900) / 10_000 + Decimal("0.01")
            if i % 2:
                key, value = submitted(OrderType.STOP, MID * (1 - offset), now)
            else:
                key, value = submitted(OrderType.LIMIT, MID * (1 + offset + Decimal("0.05")), now)
            records.append((key, value))
            pending.append(await producer.send(settings.orders_topic, value, key=key))
            if len(pending) >= 20_000:
                done += await asyncio.gather(*pending)
                pending.clear()
        for i in range(args.few_ticks):
            for _ in range(FEW_PER_TICK):
                key, value = submitted(OrderType.LIMIT, few_level(i), now)
                records.append((key, value))
                pending.append(await producer.send(settings.orders_topic, value, key=key))
        for _ in range(args.mass):
            # Small: with --execute the router swaps each on the chain, from one wallet.
            key, value = submitted(OrderType.STOP, MID * Decimal("0.995"), now, Decimal("0.01"))
            records.append((key, value))
            pending.append(await producer.send(settings.orders_topic, value, key=key))
        done += await asyncio.gather(*pending)
    finally:
        await producer.stop()
    written = [(k, v, m.partition, m.offset) for (k, v), m in zip(records, done, strict=True)]
    return time.perf_counter() - began, written


async def project_as_caught_up(
    settings: Settings, written: list[tuple[bytes, bytes, int, int]]
) -> float:
    """The read model a projector caught up with this log would hold (rows, each order's
    event with its hash and position, the positions), bulk-copied; the seconds it took.
    Only the columns the engine's recovery reads are filled (payloads left empty)."""
    assert settings.database_url is not None
    began = time.perf_counter()
    ends: dict[int, int] = {}
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        async with conn.cursor() as cursor:
            async with cursor.copy(
                "COPY read_model.orders (id, token_in, token_out, amount, slippage, status,"
                " last_sequence, created_at, updated_at, order_type, limit_price,"
                " trigger_price, expires_at) FROM STDIN"
            ) as copy:
                for _, value, _, _ in written:
                    envelope = decode(value)
                    event = envelope.payload
                    assert isinstance(event, OrderSubmitted)
                    await copy.write_row((
                        envelope.order_id, event.token_in, event.token_out, event.amount,
                        event.slippage, "open", 1, envelope.occurred_at, envelope.occurred_at,
                        event.order_type.value, event.limit_price, event.trigger_price,
                        event.expires_at,
                    ))  # fmt: skip
            async with cursor.copy(
                "COPY read_model.order_events (order_id, sequence, event_id, type, version,"
                " status, occurred_at, producer, prev_hash, hash, payload, log_partition,"
                " log_offset) FROM STDIN"
            ) as copy:
                for key, value, partition, offset in written:
                    ends[partition] = max(ends.get(partition, 0), offset + 1)
                    await copy.write_row((
                        key.decode(), 1, uuid.uuid4(), "OrderSubmitted", 2, "open",
                        datetime.now(UTC), "api", "-", record_hash(value), "{}", partition,
                        offset,
                    ))  # fmt: skip
            for partition, end in ends.items():
                await cursor.execute(
                    "INSERT INTO read_model.log_positions (topic, partition, next_offset)"
                    " VALUES (%s, %s, %s)",
                    (settings.orders_topic, partition, end),
                )
        await conn.commit()
    return time.perf_counter() - began


class Triggered:
    """Reads `OrderTriggered` records off the log as they land: (log time s, order id)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.kafka_bootstrap_servers is not None
        self.settings = settings
        self.consumer = log_reader(settings.kafka_bootstrap_servers, client_id="bench-triggered")
        self.times: list[float] = []  # the first OrderTriggered record of each order
        self.seen: set[bytes] = set()
        self.changed = asyncio.Event()

    async def start(self) -> None:
        await self.consumer.start()
        topic = self.settings.orders_topic
        tps = [TopicPartition(topic, p) for p in range(self.settings.orders_topic_partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:
            await self.consumer.position(tp)  # resolve the end now, before any tick

    async def run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=100, max_records=10_000)
            for batch in batches.values():
                for record in batch:
                    if record.key in self.seen:
                        continue  # a retried append's duplicate: readers drop it too
                    if orjson.loads(record.value or b"{}").get("type") == "OrderTriggered":
                        self.seen.add(record.key or b"")
                        self.times.append(record.timestamp / 1000)
            if batches:
                self.changed.set()

    async def count_reaches(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.times) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - time.monotonic()))


async def send_tick(
    producer: AIOKafkaProducer, settings: Settings, sequence: int, mid: Decimal
) -> float:
    """A SOL-USDC tick at `mid`; its log time (s)."""
    tick = MarketTick(
        pair="SOL-USDC", base="SOL", quote="USDC", slot=10_000 + sequence,
        at=datetime.now(UTC), reference=mid,
        venues=(VenueTick(venue="RAYDIUM", mid=mid, depth_bid=Decimal(1), depth_ask=Decimal(1)),),
    )  # fmt: skip
    metadata = await producer.send_and_wait(
        settings.market_ticks_topic, encode_market(sequence, tick), key=b"SOL-USDC"
    )
    return float(metadata.timestamp) / 1000


async def finals(settings: Settings) -> tuple[int, int]:
    """How many orders the read model shows completed, and failed."""
    assert settings.database_url is not None
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'completed'),"
            " count(*) FILTER (WHERE status = 'failed') FROM read_model.orders"
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def wait_projected(settings: Settings, total: int) -> None:
    """Until the projector has every order in the read model (so a DELETE or GET sees it)."""
    assert settings.database_url is not None
    url = settings.database_url

    async def projected() -> bool:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            row = await (await conn.execute("SELECT count(*) FROM read_model.orders")).fetchone()
        return row is not None and row[0] >= total

    await eventually(projected, "every order projected", timeout=600, interval=0.5)


async def measure(
    settings: Settings, args: argparse.Namespace, launched: Launched | None = None
) -> None:
    total = args.open + FEW_PER_TICK * args.few_ticks + args.mass
    wrote, written = await write_orders(settings, args)
    print(f"log: {total:,} OrderSubmitted written in {wrote:.1f}s")
    if args.execute:
        assert launched is not None
        urls = await launched.start_processes()  # the chain, projector, router and API
        await launched.wait_healthy(urls)
        await wait_projected(settings, total)
    elif not args.from_log:
        copied = await project_as_caught_up(settings, written)
        print(f"read model: {total:,} rows as a caught-up projector's, copied in {copied:.1f}s")
    del written
    assert settings.database_url is not None
    pool = await open_pool(settings.database_url, max_size=2)
    before = rss_bytes()
    engine = TriggerEngine(settings, pool)
    stop = asyncio.Event()
    await engine.start()
    task = asyncio.create_task(engine.run(stop))
    triggered = Triggered(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    try:
        await asyncio.wait_for(engine.recovered.wait(), 3_600)
        grown = rss_bytes() - before
        print(f"recovery: {engine.core.resting:,} resting orders in"
              f" {engine.recovery_seconds:.1f}s; RSS +{grown / 2**20:.0f} MB"
              f" ({grown / max(1, engine.core.resting):.0f} bytes an order)")  # fmt: skip
        await producer.start()
        await triggered.start()
        reader = asyncio.create_task(triggered.run())
        await send_tick(producer, settings, 1, MID)  # crosses nothing: the engine's first price
        await asyncio.sleep(1)
        latencies = []
        for i in range(args.few_ticks):
            at = await send_tick(producer, settings, 2 + i, few_level(i))
            await triggered.count_reaches(FEW_PER_TICK * (i + 1), 30)
            latencies.append(triggered.times[-1] - at)
        if len(latencies) >= 2:
            q = statistics.quantiles(latencies, n=100)
            print(f"tick -> triggered on the log ({FEW_PER_TICK} crossed a tick):"
                  f" p50 {q[49] * 1e3:.1f} ms, p99 {q[98] * 1e3:.1f} ms,"
                  f" max {max(latencies) * 1e3:.1f} ms over {len(latencies)} ticks")  # fmt: skip
        if args.mass:
            already = len(triggered.times)
            at = await send_tick(producer, settings, 10_000, MID * Decimal("0.993"))
            await triggered.count_reaches(already + args.mass, 600)
            print(f"mass: one tick crossed {args.mass:,} stops: all {args.mass:,} OrderTriggered"
                  f" on the log {max(triggered.times) - at:.2f}s after the tick")  # fmt: skip
            if args.execute:

                async def all_final() -> tuple[int, int] | None:
                    done = await finals(settings)
                    return done if sum(done) >= args.mass else None

                done = await eventually(all_final, "all executed", timeout=1_800, interval=1)
                print(f"  ... all {args.mass:,} executed (router, chain) {time.time() - at:.1f}s"
                      f" after the tick: {done[0]:,} completed, {done[1]:,} failed")  # fmt: skip
        reader.cancel()
    finally:
        stop.set()
        await task
        await engine.stop()
        await triggered.consumer.stop()
        await producer.stop()
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--open", type=int, default=100_000)
    parser.add_argument("--few-ticks", type=int, default=200)
    parser.add_argument("--mass", type=int, default=10_000)
    parser.add_argument(
        "--from-log", action="store_true", help="an empty read model: fold the whole log"
    )
    parser.add_argument(
        "--execute",
        action="store_true",
        help="run the chain, projector, router and API too, and time the mass's execution",
    )
    args = parser.parse_args()
    launched = Launched(Topology(partitions=12, router_max_in_flight=2000))
    try:
        settings = launched.start_dependencies().model_copy(
            update={"market_ticks_topic": f"bench.ticks.{uuid.uuid4().hex[:8]}"}
        )
        launched.settings = settings  # the processes' environment names the ticks topic
        asyncio.run(measure(settings, args, launched))
    finally:
        launched.stop()


if __name__ == "__main__":
    main()
