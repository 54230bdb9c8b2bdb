"""Composition root of the router: a faust-streaming app wired to the venues and the chain."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from typing import Any

import faust
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from schemas.codec import encode
from schemas.envelope import Envelope, record_hash
from schemas.events import OrderEvent
from services.chain.client import SimulatedRpc
from services.chain.ledger import Ledger
from services.common.db import migrate, open_pool
from services.common.kafka import (
    DeadLetter,
    RenewingProducer,
    TopicCheck,
    ensure_topics,
    send_to_dead_letter,
    topic_specs,
)
from services.common.logging import configure_logging
from services.common.metrics import start_metrics_server
from services.common.settings import Settings
from services.domain.order import OrderState, evolve
from services.router import metrics
from services.router.delivery import BatchDeliveringApp
from services.router.execution import ExecutionPolicy, OrderExecution
from services.router.worker import OrderRouter
from services.venues.adapters import SimulatedVenue, SnapshotCache
from services.venues.market import Market
from services.venues.pool import Venue

log = logging.getLogger(__name__)
QUOTE_LATENCY = {Venue.RAYDIUM: (0.05, 0.15), Venue.METEORA: (0.08, 0.2)}
CONFIRM_LATENCY = (2.0, 3.0)
SHUTDOWN_GRACE_SECONDS = 10.0
# A router that owns nothing while partitions go unowned this long restarts to rejoin
# (a last resort: the metadata refresh below normally makes it rejoin within seconds).
ORPHAN_AFTER_SECONDS = 30.0
METADATA_MAX_AGE_MS = 5_000


class RouterRuntime:
    """Connections the agent needs, opened once when the worker starts."""

    def __init__(self, settings: Settings) -> None:
        assert settings.kafka_bootstrap_servers is not None
        assert settings.database_url is not None
        self.settings = settings
        self.servers = settings.kafka_bootstrap_servers
        self.producer_name = f"router:{socket.gethostname()}:{os.getpid()}"
        self.db: AsyncConnectionPool | None = None
        # aiokafka clients bind to the running loop, so they are made in start().
        self.producer: RenewingProducer | None = None
        self.router: OrderRouter | None = None
        self._started = asyncio.Lock()

    async def start(self) -> OrderRouter:
        async with self._started:
            if self.router is not None:
                return self.router
            self.db = await open_pool(str(self.settings.database_url), max_size=8)
            # Each order appends four events one after another; a 5 ms linger lets the
            # events of concurrent orders share produce requests (profiled: one request per
            # event was an eighth of the router's CPU at 200 orders/s).
            self.producer = RenewingProducer(self.servers, client_id="oee-router", linger_ms=5)
            await self.producer.start()
            ledger = Ledger(self.db, Market(seed=self.settings.market_seed))
            await ledger.genesis()
            realistic = self.settings.venue_latency == "realistic"
            cache = SnapshotCache(ledger.snapshot, max_age=0.1)
            venues = [
                SimulatedVenue(
                    v,
                    cache,
                    seed=self.settings.market_seed,
                    latency=QUOTE_LATENCY[v] if realistic else (0, 0),
                )
                for v in Venue
            ]
            chain = SimulatedRpc(
                ledger,
                seed=self.settings.market_seed,
                failure_rate=self.settings.venue_failure_rate,
                confirm_latency=CONFIRM_LATENCY if realistic else (0, 0),
            )
            policy = ExecutionPolicy(
                retry_delays=self.settings.retry_delays_seconds,
                quote_ttl_seconds=self.settings.quote_ttl_seconds,
                split_threshold_bps=self.settings.split_threshold_bps,
                chain_seed=self.settings.market_seed,
            )
            execution = OrderExecution(policy, venues, chain, self.emit)
            self.router = OrderRouter(
                execution.run, self.dead_letter, self.settings.router_max_in_flight
            )
            return self.router

    async def emit(self, state: OrderState, payload: OrderEvent) -> OrderState:
        """Append the order's next event; return once it is durably on the log."""
        envelope = Envelope.new(
            order_id=state.order_id,
            sequence=state.sequence + 1,
            producer=self.producer_name,
            prev_hash=state.last_hash,
            payload=payload,
        )
        value = encode(envelope)
        assert self.producer is not None
        delay = 0.2
        while True:
            try:
                await self.producer.send_and_wait(
                    self.settings.orders_topic, value=value, key=str(state.order_id).encode()
                )
                break
            except KafkaError as exc:
                log.warning(
                    "Kafka unavailable (%s); order %s waits %.1fs", exc, state.order_id, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        metrics.record(state, envelope)
        return evolve(state, envelope, record_hash(value))

    async def dead_letter(
        self, partition: int, offset: int, key: bytes | None, value: bytes | None, reason: str
    ) -> None:
        assert self.producer is not None
        letter = DeadLetter(
            self.settings.orders_topic, partition, offset, reason, self.settings.router_group
        )
        await send_to_dead_letter(
            self.producer, self.settings.dead_letter_topic, letter, key, value
        )

    async def take_partitions(self, partitions: list[int]) -> None:
        """Catch each newly assigned partition up from its resume position, then let it go live."""
        router = await self.start()
        assert self.db is not None
        topic = self.settings.orders_topic
        tps = [TopicPartition(topic, p) for p in partitions]
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.servers,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await reader.start()
        try:
            ends = await reader.end_offsets(tps)
            starts = await self._resume_positions(partitions)
            reader.assign(tps)
            for tp in tps:
                start = starts.get(tp.partition, 0)
                router.begin_catch_up(tp.partition, start, ends[tp])
                reader.seek(tp, start)
            behind = {tp for tp in tps if starts.get(tp.partition, 0) < ends[tp]}
            for tp in set(tps) - behind:
                await router.finish_catch_up(tp.partition)
            while behind:
                batches = await reader.getmany(*behind, timeout_ms=500)
                for tp, messages in batches.items():
                    for message in messages:
                        if message.offset < ends[tp]:
                            await router.fold(
                                tp.partition, message.offset, message.key, message.value
                            )
                for tp in list(behind):
                    if await reader.position(tp) >= ends[tp]:
                        behind.discard(tp)
                        await router.finish_catch_up(tp.partition)
        finally:
            await reader.stop()

    async def _resume_positions(self, partitions: list[int]) -> dict[int, int]:
        """Stored resume positions; while PostgreSQL is down the partitions wait for them."""
        assert self.db is not None
        delay = 0.2
        while True:
            try:
                async with self.db.connection() as conn:
                    cursor = await conn.execute(
                        "SELECT partition, resume_offset FROM router.resume_positions"
                        " WHERE topic = %s AND partition = ANY(%s)",
                        (self.settings.orders_topic, partitions),
                    )
                    return dict(await cursor.fetchall())
            except (psycopg.OperationalError, PoolTimeout) as exc:
                log.warning("resume positions unreadable, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def save_positions(self) -> None:
        """Record where a successor must resume each partition (every second and at the end).

        A PostgreSQL outage only delays this: the last saved positions stay safe, just
        older. (It must not raise: an exception in a faust timer crashes the whole app.)
        """
        if self.router is None or self.db is None:
            return
        offsets = self.router.resume_offsets()
        if not offsets:
            return
        try:
            async with self.db.connection() as conn, conn.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO router.resume_positions (topic, partition, resume_offset)"
                    " VALUES (%s, %s, %s)"
                    " ON CONFLICT (topic, partition) DO UPDATE"
                    " SET resume_offset = EXCLUDED.resume_offset, updated_at = now()",
                    [(self.settings.orders_topic, p, o) for p, o in offsets.items()],
                )
        except (psycopg.OperationalError, PoolTimeout) as exc:
            log.warning("resume positions not saved, PostgreSQL unavailable: %s", exc)

    async def partitions_nobody_works_on(self) -> int:
        """Partitions of the order log whose resume position no router refreshed lately.

        Every router refreshes the positions of its partitions each second, so a
        stale or missing row means no live router owns that partition.
        """
        if self.db is None:
            return 0
        async with self.db.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM router.resume_positions WHERE topic = %s"
                " AND updated_at > now() - make_interval(secs => %s)",
                (self.settings.orders_topic, ORPHAN_AFTER_SECONDS),
            )
            row = await cursor.fetchone()
        return self.settings.orders_topic_partitions - (row[0] if row else 0)

    async def stop(self) -> None:
        if self.router is not None:
            await self.router.drain(SHUTDOWN_GRACE_SECONDS)
            await self.save_positions()
        if self.producer is not None:
            await self.producer.stop()
        if self.db is not None:
            await self.db.close()


