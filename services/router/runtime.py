"""The router's runtime: its connections, the wiring of execution, and its log appends.

Opened once when the faust worker starts (aiokafka clients bind to the running loop);
`main.create_app` hands it faust's records and rebalance callbacks.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from psycopg_pool import AsyncConnectionPool

from services.chain.client import ChainClient
from services.chain.faults import QUOTE_LATENCY, DelayedVenue, FaultyChain
from services.chain.genesis import wallet_keypair
from services.chain.launch import LaunchGate
from services.chain.rpc_venues import RpcPoolSource, rpc_venues
from services.chain.solana_client import AsyncClientRpc, SolanaChain, load_keypair
from services.common.chain_events import ChainEventsFollower
from services.common.db import open_pool
from services.common.kafka import RenewingProducer
from services.common.settings import Settings
from services.domain.launches import LaunchedToken
from services.pricing.ports import VenueAdapter
from services.router.catchup import catch_up, read_range
from services.router.emitter import Emitter
from services.router.execution import ExecutionPolicy, OrderExecution
from services.router.positions import ResumePositions
from services.router.worker import Assignment, OrderRouter

log = logging.getLogger(__name__)
# A router that owns nothing while partitions go unowned this long restarts to rejoin
# (a last resort: the metadata refresh normally makes it rejoin within seconds).
ORPHAN_AFTER_SECONDS = 30.0


class RouterRuntime:
    """Connections the agent needs, opened once when the worker starts."""

    def __init__(self, settings: Settings) -> None:
        assert settings.kafka_bootstrap_servers is not None
        assert settings.database_url is not None
        self.settings = settings
        self.servers = settings.kafka_bootstrap_servers
        self.db: AsyncConnectionPool | None = None
        # aiokafka clients bind to the running loop, so they are made in start().
        self.producer: RenewingProducer | None = None
        self.router: OrderRouter | None = None
        self.positions: ResumePositions | None = None
        self.rpc: AsyncClientRpc | None = None
        self.pools: RpcPoolSource | None = None
        self.chain_events: ChainEventsFollower | None = None
        self._started = asyncio.Lock()

    async def start(self) -> OrderRouter:
        async with self._started:
            if self.router is not None:
                return self.router
            self.db = await open_pool(str(self.settings.database_url), max_size=8)
            self.positions = ResumePositions(self.db, self.settings.orders_topic)
            # Each order appends three times (routed and built together, submitted, final);
            # a 5 ms linger lets the events of concurrent orders share produce requests
            # (profiled: one request per event was an eighth of the router's CPU at 200/s).
            self.producer = RenewingProducer(self.servers, client_id="oee-router", linger_ms=5)
            await self.producer.start()
            emitter = Emitter(self.producer, self.settings)
            venues, chain, launches = self._solana()
            # Launched tokens trade like any once their pool exists: every order type, not
            # only a sniper whose trigger names the launch (the gate's preparation is the one
            # for both: the token known, the wallet's account for it, the pools listed again).
            self.chain_events = ChainEventsFollower(
                self.servers,
                self.settings.chain_events_topic,
                client_id="oee-router-chain",
                on_launch=lambda token: _prepare(launches, self.pools, token),
            )
            await self.chain_events.start()
            policy = ExecutionPolicy(
                retry_delays=self.settings.retry_delays_seconds,
                quote_ttl_seconds=self.settings.quote_ttl_seconds,
                split_threshold_bps=self.settings.split_threshold_bps,
            )
            execution = OrderExecution(
                policy, venues, chain, emitter.emit, launches=launches, submit=emitter.submit
            )
            self.router = OrderRouter(
                execution.run,
                emitter.dead_letter,
                self.settings.router_max_in_flight,
                read_range=functools.partial(read_range, self.servers, self.settings.orders_topic),
            )
            return self.router

    def _solana(self) -> tuple[list[VenueAdapter], ChainClient, LaunchGate]:
        """The chain node (or a cluster) over JSON-RPC, signing with the engine's wallet.

        Pools are discovered once with getProgramAccounts and quoted from one shared
        snapshot of their accounts (`rpc_venues.py`); transactions name the same listings.
        `OEE_VENUE_LATENCY=realistic` adds a seeded quote latency per venue and
        `OEE_VENUE_FAILURE_RATE` seeded refused sends and lost confirmations (`faults.py`).
        """
        settings = self.settings
        self.rpc = AsyncClientRpc(settings.solana_rpc_url)
        path = settings.wallet_keypair
        wallet = load_keypair(path) if path else wallet_keypair(settings.chain_seed, 0)
        log.info(
            "executing on Solana RPC %s as %s%s",
            settings.solana_rpc_url,
            wallet.pubkey(),
            " (dry run: simulate, never send)" if settings.chain_dry_run else "",
        )
        self.pools = RpcPoolSource(settings.solana_rpc_url)
        chain: ChainClient = SolanaChain(
            self.rpc, wallet, dry_run=settings.chain_dry_run, pools=self.pools
        )
        if settings.venue_failure_rate > 0:
            chain = FaultyChain(
                chain, seed=settings.market_seed, failure_rate=settings.venue_failure_rate
            )
        venues: list[VenueAdapter] = list(rpc_venues(self.pools))
        if settings.venue_latency == "realistic":
            venues = [
                DelayedVenue(v, seed=settings.market_seed, latency=QUOTE_LATENCY[v.venue])
                for v in venues
            ]
        return venues, chain, LaunchGate(self.pools, wallet)

    async def take_partitions(self, assignments: dict[int, Assignment]) -> None:
        """Catch each newly assigned partition up from its resume position, then let it go live."""
        router = await self.start()
        assert self.positions is not None
        starts = await self.positions.load(sorted(assignments))
        await catch_up(router, self.servers, self.settings.orders_topic, assignments, starts)

    async def flush(self) -> None:
        """Every event handed to the producer so far is on the log when this returns."""
        if self.producer is not None:
            await self.producer.flush()

    async def save_positions(self) -> None:
        """Record where a successor must resume each of this router's partitions."""
        if self.router is not None and self.positions is not None:
            await self.positions.save(self.router.resume_offsets())

    async def partitions_nobody_works_on(self) -> int:
        """Partitions of the order log whose resume position no router refreshed lately."""
        if self.positions is None:
            return 0
        fresh = await self.positions.fresh_count(ORPHAN_AFTER_SECONDS)
        return self.settings.orders_topic_partitions - fresh

    async def stop(self) -> None:
        if self.chain_events is not None:
            await self.chain_events.stop()
        if self.router is not None:
            # Not a drain: while this router stops, a rebalance (another router leaving or
            # joining) hands its partitions on without telling it (faust skips the revoke
            # callbacks of a stopping app), and orders it kept running would have two
            # writers. Stopping them at once is safe: every step is idempotent and the next
            # owner resumes each order from the log; the flush puts what they handed the
            # producer on the log first.
            await self.router.drain(0)
            await self.flush()
            await self.save_positions()
        if self.producer is not None:
            await self.producer.stop()
        if self.rpc is not None:
            await self.rpc.close()
        if self.pools is not None:
            await self.pools.close()
        if self.db is not None:
            await self.db.close()


async def _prepare(gate: LaunchGate, pools: RpcPoolSource | None, token: LaunchedToken) -> None:
    target = token.target()
    assert target is not None  # the follower announces tokens whose pool exists
    await gate.prepare(target)
    if pools is not None:
        pools.expire_snapshot()  # a snapshot of this slot was read without the new pool
