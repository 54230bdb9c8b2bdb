"""The trigger engine process (`oee triggers`): market ticks and the order log in, proposals out.

One asyncio loop owns a `TriggerCore` (pure) and three tasks feed it:

- the order log, every partition (no consumer group: the engine needs every conditional
  order), from the recovery offsets onwards: opened, amended, triggered, cancelled, final;
- `market.ticks` from its end (a tick is a state, not a command: a stale one triggers
  nothing), each tick crossing the book;
- a clock every 200 ms for expiries (they fire within a second of their time);
- `chain.events` (issue 18), all of it from the start at recovery (a small topic: launches),
  then live: a launch's `PoolCreated` decides its armed snipers (rug checks, trigger), in
  submission order; unreadable records are dead-lettered.

What the core proposes is appended to the order log with the order's expected next
sequence; the log decides (see `core.py`). Nothing is kept on local disk: faust tables
over RocksDB have open reports of recovery hangs and lost writes (faust-streaming #432,
#74, #333), and the order log already is the durable state. On start the engine loads
every conditional order not final from the projector's read model in batches of 20,000 rows, in
the same snapshot as the log positions those rows are as of (the projector commits both in
one transaction), then folds the log from those positions to the end it had at start,
without proposing (later records may have decided an order already). Recovery
time is logged and exported (`oee_triggers_recovery_seconds`).
"""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Gauge, Histogram
from psycopg_pool import AsyncConnectionPool

from schemas.chain import (
    PoolCreated,
    PoolOpened,
    UndecodableChainRecord,
    decode_chain,
    encode_chain,
)
from schemas.codec import UndecodableEvent, decode, encode
from schemas.envelope import Envelope, record_hash
from schemas.events import OrderStatus, OrderType
from schemas.market import MarketTick, UndecodableMarketRecord, decode_market
from services.common.db import migrate, open_pool
from services.common.kafka import (
    DeadLetter,
    RenewingProducer,
    TopicSpec,
    ensure_topics,
    log_reader,
    send_to_dead_letter,
    topic_specs,
)
from services.common.logging import configure_logging
from services.common.metrics import start_metrics_server
from services.common.process import retry_while_down, stop_event_on_signals
from services.common.settings import Settings
from services.domain.launches import conflicting_launches, learn_launched
from services.domain.order import OrderState
from services.domain.tokens import REGISTRY
from services.pricing.accounts.pools import CLOCK_SYSVAR, decode_clock
from services.triggers.core import TriggerCore

log = logging.getLogger(__name__)

CLOCK_SECONDS = 0.2
APPEND_CHUNK = 500  # proposals appended at once

RECOVERY_SECONDS = Gauge(
    "oee_triggers_recovery_seconds", "How long the trigger engine took to recover its book"
)
RESTING = Gauge("oee_triggers_resting_orders", "Conditional orders resting in the book")
TICK_TO_TRIGGER = Histogram(
    "oee_triggers_tick_to_trigger_seconds",
    "From a tick's write to the log to its triggers appended",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
TICK_CPU = Histogram(
    "oee_triggers_tick_cpu_seconds",
    "CPU of crossing one tick against the book",
    buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.1),
)


def now() -> datetime:
    return datetime.now(UTC)


