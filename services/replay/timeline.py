"""One order's story, told by the log alone: every record of it, decoded, folded, chain-checked.

The read model is asked at most where to look (the partition and first offset of
the order's events); the events themselves are read from the log. Building and
rendering the timeline are pure; only `read_order` does I/O.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from psycopg import sql
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from schemas.codec import UndecodableEvent, decode
from schemas.envelope import Envelope, record_hash
from schemas.events import (
    OrderAmended,
    OrderCancelled,
    OrderCompleted,
    OrderEvent,
    OrderExpired,
    OrderFailed,
    OrderOpened,
    OrderPartiallyFilled,
    OrderRetrying,
    OrderRouted,
    OrderSubmitted,
    OrderTriggered,
    OrderType,
    TransactionBuilt,
    TransactionSubmitted,
)
from services.common import kafka
from services.common.db import LIVE_SCHEMA
from services.common.settings import Settings
from services.domain.order import OrderState
from services.projector.projection import LogRecord, order_row, project
from services.replay.hashchain import chain_breaks
from services.replay.rebuilder import topic_partitions


@dataclass(frozen=True)
class TimedRecord:
    """A log record with the time the log gave it."""

    record: LogRecord
    timestamp: datetime


@dataclass(frozen=True)
class Entry:
    """One record of the order on the log, and what the fold made of it."""

    partition: int
    offset: int
    log_time: datetime
    hash: str
    envelope: Envelope | None  # None when the record could not be decoded
    applied: bool  # False for a duplicate or a rejected record
    chain_ok: bool | None  # None when not applied (nothing to check against)
    note: str | None  # why it was not applied, or what is wrong with its chain link


@dataclass(frozen=True)
class Timeline:
    order_id: uuid.UUID
    topic: str
    entries: tuple[Entry, ...]
    state: OrderState | None  # the fold of the applied events: the order as the log tells it


def build_timeline(order_id: uuid.UUID, topic: str, records: Sequence[TimedRecord]) -> Timeline:
    """Fold the order's records (log order) with the projector's own `project`."""
    plain = [r.record for r in records]
    projection = project(plain, {})
    applied = {(row.partition, row.offset): row for row in projection.events}
    rejected = {(r.record.partition, r.record.offset): r.reason for r in projection.rejected}
    broken = {(b.partition, b.offset): b for b in chain_breaks(projection.events, {})}
    entries: list[Entry] = []
    for timed in records:
        record = timed.record
        where = (record.partition, record.offset)
        row = applied.get(where)
        envelope: Envelope | None = row.envelope if row else None
        if envelope is None:
            try:
                envelope = decode(record.value)
            except UndecodableEvent:
                envelope = None
        note: str | None = None
        if where in rejected:
            note = f"rejected: {rejected[where]}"
        elif row is None:
            note = "duplicate: already applied, ignored"
        elif where in broken:
            note = f"hash chain broken: {broken[where].describe()}"
        entries.append(
            Entry(
                partition=record.partition,
                offset=record.offset,
                log_time=timed.timestamp,
                hash=record_hash(record.value or b""),
                envelope=envelope,
                applied=row is not None,
                chain_ok=None if row is None else where not in broken,
                note=note,
            )
        )
    return Timeline(order_id, topic, tuple(entries), projection.states.get(order_id))


# -- JSON -------------------------------------------------------------------------------


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(timeline: Timeline) -> bytes:
    """The timeline for machines: every record with its log position, hash and event."""
    document = {
        "order_id": str(timeline.order_id),
        "topic": timeline.topic,
        "state": order_row(timeline.state) if timeline.state else None,
        "events": [
            {
                "partition": e.partition,
                "offset": e.offset,
                "log_time": e.log_time,
                "hash": e.hash,
                "applied": e.applied,
                "chain_ok": e.chain_ok,
                "note": e.note,
                "event": e.envelope.model_dump(mode="json") if e.envelope else None,
            }
            for e in timeline.entries
        ],
    }
    return orjson.dumps(
        document, default=_json_default, option=orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z
    )


# -- rich -------------------------------------------------------------------------------


def _details(event: OrderEvent) -> list[str]:
    """What an event says, in a few human lines."""
    match event:
        case OrderSubmitted():
            lines = [
                f"sell {event.amount} {event.token_in} for {event.token_out},"
                f" slippage {event.slippage:%}"
                + (f", client order {event.client_order_id}" if event.client_order_id else "")
            ]
            if event.order_type is not OrderType.MARKET:
                lines.append(f"{event.order_type.value}: {_conditions(event)}")
            return lines
        case OrderRouted():
            lines = [f"attempt {event.attempt}: quotes seen"]
            for quote in event.quotes:
                seen = (
                    f"error {quote.error}"
                    if quote.error
                    else f"out {quote.amount_out}, fee {quote.fee}, impact {quote.price_impact}"
                )
                lines.append(f"  {quote.venue}: {seen}")
            plan = event.plan
            legs = ", ".join(
                f"{leg.venue} {leg.token_in}->{leg.token_out} {leg.share:.0%}" for leg in plan.legs
            )
            lines.append(
                f"decision: {plan.kind} [{legs}] out {plan.amount_out}, min {plan.min_amount_out}"
                f" (slot {plan.market_slot}, split gain {plan.split_improvement_bps} bps)"
            )
            lines.append(f"reason: {event.reason}")
            return lines
        case TransactionBuilt():
            return [f"attempt {event.attempt}: min out {event.min_amount_out}"]
        case TransactionSubmitted():
            return [f"attempt {event.attempt}: signature {event.tx_hash}"]
        case OrderRetrying():
            return [f"attempt {event.attempt} failed: {event.code} {event.error};"
                    f" retry in {event.delay_seconds}s"]  # fmt: skip
        case OrderCompleted():
            return [
                f"fill: {event.amount_in} in, {event.amount_out} out on {event.selected_dex}"
                f" at {event.executed_price}, fee {event.fee}",
                f"signature {event.tx_hash}",
            ]
        case OrderFailed():
            return [
                f"{event.code}: {event.error} (after {event.attempts} attempt(s),"
                f" {'retryable' if event.retryable else 'final'})"
            ]
        case OrderTriggered():
            return [
                f"{event.leg} {event.level} crossed by the {event.pair} tick at slot"
                f" {event.slot}, price {event.price}"
            ]
        case OrderOpened():
            best = "" if event.best_amount_out is None else f" (best out {event.best_amount_out})"
            return [f"rests again: {event.reason}{best}"]
        case OrderPartiallyFilled():
            return [
                f"part: {event.amount_in} in, {event.amount_out} out, fee {event.fee};"
                f" {event.remaining} rests",
                f"signature {event.tx_hash}",
            ]
        case OrderCancelled():
            return [event.reason + (f" (key {event.by})" if event.by else "")]
        case OrderExpired():
            return [f"expired at {event.expires_at.isoformat()}"]
        case OrderAmended():
            return [f"amended: {_conditions(event)}" + (f" (key {event.by})" if event.by else "")]
    return []  # pragma: no cover - the match covers every event type


def _conditions(event: OrderSubmitted | OrderAmended) -> str:
    """A conditional order's prices and expiry as set by its submission or an amend."""
    named = {
        "limit": event.limit_price,
        "trigger": event.trigger_price,
        "take profit": event.take_profit_price,
        "stop loss": event.stop_loss_price,
        "trailing bps": event.trailing_bps,
        "expires": event.expires_at.isoformat() if event.expires_at else None,
    }
    return ", ".join(f"{name} {value}" for name, value in named.items() if value is not None)


