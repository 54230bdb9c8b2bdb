"""`oee market`: run the market process until SIGTERM/SIGINT; `oee market move`: ask it to move."""

from __future__ import annotations

import asyncio
import signal
from decimal import Decimal

import structlog

from services.common.kafka import durable_producer, ensure_topics, start_producer, topic_specs
from services.common.logging import configure_logging
from services.common.settings import Settings
from services.market.commands import encode_move
from services.market.process import MarketProcess

log = structlog.get_logger("market")


async def run(settings: Settings) -> None:
    market = MarketProcess(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await market.start()
    try:
        await market.run(stopping)
    finally:
        await market.stop()
        steps = market.history
        if steps:
            cpu = sum(s.cpu_seconds for s in steps) / len(steps)
            log.info("market stopped", slot=market.slot, cpu_ms_per_slot=round(cpu * 1000, 3))


def serve(settings: Settings) -> None:
    configure_logging(settings, "market")
    asyncio.run(run(settings))


async def send_move(settings: Settings, pair: str, to: Decimal, over_seconds: float) -> None:
    """Write a move command to `market.commands` (acks=all); the running process applies it."""
    servers = settings.kafka_servers
    await ensure_topics(servers, topic_specs(settings))
    producer = durable_producer(servers, client_id="oee-market-admin")
    await start_producer(producer, servers)
    try:
        await producer.send_and_wait(
            settings.market_commands_topic,
            value=encode_move(pair, to, over_seconds),
            key=pair.encode(),
        )
    finally:
        await producer.stop()