# The read model's columns a resting order's state is rebuilt from, in `_state_of` order.
_RESTING_SQL = (
    "SELECT o.id, o.token_in, o.token_out, o.amount, o.slippage, o.status,"
    " o.last_sequence, e.hash, o.created_at, o.updated_at, o.order_type, o.limit_price,"
    " o.trigger_price, o.take_profit_price, o.stop_loss_price, o.trailing_bps, o.expires_at,"
    " o.triggered_leg, o.triggered_slot, o.triggered_price"
    " FROM read_model.orders o JOIN read_model.order_events e"
    "   ON e.order_id = o.id AND e.sequence = o.last_sequence"
    " WHERE o.order_type NOT IN ('market', 'sniper')"
    "   AND o.status NOT IN ('completed', 'failed', 'cancelled', 'expired')"
)
# An unfinished sniper is folded from its submission on the log instead (they are few): its own
# fields (max price, checks, autoSell, ...) are read-model columns only since migration 0011, and
# a row projected before it holds the defaults (no checks) until its next event or a rebuild.
_SNIPER_STARTS_SQL = (
    "SELECT e.log_partition, min(e.log_offset)"
    " FROM read_model.orders o JOIN read_model.order_events e"
    "   ON e.order_id = o.id AND e.sequence = 1"
    " WHERE o.order_type = 'sniper'"
    "   AND o.status NOT IN ('completed', 'failed', 'cancelled', 'expired')"
    " GROUP BY 1"
)
_RESTING_BATCH = 20_000  # rows a fetch: converted in C, one round trip each


def _state_of(row: tuple[Any, ...]) -> OrderState:
    """A conditional order's state from its read-model row (the fields the core keeps)."""
    (order_id, token_in, token_out, amount, slippage, status, sequence, last_hash, created_at,
     updated_at, order_type, limit_price, trigger_price, take_profit_price, stop_loss_price,
     trailing_bps, expires_at, triggered_leg, triggered_slot, triggered_price) = row  # fmt: skip
    return OrderState(
        order_id=order_id, token_in=token_in, token_out=token_out, amount=amount,
        slippage=slippage, client_order_id=None, owner=None, status=OrderStatus(status),
        sequence=sequence, last_hash=last_hash, created_at=created_at, updated_at=updated_at,
        order_type=OrderType(order_type), limit_price=limit_price, trigger_price=trigger_price,
        take_profit_price=take_profit_price, stop_loss_price=stop_loss_price,
        trailing_bps=trailing_bps, expires_at=expires_at, triggered_leg=triggered_leg,
        triggered_slot=triggered_slot, triggered_price=triggered_price,
    )  # fmt: skip