def render(timeline: Timeline, console: Console) -> None:
    """The timeline for people: a summary, then one row per record of the order."""
    state = timeline.state
    if state is None:
        summary = Text("no applicable event of this order on the log", style="yellow")
    else:
        lines = [
            f"{state.amount} {state.token_in} -> {state.token_out}   status [bold]"
            f"{state.status.value}[/bold] after {state.sequence} events",
            f"created {state.created_at.isoformat()}   last change {state.updated_at.isoformat()}",
        ]
        if state.order_type is not OrderType.MARKET:
            lines.append(f"{state.order_type.value} order")
        if state.triggered_slot is not None:
            # The last trigger's tick (an order put back or partly filled may trigger again).
            lines.append(f"last triggered by the tick at slot {state.triggered_slot},"
                         f" price {state.triggered_price}")  # fmt: skip
        if state.amount_out is not None:
            lines.append(f"filled {state.amount_out} {state.token_out} on {state.selected_dex}"
                         f" at {state.executed_price} (fee {state.fee})")  # fmt: skip
        if state.error_code:
            lines.append(f"[red]{state.error_code}: {state.error}[/red]")
        summary = Text.from_markup("\n".join(lines))
    console.print(Panel(summary, title=f"order {timeline.order_id}", subtitle=timeline.topic))
    table = Table(show_lines=True)
    for column in ("time (UTC)", "seq", "event", "producer", "log", "chain", "what happened"):
        table.add_column(column, overflow="fold")
    for entry in timeline.entries:
        envelope = entry.envelope
        chain = {True: "[green]ok[/green]", False: "[red]BROKEN[/red]", None: "-"}[entry.chain_ok]
        lines = _details(envelope.payload) if envelope else []
        if entry.note:
            lines.append(f"[yellow]{entry.note}[/yellow]")
        table.add_row(
            (envelope.occurred_at if envelope else entry.log_time).strftime("%H:%M:%S.%f")[:-3],
            str(envelope.sequence) if envelope else "?",
            f"{envelope.type} v{envelope.version}" if envelope else "unreadable",
            envelope.producer if envelope else "",
            f"{entry.partition}/{entry.offset}",
            chain,
            Text.from_markup("\n".join(lines)),
            style=None if entry.applied else "dim",
        )
    console.print(table)


