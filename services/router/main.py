"""Composition root of the router: the faust-streaming app, its agent, timers and hooks.

`runtime.RouterRuntime` holds the connections and the execution wiring; this module
only connects faust's stream and rebalance signals to it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

import faust
import psycopg
from aiokafka import TopicPartition
from psycopg_pool import PoolTimeout

from services.common.db import migrate
from services.common.kafka import TopicCheck, ensure_topics, topic_specs
from services.common.logging import configure_logging
from services.common.metrics import start_metrics_server
from services.common.settings import Settings
from services.router.delivery import BatchDeliveringApp
from services.router.runtime import ORPHAN_AFTER_SECONDS, RouterRuntime

log = logging.getLogger(__name__)
METADATA_MAX_AGE_MS = 5_000


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
        assignments = {partition: router.reserve(partition) for partition in ours}
        # Catch up in the background: a rebalance callback must return promptly.
        task = asyncio.create_task(runtime.take_partitions(assignments))
        catch_ups.add(task)
        task.add_done_callback(catch_ups.discard)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: set[TopicPartition], **_: Any) -> None:
        if runtime.router is not None:
            await runtime.save_positions()
            for tp in revoked:
                if tp.topic == settings.orders_topic:
                    await runtime.router.revoke(tp.partition)
            # A cancelled order may have handed its next event to the producer already: it
            # must be on the log before the partition moves, so the next owner's catch-up
            # (which reads up to the end it sees on assignment) folds it instead of racing it.
            await runtime.flush()

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
