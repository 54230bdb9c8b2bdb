"""The market process: every chain slot, move the pools toward the walk and publish what changed.

One `MarketProcess.step()` per slot of the chain:

1. Wait for the chain's next slot (`getSlot`), then read both venues' pools at it (one
   `RpcPoolSource` snapshot, `getMultipleAccounts`).
2. Read the blocks landed since the last step (`getBlock`) and decode every swap on a known pool
   into a `MarketTrade` (the engine's, signed by its wallet, and the background's alike).
3. Apply admin commands (`market.commands`), step each pair's reference (`walk.Walk`, or a
   `walk.Move` in progress), and for each pool send the background swap that moves it toward its
   venue's target (`flow.flow_trade`), one transaction per pool signed by the market maker's
   wallet, without preflight: it lands in the next block, after or before the engine's swaps in
   arrival order, never holding them up. A pool whose last swap has not landed yet is left alone.
4. Publish the trades, then one `MarketTick` per pair, each with the next per-pair sequence
   number of its topic, and wait for the broker's acknowledgement (acks=all).

On start it reads the tail of every partition of both topics, so sequences continue across
restarts, and each pair's walk resumes from its last tick's reference; blocks are read again from
the slot after the last tick (trades already on the topic for later slots are not repeated).
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Context, Decimal

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from solders.compute_budget import set_compute_unit_limit
from solders.hash import Hash
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import Transaction

from schemas.market import (
    MarketRecord,
    MarketTick,
    MarketTrade,
    UndecodableMarketRecord,
    VenueTick,
    decode_market,
    encode_market,
    pair_name,
)
from services.chain.genesis import wallet_keypair
from services.chain.launch import LaunchGate
from services.chain.rpc_venues import RpcFailure, RpcPoolSource, cpmm_keys, dlmm_keys
from services.chain.solana_client import load_keypair
from services.chain.svm.vm import DEFAULT_COMPUTE_UNITS, CpmmSwap, DlmmSwap, SolanaVm
from services.common.chain_events import ChainEventsFollower
from services.common.kafka import (
    durable_producer,
    ensure_topics,
    log_reader,
    start_producer,
    topic_specs,
)
from services.common.settings import Settings
from services.domain.launches import LaunchedToken
from services.domain.tokens import get_token
from services.market.commands import (
    MAX_COMMAND_AGE_SECONDS,
    MarketMove,
    UndecodableCommand,
    decode_move,
)
from services.market.flow import FlowTrade, depth, flow_trade, pool_mid
from services.market.trades import Vault, decode_trades, vaults
from services.market.walk import LAUNCH_VOLATILITY_MULTIPLE, Move, Walk, slot_sigma
from services.pricing.accounts.pools import PoolRegistry, orient
from services.pricing.ports import PoolSnapshot
from services.venues.market import DEFAULT_PAIRS
from services.venues.pool import Pair, Pool, Venue

log = structlog.get_logger("market")

_DIGITS = Context(prec=12)
MAX_BLOCKS_PER_STEP = 200  # catching up after a pause reads at most this many blocks a step
SLIPPAGE = Decimal("0.02")  # a background swap's minimum out, below its quote
IN_FLIGHT_SLOTS = 20  # a swap not seen landed after this many slots no longer blocks its pool


def engine_keys(settings: Settings) -> set[str]:
    """The public key(s) whose swaps are the engine's."""
    if settings.market_engine_pubkey:
        return {settings.market_engine_pubkey}
    if settings.wallet_keypair is not None:
        return {str(load_keypair(settings.wallet_keypair).pubkey())}
    return {str(wallet_keypair(settings.chain_seed, 0).pubkey())}


def _pair_key(name: str) -> Pair:
    base, _, quote = name.partition("-")
    return (base, quote)


@dataclass
class Tail:
    """What the topics say the process had published: sequences, last ticks, seen trades."""

    tick_sequences: dict[str, int] = field(default_factory=dict)
    trade_sequences: dict[str, int] = field(default_factory=dict)
    last_ticks: dict[str, MarketTick] = field(default_factory=dict)
    trades_after_ticks: set[tuple[str, str, str]] = field(default_factory=set)


