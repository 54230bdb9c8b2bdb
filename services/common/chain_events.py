"""Following `chain.events` (issue 18): how a process learns the tokens launched on the chain.

Every process that names tokens or lists pools (the API's validation, quotes and market list,
the router, the market process) runs one `ChainEventsFollower`: at start it folds the topic
from its beginning to its end (`services.domain.launches.fold_chain`; a small topic, one record
per launch step), then follows it live. Each launched token whose pool exists is learnt into
the process's `TokenRegistry`, and the process's `on_launch` is told of it once (the router
lists the pools again and opens its wallet's token account; the market process starts trading
the pool). An `on_launch` that fails is retried at the next read, so a node down for a moment
does not leave a launch unknown.

Unreadable records are skipped with a warning: the trigger engine dead-letters them (consumer
`triggers`), once, rather than every follower a copy each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from schemas.chain import UndecodableChainRecord, decode_chain
from services.common.kafka import log_reader, unreachable
from services.domain.launches import (
    NO_LAUNCHES,
    LaunchedToken,
    Launches,
    fold_chain,
    tradeable_tokens,
)
from services.domain.tokens import REGISTRY, TokenRegistry

log = logging.getLogger(__name__)

OnLaunch = Callable[[LaunchedToken], Awaitable[None]]
READ_TIMEOUT_MS = 200  # a launch is tradeable on every process within about this of its 201


class ChainEventsFollower:
    """The fold of `chain.events` in one process, kept current, feeding its token registry."""

    def __init__(
        self,
        servers: str,
        topic: str,
        *,
        client_id: str,
        tokens: TokenRegistry = REGISTRY,
        on_launch: OnLaunch | None = None,
    ) -> None:
        self.topic = topic
        self.tokens = tokens
        self.launches: Launches = NO_LAUNCHES
        self._on_launch = on_launch
        self._announced: set[str] = set()  # symbols whose on_launch succeeded (or never will)
        self.client_id = client_id
        self._servers = servers
        self._consumer: AIOKafkaConsumer | None = None  # made in start(): it binds to the loop
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Fold the topic from its start to its end now, then follow it; the records folded."""
        self._consumer = log_reader(self._servers, client_id=self.client_id)
        partition = TopicPartition(self.topic, 0)
        try:
            await self._consumer.start()
            self._consumer.assign([partition])
            await self._consumer.seek_to_beginning(partition)
            end = (await self._consumer.end_offsets([partition]))[partition]
        except (KafkaError, OSError) as exc:
            await self._consumer.stop()
            raise unreachable(self._servers, exc) from None
        records = 0
        while await self._consumer.position(partition) < end:
            batches = await self._consumer.getmany(partition, timeout_ms=500, max_records=5000)
            for record in batches.get(partition, []):
                records += 1
                self._fold(record)
        await self._learn()
        self._task = asyncio.create_task(self._follow(), name=f"follow-{self.topic}")
        return records

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=READ_TIMEOUT_MS)
            except KafkaError as exc:
                log.warning("chain event read failed (%s); retrying", exc)
                await asyncio.sleep(1)
                continue
            for batch in batches.values():
                for record in batch:
                    self._fold(record)
            await self._learn()

    def _fold(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            event = decode_chain(record.value)
        except UndecodableChainRecord as exc:
            log.warning("unreadable chain event at offset %d skipped: %s", record.offset, exc)
            return
        self.launches = fold_chain(self.launches, event)

    async def _learn(self) -> None:
        """Learn each tradeable launched token not announced here yet, and tell `on_launch`
        (again, at the next read, if it failed). Announced per follower, not by whether the
        registry knew the token: processes sharing one registry (tests) each need the news."""
        for token in tradeable_tokens(self.launches):
            if token.symbol in self._announced:
                continue
            launch = self.launches[token.symbol]
            try:
                self.tokens.learn(token)
            except ValueError as exc:  # a symbol taken by another mint: never tradeable here
                log.warning("%s: launch %s ignored: %s", self.client_id, launch.pair, exc)
                self._announced.add(token.symbol)
                continue
            try:
                if self._on_launch is not None:
                    await self._on_launch(launch)
            except Exception:  # any failure: the next read retries it
                log.exception("%s: making %s known failed; retrying", self.client_id, launch.pair)
                continue
            self._announced.add(token.symbol)
            log.info(
                "%s: launched %s tradeable (pool %s)", self.client_id, launch.pair, launch.pool
            )