# -- reading the log --------------------------------------------------------------------


def partition_of(order_id: uuid.UUID, partitions: int) -> int:
    """The partition Kafka's default partitioner puts the order's key in."""
    hashed: int = murmur2(str(order_id).encode())
    return (hashed & 0x7FFFFFFF) % partitions


async def _hint(settings: Settings, live: str, order_id: uuid.UUID) -> tuple[int, int] | None:
    """Where the read model saw the order's first event, if it is reachable and knows it."""
    try:
        async with await psycopg.AsyncConnection.connect(
            str(settings.database_url), connect_timeout=3
        ) as conn:
            cursor = await conn.execute(
                sql.SQL(
                    "SELECT log_partition, min(log_offset) FROM {} WHERE order_id = %s"
                    " GROUP BY log_partition ORDER BY 2 LIMIT 1"
                ).format(sql.Identifier(live, "order_events")),
                (order_id,),
            )
            row = await cursor.fetchone()
    except psycopg.Error:
        return None
    return (int(row[0]), int(row[1])) if row else None


async def _scan(
    consumer: AIOKafkaConsumer, starts: dict[TopicPartition, int], key: bytes
) -> list[TimedRecord]:
    ends = await consumer.end_offsets(list(starts))
    consumer.assign(list(starts))
    pending = {tp: end for tp, end in ends.items() if end > starts[tp]}
    for tp in pending:
        consumer.seek(tp, starts[tp])
    found: list[TimedRecord] = []
    while pending:
        fetched = await consumer.getmany(*pending, timeout_ms=500, max_records=10_000)
        for tp, messages in fetched.items():
            found.extend(
                TimedRecord(
                    LogRecord(m.topic, m.partition, m.offset, m.key, m.value),
                    datetime.fromtimestamp(m.timestamp / 1000, UTC),
                )
                for m in messages
                if m.key == key and m.offset < pending[tp]
            )
        for tp, end in list(pending.items()):
            if await consumer.position(tp) >= end:
                del pending[tp]
    found.sort(key=lambda r: (r.record.partition, r.record.offset))
    return found


async def read_order(
    settings: Settings, order_id: uuid.UUID, *, live: str = LIVE_SCHEMA
) -> Timeline:
    """Scan the log for the order's records and fold them into its timeline."""
    servers = str(settings.kafka_bootstrap_servers)
    topic = settings.orders_topic
    consumer = kafka.log_reader(servers, client_id="oee-replay-order")
    try:
        await asyncio.wait_for(consumer.start(), 15)
    except (KafkaError, OSError, TimeoutError) as exc:
        await consumer.stop()
        raise kafka.unreachable(servers, exc) from None
    try:
        partitions = await topic_partitions(servers, topic)
        if not partitions:
            return Timeline(order_id, topic, (), None)
        key = str(order_id).encode()
        hint = await _hint(settings, live, order_id) if settings.database_url else None
        if hint is not None:
            starts = {TopicPartition(topic, hint[0]): hint[1]}
        else:
            tp = TopicPartition(topic, partition_of(order_id, len(partitions)))
            starts = {tp: (await consumer.beginning_offsets([tp]))[tp]}
        records = await _scan(consumer, starts, key)
        if not records:
            # Not where expected (a custom partitioner?): look everywhere.
            everywhere = [TopicPartition(topic, p) for p in partitions]
            begins = await consumer.beginning_offsets(everywhere)
            records = await _scan(consumer, dict(begins), key)
        return build_timeline(order_id, topic, records)
    finally:
        await consumer.stop()