async def read_tail(
    servers: str, topic: str, pairs: Iterable[str], *, client_id: str = "oee-market-tail"
) -> dict[str, MarketRecord]:
    """Each pair's last record on `topic`: per partition, read back from the end in growing
    windows until every pair the partitioner puts there is found (or the partition's start)."""
    consumer = log_reader(servers, client_id=client_id)
    await consumer.start()
    found: dict[str, MarketRecord] = {}
    try:
        metadata = await consumer._client.fetch_all_metadata()  # a group-less reader's only way
        partitions = sorted(metadata.partitions_for_topic(topic) or set())
        if not partitions:
            return found
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        partitioner = DefaultPartitioner()
        wanted: dict[int, set[str]] = {}
        for pair in pairs:
            p = partitioner(pair.encode(), partitions, partitions)
            wanted.setdefault(p, set()).add(pair)
        for tp in tps:
            end, first = ends[tp], starts[tp]
            window = 64
            while end > first:
                start = max(first, end - window)
                latest = await _read_range(consumer, tp, start, end)
                if set(latest) >= wanted.get(tp.partition, set()) or start == first:
                    for pair, record in latest.items():
                        found[pair] = record
                    break
                window *= 4
    finally:
        await consumer.stop()
    return found


async def _read_range(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int
) -> dict[str, MarketRecord]:
    consumer.seek(tp, start)
    latest: dict[str, MarketRecord] = {}
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1000)
        for record in batch.get(tp, []):
            if record.offset >= end:
                break
            try:
                decoded = decode_market(record.value)
            except UndecodableMarketRecord:
                continue
            pair = decoded.payload.pair
            if pair not in latest or decoded.sequence >= latest[pair].sequence:
                latest[pair] = decoded
    return latest


@dataclass(slots=True)
class StepStats:
    """What one step did, for logs, tests and the benchmark."""

    slot: int
    ticks: int
    trades: int
    swaps_sent: int
    cpu_seconds: float