async def load_from_read_model(
    pool: AsyncConnectionPool, topic: str, core: TriggerCore
) -> dict[int, int]:
    """Load every conditional order not final into `core` as the read model has it, and
    return the log positions those rows are as of (partitions not named start at 0).

    One REPEATABLE READ snapshot: the projector commits rows and positions together, so the
    rows are exactly the fold of the log up to the positions, and folding the log from
    there on (`apply` drops what a row already holds) misses nothing and doubles nothing.
    Bulk reads of the rows instead of folding each order's history from the log: a
    million orders' `OrderSubmitted` alone is ~600 MB of JSON to fetch and validate."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        positions: dict[int, int] = dict(
            await (
                await conn.execute(
                    "SELECT partition, next_offset FROM read_model.log_positions WHERE topic = %s",
                    (topic,),
                )
            ).fetchall()
        )
        # A server-side cursor fetched in big batches of binary rows: `COPY ... rows()` (one
        # await a row) took ~40 us a row of the ~65 us a row recovery cost (210,600 orders).
        async with conn.cursor(name="resting_orders", binary=True) as cursor:
            await cursor.execute(_RESTING_SQL)
            while rows := await cursor.fetchmany(_RESTING_BATCH):
                for row in rows:
                    core.load(_state_of(row))
        snipers: dict[int, int] = dict(await (await conn.execute(_SNIPER_STARTS_SQL)).fetchall())
    # Folding from an earlier offset repeats events of orders loaded above: `apply` drops
    # each one their row already holds, so only the snipers are built from those records.
    return {p: min(offset, snipers.get(p, offset)) for p, offset in positions.items()}


async def polled(
    consumer: AIOKafkaConsumer, what: str, *, max_records: int
) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """Each poll's records, forever; a failed read is logged and tried again a second later
    (the three loops of the engine read their topics alike)."""
    while True:
        try:
            batches = await consumer.getmany(timeout_ms=500, max_records=max_records)
        except KafkaError as exc:
            log.warning("%s read failed (%s); retrying", what, exc)
            await asyncio.sleep(1)
            continue
        yield [record for batch in batches.values() for record in batch]


class TriggerEngine:
    """The process around the core: consumers, the producer, the clock."""

    def __init__(self, settings: Settings, pool: AsyncConnectionPool) -> None:
        assert settings.kafka_bootstrap_servers is not None
        self.settings = settings
        self.pool = pool
        self.core = TriggerCore()
        servers = settings.kafka_bootstrap_servers
        self.producer = RenewingProducer(servers, client_id="oee-triggers")
        self.orders = log_reader(servers, client_id="oee-triggers-orders")
        self.ticks = AIOKafkaConsumer(
            settings.market_ticks_topic,
            bootstrap_servers=servers,
            client_id="oee-triggers-ticks",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            metadata_max_age_ms=5000,
        )
        self.chain = AIOKafkaConsumer(
            bootstrap_servers=servers,
            client_id="oee-triggers-chain",
            group_id=None,
            enable_auto_commit=False,
            metadata_max_age_ms=5000,
        )
        self._created: dict[str, PoolCreated] = {}  # by symbol: what PoolOpened repeats
        self.recovered = asyncio.Event()
        self.recovery_seconds: float | None = None
        self.proposed = 0

    async def start(self) -> None:
        servers = self.settings.kafka_bootstrap_servers
        assert servers is not None
        await ensure_topics(
            servers,
            [*topic_specs(self.settings), TopicSpec(self.settings.market_ticks_topic, 1)],
        )
        await self.producer.start()
        await self.orders.start()
        await self.ticks.start()
        await self.chain.start()

    async def stop(self) -> None:
        for client in (self.chain, self.ticks, self.orders):
            await client.stop()
        await self.producer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        await self._recover()
        tasks = [
            asyncio.create_task(self._order_loop(), name="triggers-orders"),
            asyncio.create_task(self._tick_loop(), name="triggers-ticks"),
            asyncio.create_task(self._clock_loop(), name="triggers-clock"),
            asyncio.create_task(self._chain_loop(), name="triggers-chain"),
            asyncio.create_task(self._open_watch_loop(), name="triggers-pool-open"),
        ]
        stopping = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopping:
                    task.result()  # a loop that ended on an error ends the process
        finally:
            for task in [stopping, *tasks]:
                task.cancel()
            await asyncio.gather(stopping, *tasks, return_exceptions=True)

    async def _recover_launches(self) -> int:
        """Fold `chain.events` from its start to its end now, proposing nothing yet."""
        chain = TopicPartition(self.settings.chain_events_topic, 0)
        self.chain.assign([chain])
        await self.chain.seek_to_beginning(chain)
        end = (await self.chain.end_offsets([chain]))[chain]
        records = 0
        while await self.chain.position(chain) < end:
            batches = await self.chain.getmany(chain, timeout_ms=500, max_records=5000)
            for record in batches.get(chain, []):
                records += 1
                await self._chain_record(record, propose=False)
        return records

    async def _chain_record(self, record: ConsumerRecord[bytes, bytes], *, propose: bool) -> None:
        try:
            event = decode_chain(record.value)
        except UndecodableChainRecord as exc:
            letter = DeadLetter(record.topic, record.partition, record.offset, str(exc), "triggers")
            await send_to_dead_letter(
                self.producer, self.settings.dead_letter_topic, letter, record.key, record.value
            )
            return
        if isinstance(event, PoolCreated):
            self._created[event.symbol] = event
        await self._append(self.core.on_chain_event(event, now(), propose=propose))
        # The engine folds the topic itself (it dead-letters for every follower): what it
        # folded also teaches this process's token registry, as `ChainEventsFollower` does.
        learn_launched(REGISTRY, self.core.launches)
        if isinstance(event, PoolCreated) and any(
            launch.symbol == event.symbol
            for launch in conflicting_launches(REGISTRY, self.core.launches)
        ):
            log.warning(
                "launch %s-%s (mint %s) not tradeable here: its symbol is another mint's",
                event.symbol, event.quote, event.mint,
            )  # fmt: skip

    async def _chain_loop(self) -> None:
        async for records in polled(self.chain, "chain event", max_records=500):
            for record in records:
                await self._chain_record(record, propose=True)

    async def _open_watch_loop(self) -> None:
        """Publish `PoolOpened` for each launched pool once the chain's clock reaches its open
        time (the slot is the one the engine saw open, the first or the one after). Another
        engine publishing the same is harmless: the fold keeps the first."""
        waiting: dict[str, PoolCreated] = {}
        while True:
            await asyncio.sleep(CLOCK_SECONDS)
            for token in self.core.launches.values():
                if token.pool and token.opened_slot is None and token.pool not in waiting:
                    waiting[token.pool] = self._created[token.symbol]
            if not waiting:
                continue
            try:
                slot, unix_time = await self._chain_clock()
            except (OSError, aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
                log.warning("chain clock unreadable (%s); pool openings wait", exc)
                continue
            for pool, created in list(waiting.items()):
                if unix_time < created.open_time:
                    continue
                opened = PoolOpened(
                    symbol=created.symbol, quote=created.quote, venue=created.venue, pool=pool,
                    open_time=created.open_time, slot=slot, at=now(),
                )  # fmt: skip
                await self._publish_chain(opened)
                del waiting[pool]

    async def _publish_chain(self, event: PoolOpened) -> None:
        value, key = encode_chain(event), event.symbol.encode()
        await retry_while_down(
            lambda: self.producer.send_and_wait(
                self.settings.chain_events_topic, value=value, key=key
            ),
            is_outage=lambda exc: isinstance(exc, KafkaError),
            what="Kafka, for a pool opening,",
        )

    async def _chain_clock(self) -> tuple[int, int]:
        """The chain's (slot, unix time) from its Clock sysvar."""
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "getAccountInfo",
            "params": [str(CLOCK_SYSVAR), {"encoding": "base64"}],
        }
        timeout = aiohttp.ClientTimeout(total=2)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(self.settings.solana_rpc_url, json=body) as response,
        ):
            answer = await response.json()
        clock = decode_clock(base64.b64decode(answer["result"]["value"]["data"][0]))
        return clock.slot, clock.unix_timestamp

    async def _recover(self) -> None:
        # The cyclic GC walks every live object at each full collection: a million orders
        # being loaded made it ~30 % of the load's CPU. Off while loading; afterwards the
        # book is frozen out of its reach (`gc.freeze`): its only cycles, a trailing stop and
        # its group, are broken by hand when the order leaves (`_untrail`, `_fire_trailing`).
        gc.disable()
        try:
            await self._load_and_catch_up()
        finally:
            gc.freeze()
            gc.enable()
        # Expiries that passed while the engine was down end now, before any tick is read.
        await self._append(self.core.on_clock(now()))
        self.recovered.set()

    async def _load_and_catch_up(self) -> None:
        began = time.perf_counter()
        launches = await self._recover_launches()
        topic = self.settings.orders_topic
        starts = await retry_while_down(
            lambda: load_from_read_model(self.pool, topic, self.core),
            is_outage=lambda exc: isinstance(exc, OSError) or "connection" in str(exc).lower(),
            what="PostgreSQL, for the trigger engine's recovery,",
        )
        loaded, loaded_seconds = len(self.core), time.perf_counter() - began
        tps = [TopicPartition(topic, p) for p in range(self.settings.orders_topic_partitions)]
        self.orders.assign(tps)
        ends = await self.orders.end_offsets(tps)
        for tp in tps:
            self.orders.seek(tp, starts.get(tp.partition, 0))
        remaining = {tp for tp in tps if await self.orders.position(tp) < ends[tp]}
        records = 0
        while remaining:
            batches = await self.orders.getmany(timeout_ms=500, max_records=5000)
            for tp, batch in batches.items():
                for record in batch:
                    records += 1
                    self._fold(record.value, propose=False)
                if await self.orders.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        self.recovery_seconds = time.perf_counter() - began
        RECOVERY_SECONDS.set(self.recovery_seconds)
        log.info(
            "trigger engine recovered %d conditional orders (%d resting) from the read model"
            " (%d in %.3fs) and %d records of the log in %.3fs",
            len(self.core),
            self.core.resting,
            loaded,
            loaded_seconds,
            records,
            self.recovery_seconds,
        )
        # Expiries that passed while the engine was down end now, before any tick is read; then
        # snipers whose launch came while it was down (or before they were armed) are decided.
        await self._append(self.core.on_clock(now()))
        await self._append(self.core.sweep_snipers(now()))
        log.info("trigger engine folded %d chain events", launches)
        self.recovered.set()

    def _fold(self, value: bytes | None, *, propose: bool) -> list[Envelope]:
        try:
            envelope = decode(value)
        except UndecodableEvent:
            return []  # the projector dead-letters it
        proposals = self.core.apply(envelope, record_hash(value or b""), now(), propose=propose)
        RESTING.set(self.core.resting)
        return proposals

    async def _order_loop(self) -> None:
        async for records in polled(self.orders, "order log", max_records=2000):
            proposals: list[Envelope] = []
            for record in records:
                proposals += self._fold(record.value, propose=True)
            await self._append(proposals)

    async def _tick_loop(self) -> None:
        async for records in polled(self.ticks, "market tick", max_records=500):
            for record in records:
                try:
                    market = decode_market(record.value)
                except UndecodableMarketRecord as exc:
                    log.warning("unreadable market record skipped: %s", exc)
                    continue
                if not isinstance(market.payload, MarketTick):
                    continue
                began = time.process_time()
                proposals = self.core.on_tick(market.payload, now())
                TICK_CPU.observe(time.process_time() - began)
                RESTING.set(self.core.resting)
                if proposals:
                    await self._append(proposals)
                    TICK_TO_TRIGGER.observe(max(0.0, time.time() - record.timestamp / 1000))

    async def _clock_loop(self) -> None:
        while True:
            await asyncio.sleep(CLOCK_SECONDS)
            await self._append(self.core.on_clock(now()))

    async def _append(self, proposals: list[Envelope]) -> None:
        """Append proposals (waiting out Kafka outages); the log decides which ones count."""
        if not proposals:
            return
        topic = self.settings.orders_topic

        async def send(envelope: Envelope) -> None:
            value, key = encode(envelope), str(envelope.order_id).encode()
            await retry_while_down(
                lambda: self.producer.send_and_wait(topic, value=value, key=key),
                is_outage=lambda exc: isinstance(exc, KafkaError),
                what=f"Kafka, for order {envelope.order_id},",
            )

        # In chunks: 10,000 sends at once (one tick crossing 10,000 stops) left records
        # waiting in the producer's buffer past its request timeout on the loaded machine
        # (thousands of KafkaTimeoutError retries, bench/trigger_engine.py --mass 10000).
        for start in range(0, len(proposals), APPEND_CHUNK):
            await asyncio.gather(*(send(e) for e in proposals[start : start + APPEND_CHUNK]))
        self.proposed += len(proposals)


async def _main(settings: Settings) -> None:
    assert settings.database_url is not None
    stop = stop_event_on_signals()
    await asyncio.to_thread(migrate, settings.database_url)
    pool = await open_pool(settings.database_url, max_size=2)
    engine = TriggerEngine(settings, pool)
    try:
        await engine.start()
        log.info("trigger engine on %s and %s", settings.orders_topic, settings.market_ticks_topic)
        await engine.run(stop)
    finally:
        await engine.stop()
        await pool.close()


def serve(settings: Settings) -> None:
    """Run the trigger engine until SIGTERM/SIGINT."""
    configure_logging(settings, "triggers")
    start_metrics_server(settings.metrics_host, settings.triggers_metrics_port)
    asyncio.run(_main(settings))
