"""The API's composition root: builds, starts and stops its Kafka and PostgreSQL edges."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from services.api.auth.authenticator import Authenticator
from services.api.auth.ratelimit import ConnectionLimiter, RateLimiter
from services.api.auth.store import PostgresKeys
from services.api.auth.tokens import JwtVerifier
from services.api.feed import LiveFeed
from services.api.market_feed import MarketFeed
from services.api.market_read import MarketReadModel
from services.api.models import DependencyHealth
from services.api.publisher import OrderPublisher
from services.api.quotes import Quoter
from services.api.read_model import ReadModel, ReadModelUnavailable, open_read_pool
from services.chain.rpc_venues import RpcFailure
from services.common.chain_events import ChainEventsFollower
from services.common.kafka import (
    RenewingProducer,
    ensure_topics,
    topic_specs,
)
from services.common.settings import Settings
from services.pricing.ports import ChainUnreachable

HEALTH_TIMEOUT_SECONDS = 2.0


@dataclass
class ApiRuntime:
    """Everything a request handler needs, started in dependency order."""

    settings: Settings
    producer: RenewingProducer
    publisher: OrderPublisher
    feed: LiveFeed
    read_model: ReadModel
    quoter: Quoter
    auth: Authenticator
    # Per key, in this process's memory only (see services/api/auth/ratelimit.py).
    order_limits: RateLimiter
    socket_limits: ConnectionLimiter
    market_feed: MarketFeed
    market_read: MarketReadModel
    chain_events: ChainEventsFollower
    started_at: float = field(default_factory=time.monotonic)

    @classmethod
    async def start(cls, settings: Settings) -> ApiRuntime:
        """Kafka must be there (DependencyUnavailable otherwise); PostgreSQL may come later."""
        jwt = JwtVerifier.from_settings(settings) if settings.auth == "enabled" else None
        servers = settings.kafka_servers
        await ensure_topics(servers, topic_specs(settings))
        producer = RenewingProducer(servers, client_id="oee-api")
        await producer.start()
        feed = LiveFeed(servers, settings.orders_topic, settings.ws_queue_size)
        market_feed = MarketFeed(servers, settings.market_ticks_topic, settings.ws_queue_size)
        try:
            # The producer waits for the topic's metadata, which a fresh consumer may not have yet.
            await feed.start(await producer.current.partitions_for(settings.orders_topic))
            try:
                ticks = settings.market_ticks_topic
                await market_feed.start(sorted(await producer.current.partitions_for(ticks)))
            except BaseException:
                await feed.stop()
                raise
        except BaseException:
            await producer.stop()
            raise
        quoter = Quoter(settings.solana_rpc_url, split_threshold_bps=settings.split_threshold_bps)
        # Launched tokens: validation, quotes, the market list and GET /api/launches know them
        # (the topic folded from its start now, then followed).
        chain_events = ChainEventsFollower(
            servers,
            settings.chain_events_topic,
            client_id="oee-api-chain",
            on_launch=lambda _token: quoter.list_pools_again(),
        )
        try:
            await chain_events.start()
        except BaseException:
            await market_feed.stop()
            await feed.stop()
            await producer.stop()
            await quoter.close()
            raise
        pool = open_read_pool(settings.postgres_url, settings.read_pool_size)
        # Without waiting: the pool keeps trying in the background while PostgreSQL is down.
        await pool.open(wait=False)
        return cls(
            settings=settings,
            producer=producer,
            publisher=OrderPublisher(
                producer, settings.orders_topic, settings.produce_timeout_seconds
            ),
            feed=feed,
            read_model=ReadModel(pool),
            market_feed=market_feed,
            market_read=MarketReadModel(pool),
            auth=Authenticator(
                PostgresKeys(pool),
                enabled=settings.auth == "enabled",
                jwt=jwt,
                cache_seconds=settings.auth_cache_seconds,
            ),
            order_limits=RateLimiter(
                settings.rate_limit_orders_per_second, settings.rate_limit_burst
            ),
            socket_limits=ConnectionLimiter(settings.ws_max_connections_per_key),
            quoter=quoter,
            chain_events=chain_events,
        )

    async def stop(self) -> None:
        await self.chain_events.stop()
        await self.market_feed.stop()
        await self.feed.stop()
        await self.producer.stop()
        await self.read_model.pool.close()
        await self.quoter.close()

    async def kafka_health(self) -> DependencyHealth:
        began = time.monotonic()
        try:
            await asyncio.wait_for(
                self.producer.current.client.fetch_all_metadata(), HEALTH_TIMEOUT_SECONDS
            )
        except Exception as exc:  # any failure of the probe means: down
            return DependencyHealth(status="down", error=str(exc) or type(exc).__name__)
        if not self.feed.running:
            return DependencyHealth(status="down", error="live feed consumer stopped")
        return DependencyHealth(status="up", latency_ms=round((time.monotonic() - began) * 1000))

    async def postgres_health(self) -> DependencyHealth:
        began = time.monotonic()
        try:
            await asyncio.wait_for(self.read_model.ping(), HEALTH_TIMEOUT_SECONDS)
        except (ReadModelUnavailable, TimeoutError) as exc:
            return DependencyHealth(status="down", error=str(exc) or type(exc).__name__)
        return DependencyHealth(status="up", latency_ms=round((time.monotonic() - began) * 1000))

    async def chain_health(self) -> DependencyHealth:
        """The chain's JSON-RPC (`oee chain`, or a cluster): its slot, or why it cannot be read."""
        try:
            slot, took = await asyncio.wait_for(self.quoter.chain_slot(), HEALTH_TIMEOUT_SECONDS)
        except (ChainUnreachable, RpcFailure, TimeoutError) as exc:
            return DependencyHealth(
                status="down", url=self.quoter.rpc_url, error=str(exc) or type(exc).__name__
            )
        return DependencyHealth(
            status="up", url=self.quoter.rpc_url, slot=slot, latency_ms=round(took * 1000)
        )

    def uptime(self) -> int:
        return int(time.monotonic() - self.started_at)