def create_app(settings: Settings, replication_factor: int = 1) -> tuple[faust.App, RouterRuntime]:
    """The faust app: one agent over the order log, plus rebalance hooks.

    `replication_factor` is for faust's own topics (its leader topic), so that on a
    cluster they survive a lost broker like the order log does.
    """
    runtime = RouterRuntime(settings)
    datadir = settings.data_dir / "router"
    datadir.mkdir(parents=True, exist_ok=True)
    app = BatchDeliveringApp(
        settings.router_group,
        broker=[f"kafka://{server}" for server in runtime.servers.split(",")],
        web_enabled=False,
        processing_guarantee="at_least_once",
        topic_replication_factor=replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=200,
        broker_commit_interval=0.5,
        stream_wait_empty=False,
        store="memory://",
        datadir=str(datadir),
        producer_acks=-1,
        # A killed router's partitions move to a survivor after this long, not faust's 60 s.
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        # After a broker restart the group leader can assign on metadata that lacks the
        # order topic (faust: "Ignoring missing topic") and hand out nothing. aiokafka
        # rejoins the group by itself once fresh metadata shows the topic's partitions,
        # but it only refreshes every 5 minutes by default: seconds, not minutes, idle.
        consumer_metadata_max_age_ms=METADATA_MAX_AGE_MS,
    )
    catch_ups: set[asyncio.Task[None]] = set()
    topic = app.topic(
        settings.orders_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(topic)
    async def route_orders(stream: faust.StreamT[bytes]) -> None:
        router = await runtime.start()
        async for event in stream.events():
            message = event.message
            await router.on_live_record(
                message.partition, message.offset, message.key, message.value
            )

    # faust's signal stubs expect (sender, *args) handlers; it calls them with keyword arguments.
    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: set[TopicPartition], **_: Any) -> None:
        ours = sorted(tp.partition for tp in assigned if tp.topic == settings.orders_topic)
        log.info("router assigned partitions %s", ours)
        router = await runtime.start()
        for partition in ours:
            router.reserve(partition)
        # Catch up in the background: a rebalance callback must return promptly.
        catch_ups.add(asyncio.create_task(runtime.take_partitions(ours)))

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: set[TopicPartition], **_: Any) -> None:
        if runtime.router is not None:
            await runtime.save_positions()
            for tp in revoked:
                if tp.topic == settings.orders_topic:
                    await runtime.router.revoke(tp.partition)

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def save_positions() -> None:
        await runtime.save_positions()

    @app.timer(interval=ORPHAN_AFTER_SECONDS)  # type: ignore[untyped-decorator]
    async def watchdog() -> None:
        # After a broker restart faust's assignor can run on metadata without the
        # order topic and hand out nothing, and no later rebalance comes. A router in
        # that state stops cleanly; its supervisor (oee up, compose) starts it again.
        router = runtime.router
        if router is None or router.resume_offsets():
            return
        try:
            orphaned = await runtime.partitions_nobody_works_on()
        except (psycopg.OperationalError, PoolTimeout):
            return  # cannot tell while PostgreSQL is down; look again next time
        if orphaned > 0:
            log.error("router owns no partition while %d have no owner; restarting", orphaned)
            os.kill(os.getpid(), signal.SIGTERM)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def on_shutdown(sender: Any, **_: Any) -> None:
        await runtime.stop()

    return app, runtime


async def _preflight(settings: Settings) -> TopicCheck:
    """Fail before faust starts, in one line, when Kafka or PostgreSQL is not there."""
    assert settings.database_url is not None
    assert settings.kafka_bootstrap_servers is not None
    await asyncio.to_thread(migrate, settings.database_url)
    return await ensure_topics(settings.kafka_bootstrap_servers, topic_specs(settings))


def serve(settings: Settings) -> None:
    """Run the router worker until SIGTERM/SIGINT."""
    configure_logging(settings, "router")
    topics = asyncio.run(_preflight(settings))
    start_metrics_server(settings.metrics_host, settings.router_metrics_port)
    app, _ = create_app(settings, topics.replication_factor)
    # Keep our structlog set-up (JSON in production) instead of faust's own log format.
    worker = faust.Worker(
        app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False, override_logging=False
    )
    worker.execute_from_commandline()