class MarketProcess:
    """The market: reads the chain, trades the pools toward the walk, publishes ticks/trades."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        assert settings.kafka_bootstrap_servers is not None
        self.settings = settings
        self._servers = settings.kafka_bootstrap_servers
        self._clock = clock
        self.walk = Walk(
            settings.market_seed, slot_sigma(settings.market_volatility, settings.slot_ms)
        )
        self.launch_walk = self.walk.scaled(LAUNCH_VOLATILITY_MULTIPLE)
        self.launched: set[str] = set()  # launched tokens' pairs, traded once their pool opens
        self.chain_events = ChainEventsFollower(
            self._servers,
            settings.chain_events_topic,
            client_id="oee-market-chain",
            on_launch=self._launched,
        )
        self.source = RpcPoolSource(settings.solana_rpc_url, max_age=0.0)
        self.maker = wallet_keypair(settings.chain_seed, settings.market_maker_wallet)
        self.engine = engine_keys(settings)
        self._builder = SolanaVm()  # instruction builders only; nothing runs in it
        self._producer: AIOKafkaProducer | None = None
        self._commands: AIOKafkaConsumer | None = None
        self.registry: PoolRegistry | None = None
        self._vaults: dict[str, Vault] = {}
        self.references: dict[str, Decimal] = {}
        self.moves: dict[str, Move] = {}
        self._tick_seq: dict[str, int] = {}
        self._trade_seq: dict[str, int] = {}
        self._skip_trades: set[tuple[str, str, str]] = set()
        self._in_flight: dict[tuple[Venue, Pair], tuple[str, int]] = {}
        self.slot = -1  # the last slot stepped
        self._blocks_done = -1  # the last slot whose block was read for trades
        self.history: list[StepStats] = []

    # --- start and stop ------------------------------------------------------------------------

    async def start(self) -> None:
        """Topics, producer, the pools, and where the topics say the market was."""
        s = self.settings
        await ensure_topics(self._servers, topic_specs(s))
        self._producer = durable_producer(self._servers, client_id="oee-market", linger_ms=1)
        await start_producer(self._producer, self._servers)
        self.registry = await self.source.discover()
        self._vaults = vaults(self.registry)
        await self.chain_events.start()  # lists the pools again for every launch so far
        names = [pair_name(*p) for p in self.pairs]
        ticks = await read_tail(self._servers, s.market_ticks_topic, names)
        trades = await read_tail(self._servers, s.market_trades_topic, names)
        last_tick_slot = -1
        for name, record in ticks.items():
            tick = record.payload
            assert isinstance(tick, MarketTick)
            self._tick_seq[name] = record.sequence
            self.references[name] = tick.reference
            last_tick_slot = max(last_tick_slot, tick.slot)
        for name, record in trades.items():
            self._trade_seq[name] = record.sequence
            trade = record.payload
            assert isinstance(trade, MarketTrade)
            if trade.slot > last_tick_slot:
                self._skip_trades.add((trade.signature, trade.venue, trade.pair))
        snapshot = await self.source.snapshot()
        self._start_launched_pairs(snapshot)
        for pair in self.pairs:
            name = pair_name(*pair)
            if name not in self.references and name not in self.launched:
                self.references[name] = self._starting_price(pair, snapshot)
        self.slot = last_tick_slot if last_tick_slot >= 0 else snapshot.slot
        self._blocks_done = self.slot
        self._commands = AIOKafkaConsumer(
            bootstrap_servers=self._servers,
            client_id="oee-market-commands",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        await self._commands.start()
        tp = TopicPartition(s.market_commands_topic, 0)
        self._commands.assign([tp])
        await self._commands.seek_to_end(tp)
        await self._commands.position(tp)  # resolve "the end" now: later commands are ours
        log.info(
            "market started",
            slot=self.slot,
            pairs=names,
            resumed=bool(ticks),
            volatility=s.market_volatility,
            maker=str(self.maker.pubkey()),
        )

    async def _launched(self, token: LaunchedToken) -> None:
        """A launched token's pool exists: list the pools again and trade it once it opens.

        The router's launch preparation, with the market maker's wallet: the token known, the
        maker's account for it (a swap cannot create the account it pays into), the pools
        listed again. Its reference starts at the pool's own price on the first step that sees
        the pool open (`_start_launched_pairs`); until then the program refuses swaps."""
        target = token.target()
        assert target is not None  # announced once its pool exists
        await LaunchGate(self.source, self.maker).prepare(target)
        self.registry = await self.source.registry()
        self._vaults = vaults(self.registry)
        self.launched.add(token.pair)

    def _start_launched_pairs(self, snapshot: PoolSnapshot) -> None:
        """Launched pairs whose pool the snapshot shows open start at its price."""
        for name in self.launched - set(self.references):
            pair = _pair_key(name)
            pool = snapshot.pools.get((Venue.RAYDIUM, pair)) or snapshot.pools.get(
                (Venue.METEORA, pair)
            )
            if pool is not None:
                self.references[name] = _DIGITS.plus(pool_mid(pool))
                log.info("launched pair trading", pair=name, reference=str(self.references[name]))

    @property
    def pairs(self) -> list[Pair]:
        assert self.registry is not None
        found = {_pair_key(pair_name(*p)) for p in _registry_pairs(self.registry)}
        return sorted(found)

    def _starting_price(self, pair: Pair, snapshot: PoolSnapshot) -> Decimal:
        for spec in DEFAULT_PAIRS:
            if spec.pair == pair:
                return spec.mid
        pool = snapshot.pools.get((Venue.RAYDIUM, pair)) or snapshot.pools.get(
            (Venue.METEORA, pair)
        )
        if pool is None:
            msg = f"no pool for {pair}"
            raise RpcFailure(msg)
        return _DIGITS.plus(pool_mid(pool))

    async def stop(self) -> None:
        await self.chain_events.stop()
        if self._commands is not None:
            await self._commands.stop()
        if self._producer is not None:
            await self._producer.stop()
        await self.source.close()

    # --- the loop ------------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event, *, slots: int | None = None) -> None:
        """Step at every slot of the chain until `stopping` is set (or `slots` steps)."""
        done = 0
        while not stopping.is_set() and (slots is None or done < slots):
            await self._wait_for_slot(stopping)
            if stopping.is_set():
                break
            await self.step()
            done += 1

    async def _wait_for_slot(self, stopping: asyncio.Event) -> None:
        poll = max(0.005, self.settings.slot_ms / 1000 / 8)
        while not stopping.is_set():
            [slot] = await self.source.call([("getSlot", [])])
            if int(slot) > self.slot:
                return
            await asyncio.sleep(poll)

    async def step(self) -> StepStats:
        """One slot: read, trade, publish."""
        began = time.process_time()
        snapshot = await self.source.snapshot()
        slot = snapshot.slot
        now = self._clock()
        trades = await self._read_trades(slot, now)
        self._start_launched_pairs(snapshot)
        await self._apply_commands(slot)
        for name in list(self.references):
            self.references[name] = self._reference(name, slot)
        sent = await self._send_flow(snapshot, slot)
        # A launched pair ticks from its open on (before it, it has no price anyone can trade).
        ticks = [
            self._tick(pair, snapshot, slot, now)
            for pair in self.pairs
            if pair_name(*pair) in self.references
        ]
        await self._publish(trades, ticks)
        self.slot = slot
        stats = StepStats(slot, len(ticks), len(trades), sent, time.process_time() - began)
        self.history.append(stats)
        return stats

    def _reference(self, name: str, slot: int) -> Decimal:
        move = self.moves.get(name)
        if move is not None:
            if move.finished(slot):
                del self.moves[name]
            return move.price(slot)
        return self._walk(name).advance(self.references[name], name, self.slot, slot)

    def _walk(self, name: str) -> Walk:
        return self.launch_walk if name in self.launched else self.walk

    # --- trades from the chain's blocks --------------------------------------------------------

    async def _read_trades(self, slot: int, now: datetime) -> list[MarketTrade]:
        first = self._blocks_done + 1
        last = min(slot, first + MAX_BLOCKS_PER_STEP - 1)
        if last < first:
            return []
        config = {"encoding": "json", "maxSupportedTransactionVersion": 0, "rewards": False}
        blocks = await self.source.call([("getBlock", [s, config]) for s in range(first, last + 1)])
        trades: list[MarketTrade] = []
        landed: set[str] = set()
        for block_slot, block in zip(range(first, last + 1), blocks, strict=True):
            for tx in block.get("transactions", []):
                landed.add(tx["transaction"]["signatures"][0])
                for trade in decode_trades(
                    tx, slot=block_slot, at=now, vaults=self._vaults, engine=self.engine
                ):
                    if (trade.signature, trade.venue, trade.pair) not in self._skip_trades:
                        trades.append(trade)
        self._blocks_done = last
        self._in_flight = {
            pool: (signature, sent)
            for pool, (signature, sent) in self._in_flight.items()
            if signature not in landed and slot - sent < IN_FLIGHT_SLOTS
        }
        return trades

    # --- commands ------------------------------------------------------------------------------

    async def _apply_commands(self, slot: int) -> None:
        if self._commands is None:
            return
        batches = await self._commands.getmany(timeout_ms=0)
        for records in batches.values():
            for record in records:
                try:
                    move = decode_move(record.value)
                except UndecodableCommand as exc:
                    log.warning("unreadable market command", error=str(exc))
                    continue
                self.apply_move(move, slot)

    def apply_move(self, move: MarketMove, slot: int) -> bool:
        """Start a move at `slot`; a stale command or an unknown pair is refused (False)."""
        age = (self._clock() - move.issued_at).total_seconds()
        if age > MAX_COMMAND_AGE_SECONDS:
            log.warning("stale market command ignored", pair=move.pair, age_seconds=age)
            return False
        if move.pair not in self.references:
            log.warning("market command for an unknown pair", pair=move.pair)
            return False
        n = max(1, math.ceil(move.over_seconds * 1000 / self.settings.slot_ms))
        self.moves[move.pair] = Move(self.references[move.pair], move.to, slot, n)
        log.info("market move", pair=move.pair, to=str(move.to), slots=n, start_slot=slot)
        return True

    # --- the background flow -------------------------------------------------------------------

    async def _send_flow(self, snapshot: PoolSnapshot, slot: int) -> int:
        assert self.registry is not None
        blockhash: Hash | None = None
        elapsed = max(1, slot - self.slot)
        wires: list[tuple[tuple[Venue, Pair], str, bytes]] = []
        for (venue, pair), pool in sorted(snapshot.pools.items()):
            if (venue, pair) in self._in_flight:
                continue
            name = pair_name(*pair)
            reference = self.references.get(name)
            if reference is None:
                continue
            walk = self._walk(name)
            target = walk.venue_target(reference, venue.value, name, slot)
            cap = self.settings.market_max_move_bps
            if walk is self.launch_walk:  # the flow must keep up with the faster walk
                cap *= Decimal(repr(LAUNCH_VOLATILITY_MULTIPLE))
            move = self.moves.get(name)
            if move is not None:
                cap = max(cap, 2 * move.step_bps)
            cap *= elapsed  # the cap is per slot: a step that follows skipped slots moves more
            trade = flow_trade(pool, target, max_move_bps=cap)
            if trade is None:
                continue
            if blockhash is None:
                [latest] = await self.source.call([("getLatestBlockhash", [])])
                blockhash = Hash.from_string(latest["value"]["blockhash"])
            tx = self._transaction(venue, pool, trade, blockhash)
            wires.append(((venue, pair), str(tx.signatures[0]), bytes(tx)))
        if not wires:
            return 0
        config = {"encoding": "base64", "skipPreflight": True}
        await self.source.call(
            [("sendTransaction", [base64.b64encode(w).decode(), config]) for _, _, w in wires]
        )
        for pool_key, signature, _ in wires:
            self._in_flight[pool_key] = (signature, slot)
        return len(wires)

    def _transaction(
        self, venue: Venue, pool: Pool, trade: FlowTrade, blockhash: Hash
    ) -> Transaction:
        assert self.registry is not None
        base, quote = pool.tokens
        mint_in = Pubkey.from_string(get_token(trade.token_in).mint)
        min_out = int(Decimal(trade.expected_out) * (1 - SLIPPAGE))
        owner = self.maker.pubkey()
        if venue is Venue.RAYDIUM:
            keys = cpmm_keys(self.registry.cpmm_for(base, quote))
            ix = self._builder.cpmm_swap_ix(
                owner, CpmmSwap(keys, mint_in, trade.amount_in, min_out)
            )
        else:
            dlmm = dlmm_keys(self.registry.dlmm_for(base, quote))
            ix = self._builder.dlmm_swap_ix(
                owner, DlmmSwap(dlmm, mint_in, trade.amount_in, min_out)
            )
        message = Message.new_with_blockhash(
            [set_compute_unit_limit(DEFAULT_COMPUTE_UNITS), ix], owner, blockhash
        )
        return Transaction([self.maker], message, blockhash)

    # --- ticks and publishing ------------------------------------------------------------------

    def _tick(self, pair: Pair, snapshot: PoolSnapshot, slot: int, now: datetime) -> MarketTick:
        name = pair_name(*pair)
        venues = []
        for venue in Venue:
            pool = snapshot.pools.get((venue, pair))
            if pool is None:
                continue
            bid, ask = depth(pool)
            venues.append(
                VenueTick(
                    venue=venue.value,
                    mid=_DIGITS.plus(pool_mid(pool)),
                    depth_bid=bid,
                    depth_ask=ask,
                )
            )
        return MarketTick(
            pair=name,
            base=pair[0],
            quote=pair[1],
            slot=slot,
            at=now,
            reference=self.references[name],
            venues=tuple(venues),
        )

    async def _publish(self, trades: list[MarketTrade], ticks: list[MarketTick]) -> None:
        assert self._producer is not None
        s = self.settings
        futures = []
        for trade in trades:
            self._trade_seq[trade.pair] = self._trade_seq.get(trade.pair, 0) + 1
            futures.append(
                await self._producer.send(
                    s.market_trades_topic,
                    value=encode_market(self._trade_seq[trade.pair], trade),
                    key=trade.pair.encode(),
                )
            )
        for tick in ticks:
            self._tick_seq[tick.pair] = self._tick_seq.get(tick.pair, 0) + 1
            futures.append(
                await self._producer.send(
                    s.market_ticks_topic,
                    value=encode_market(self._tick_seq[tick.pair], tick),
                    key=tick.pair.encode(),
                )
            )
        await asyncio.gather(*futures)


def _registry_pairs(registry: PoolRegistry) -> list[Pair]:
    pairs = [orient(c.symbol_0, c.symbol_1) for c in registry.cpmm]
    pairs += [orient(d.symbol_x, d.symbol_y) for d in registry.dlmm]
    return pairs
