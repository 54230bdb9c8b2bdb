"""Kafka edge: the topics, producers that only report success once a write is durable,
and the dead-letter path every consumer shares.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    NodeNotReadyError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    RequestTimedOutError,
    TopicAlreadyExistsError,
)
from aiokafka.structs import RecordMetadata

from services.common.errors import DependencyUnavailable
from services.common.metrics import DEAD_LETTERS
from services.common.process import retry_while_down
from services.common.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    """A topic as the system needs it; created at start-up if missing."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> tuple[TopicSpec, ...]:
    """Every topic the system writes. The order log is kept forever: it is the source of truth."""
    forever = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
    return (
        TopicSpec(settings.orders_topic, settings.orders_topic_partitions, forever),
        TopicSpec(settings.dead_letter_topic, 1, forever),
        # The market's source of truth, keyed by pair ("SOL-USDC"), replayable like the log.
        TopicSpec(settings.market_ticks_topic, settings.market_topic_partitions, forever),
        TopicSpec(settings.market_trades_topic, settings.market_topic_partitions, forever),
        # Admin commands (`oee market move`): only the running process acts on them.
        TopicSpec(settings.market_commands_topic, 1, {"retention.ms": str(24 * 3600 * 1000)}),
        # The chain's own events (launches, pools opening, authorities): one partition, so every
        # reader folds launches in one order; replayable like the log.
        TopicSpec(settings.chain_events_topic, 1, forever),
    )


def unreachable(servers: str, exc: BaseException | None = None) -> DependencyUnavailable:
    reason = f" ({exc})" if exc and str(exc) else ""
    return DependencyUnavailable(
        f"Kafka is not reachable at {servers}{reason};"
        " set KAFKA_BOOTSTRAP_SERVERS to a running broker"
    )


def replication_for(brokers: int) -> tuple[int, dict[str, str]]:
    """Replication factor and settings a topic needs on a cluster of `brokers`.

    Why: three copies, two of which must have every acknowledged write (acks=all),
    survive one lost broker with nothing lost and nothing refused; an out-of-sync
    replica must never become leader, or acknowledged events would vanish.
    """
    factor = min(3, max(brokers, 1))
    return factor, {
        "min.insync.replicas": "2" if factor >= 3 else "1",
        "unclean.leader.election.enable": "false",
    }


@dataclass(frozen=True)
class TopicCheck:
    """What ensure_topics found: the live brokers, the factor used, and topics that fall short."""

    brokers: int
    replication_factor: int
    weaker: tuple[str, ...] = ()


def weaker_settings(
    spec: TopicSpec,
    wanted_factor: int,
    wanted_config: dict[str, str],
    *,
    partitions: int,
    factor: int,
    config: dict[str, str],
) -> list[str]:
    """How an existing topic falls short of what would be created now (empty: it does not)."""
    found: list[str] = []
    if partitions < spec.partitions:
        found.append(f"{partitions} partitions < {spec.partitions}")
    if factor < wanted_factor:
        found.append(f"replication factor {factor} < {wanted_factor}")
    for key, value in wanted_config.items():
        have = config.get(key)
        if key == "min.insync.replicas" and have is not None and have.isdigit():
            if int(have) < int(value):
                found.append(f"{key} {have} < {value}")
        elif have is not None and have != value:
            found.append(f"{key}={have} (wants {value})")
    return found


async def ensure_topics(
    servers: str, specs: Iterable[TopicSpec], timeout: float = 15.0
) -> TopicCheck:
    """Create the missing topics to suit the cluster; report existing ones that are weaker.

    An existing topic is used as it is (changing its replication is an operator's
    decision), but one that falls short is named in one warning line, not silently used.
    """
    specs = list(specs)
    admin = AIOKafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
    except (KafkaError, OSError, TimeoutError) as exc:
        await admin.close()
        raise unreachable(servers, exc) from None
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        factor, replication = replication_for(brokers)
        existing = set(await admin.list_topics())
        present = [s for s in specs if s.name in existing]
        for spec in specs:
            if spec.name in existing:
                continue
            new = NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=factor,
                topic_configs=spec.config | replication,
            )
            try:
                await admin.create_topics([new])
            except TopicAlreadyExistsError:
                # Made by another process first, or not yet in the metadata we listed.
                present.append(spec)
        weaker = await _weaker_topics(admin, present, factor, replication) if present else []
    finally:
        await admin.close()
    if weaker:
        log.warning(
            "Kafka topics weaker than this %d-broker cluster needs, used as they are: %s",
            brokers,
            "; ".join(weaker),
        )
    return TopicCheck(brokers, factor, tuple(weaker))


async def _weaker_topics(
    admin: AIOKafkaAdminClient,
    specs: list[TopicSpec],
    factor: int,
    replication: dict[str, str],
) -> list[str]:
    described = {t["topic"]: t for t in await admin.describe_topics([s.name for s in specs])}
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in specs]
    )
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.resources:
            configs[resource[3]] = {entry[0]: entry[1] for entry in resource[4]}
    weaker: list[str] = []
    for spec in specs:
        parts = described.get(spec.name, {}).get("partitions", [])
        if not parts:
            continue  # just made by another process, not yet known to this broker
        found = weaker_settings(
            spec,
            factor,
            spec.config | replication,
            partitions=len(parts),
            factor=min((len(p["replicas"]) for p in parts), default=0),
            config=configs.get(spec.name, {}),
        )
        if found:
            weaker.append(f"{spec.name}: {', '.join(found)}")
    return weaker


def durable_producer(servers: str, *, client_id: str, linger_ms: int = 2) -> AIOKafkaProducer:
    """acks=all and idempotence: a send that returns is on the log, once."""
    producer = AIOKafkaProducer(
        bootstrap_servers=servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        # Longer than a cluster's failover (a lost node's session timeout plus an election):
        # a write to a leader waiting for a lost follower to leave its in-sync set is
        # answered, not timed out, and a batch waiting for a new leader is not expired.
        # A frozen leader holds a write this long; the API waits longer (docs/deployment.md).
        request_timeout_ms=10_000,
    )
    _refresh_metadata_after_timeouts(producer.client)
    return producer


# How long a broker that did not answer is left out of metadata requests (if another
# can answer them): three request timeouts, longer than a failover.
SILENT_BROKER_SECONDS = 30.0
_AVOIDED: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "oee_avoided_brokers", default=frozenset()
)


def _refresh_metadata_after_timeouts(client: AIOKafkaClient) -> None:
    """Ask for fresh metadata when a broker does not answer or cannot be reached, as Java
    clients do, and ask the other brokers for it.

    Why: aiokafka retries such a write at the same leader and refreshes metadata only
    on errors it deems stale-metadata ones, so a write to a frozen (SIGSTOPped, hung)
    leader would go back to it until the periodic refresh, minutes later. And it asks
    a broker picked at random for the metadata: picking the frozen one (its sockets
    accept and never answer) cost another request timeout, 20 s in all, and the API's
    wait ran out (21 of 319 orders 503 in one SIGSTOP run). A broker that timed out is
    left out of metadata requests for SILENT_BROKER_SECONDS, unless no other is known.
    """
    send = client.send
    metadata_update = client._metadata_update
    get_conn = client._get_conn
    silent_since: dict[int, float] = {}

    async def send_then_refresh(node_id: int, request: Any, **kwargs: Any) -> Any:
        try:
            return await send(node_id, request, **kwargs)
        except (RequestTimedOutError, NodeNotReadyError, KafkaConnectionError):
            silent_since[node_id] = time.monotonic()
            client.force_metadata_update()
            raise

    async def metadata_update_from_others(cluster_metadata: Any, topics: Any) -> Any:
        now = time.monotonic()
        known = {broker.nodeId for broker in client.cluster.brokers()}
        silent = {n for n, t in silent_since.items() if now - t < SILENT_BROKER_SECONDS}
        avoided = frozenset(silent & known) if known - silent else frozenset()
        token = _AVOIDED.set(avoided)
        try:
            return await metadata_update(cluster_metadata, topics)
        finally:
            _AVOIDED.reset(token)

    async def conn_unless_avoided(node_id: Any, **kwargs: Any) -> Any:
        if node_id in _AVOIDED.get():
            return None  # aiokafka's metadata update then asks the next broker
        return await get_conn(node_id, **kwargs)

    client.send = send_then_refresh
    client._metadata_update = metadata_update_from_others
    client._get_conn = conn_unless_avoided


# While records flow, a fetch waits up to BUSY_FETCH_MAX_WAIT_MS for BUSY_FETCH_MIN_BYTES.
# Each fetch costs the broker about as much as the records it carries (a 900 records/s
# produce with three live readers: 2.5 s of broker CPU for the fetches with 1 byte, 0.8 s
# with 64 KiB and 10 ms; docs/benchmarks.md, "Second round, the projector and the broker").
BUSY_FETCH_MIN_BYTES = 64 * 1024
BUSY_FETCH_MAX_WAIT_MS = 5


@dataclass(frozen=True)
class FetchWait:
    """What a fetch asks the broker to wait for: this many bytes, or this many ms."""

    min_bytes: int
    max_wait_ms: int


def next_fetch_wait(got_records: bool, idle: FetchWait) -> FetchWait:
    """The wait of a consumer's next fetch, from what its last fetch brought.

    Records came: more are likely, so gather them (at most BUSY_FETCH_MAX_WAIT_MS more
    latency). Nothing came within that wait: back to the consumer's own settings, where
    the first record after a quiet spell is answered at once and an idle consumer polls
    as rarely as before (a fixed short wait made an idle system poll 100 times a second
    per consumer, the reason it was not kept before).
    """
    if got_records:
        return FetchWait(max(idle.min_bytes, BUSY_FETCH_MIN_BYTES), BUSY_FETCH_MAX_WAIT_MS)
    return idle


def batch_fetches_while_busy(consumer: AIOKafkaConsumer) -> None:
    """Choose each fetch's wait of a started consumer by `next_fetch_wait`.

    For every live reader of the order log: the projector (it lingers for a batch anyway),
    the API's live feed and the router's faust consumer. A record at most 5 ms later is
    nothing to a socket; for the router it is the price of answering fewer fetches, which
    at 300 orders/s cut its routing p50 from 0.4-0.7 s to 0.1 s (docs/benchmarks.md,
    "Issue 20, fourth pass").
    """
    fetcher = consumer._fetcher
    assert fetcher is not None, "start the consumer first: it makes its fetcher then"
    idle = FetchWait(fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms)
    fetch = fetcher._proc_fetch_request

    async def fetch_then_choose_next_wait(assignment: Any, node_id: int, request: Any) -> bool:
        got_records = bool(await fetch(assignment, node_id, request))
        wait = next_fetch_wait(got_records, idle)
        # Read by aiokafka when it builds the next fetch request (one in flight per broker).
        fetcher._fetch_min_bytes = wait.min_bytes
        fetcher._fetch_max_wait_ms = wait.max_wait_ms
        return got_records

    fetcher._proc_fetch_request = fetch_then_choose_next_wait


def log_reader(servers: str, *, client_id: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer of no group that reads committed records from the start: the log as written.

    For tools that read the log themselves (replay, timelines) rather than share its
    partitions with others; `options` add to or override the defaults.
    """
    return AIOKafkaConsumer(
        bootstrap_servers=servers,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        **options,
    )


async def start_producer(producer: AIOKafkaProducer, servers: str, timeout: float = 15.0) -> None:
    try:
        await asyncio.wait_for(producer.start(), timeout)
    except (KafkaConnectionError, KafkaError, OSError, TimeoutError) as exc:
        await producer.stop()
        raise unreachable(servers, exc) from None


class RenewingProducer:
    """A durable producer that replaces itself when the log stops accepting its sequence numbers.

    aiokafka fails a batch that expires while its partition has no leader (a broker
    restart) after giving it a sequence number the broker never sees; every later
    write of that idempotent producer to the partition is then refused with
    OutOfOrderSequenceNumber, forever, since aiokafka never resets its producer id.
    A write that meets it starts a fresh producer (once, however many writes saw the
    error), waits for it, and raises: the broker refused the write, so the caller's
    retry, which goes to the fresh producer, cannot duplicate it.
    """

    def __init__(self, servers: str, *, client_id: str, linger_ms: int = 2) -> None:
        self.servers = servers
        self.client_id = client_id
        self.linger_ms = linger_ms
        self.current = self._new()
        self._renewal: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    def _new(self) -> AIOKafkaProducer:
        return durable_producer(self.servers, client_id=self.client_id, linger_ms=self.linger_ms)

    async def start(self) -> None:
        await start_producer(self.current, self.servers)

    async def send_and_wait(
        self,
        topic: str,
        *,
        value: bytes | None,
        key: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> RecordMetadata:
        producer = self.current
        try:
            return await producer.send_and_wait(topic, value=value, key=key, headers=headers)
        except (OutOfOrderSequenceNumber, ProducerFenced):
            await self._renew_after_refusal(producer)
            raise

    async def send_all_and_wait(
        self, topic: str, *, values: Sequence[bytes], key: bytes
    ) -> list[RecordMetadata]:
        """Several records under one key, in this order, acknowledged together: they share a
        produce request instead of each waiting for the acknowledgement of the one before."""
        if len(values) == 1:
            return [await self.send_and_wait(topic, value=values[0], key=key)]
        producer = self.current
        try:
            pending = [await producer.send(topic, value=value, key=key) for value in values]
        except (OutOfOrderSequenceNumber, ProducerFenced):
            await self._renew_after_refusal(producer)
            raise
        # Every outcome retrieved, then the first failure raised: none left unobserved.
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        written: list[RecordMetadata] = []
        for outcome in outcomes:
            if isinstance(outcome, OutOfOrderSequenceNumber | ProducerFenced):
                await self._renew_after_refusal(producer)
            if isinstance(outcome, BaseException):
                raise outcome
            written.append(outcome)
        return written

    async def _renew_after_refusal(self, producer: AIOKafkaProducer) -> None:
        if self.current is producer:
            if self._renewal is None:
                self._renewal = asyncio.create_task(self._renew(producer))
            # Shielded: a caller that gives up (a request's timeout) leaves it running.
            await asyncio.shield(self._renewal)

    async def _renew(self, broken: AIOKafkaProducer) -> None:
        try:

            async def start_fresh() -> AIOKafkaProducer:
                fresh = self._new()
                await start_producer(fresh, self.servers)
                return fresh

            self.current = await retry_while_down(
                start_fresh,
                is_outage=lambda exc: isinstance(exc, DependencyUnavailable),
                what="Kafka, for a new producer,",
            )
            log.warning("Kafka producer replaced: its sequence numbers no longer matched the log")
            retire = asyncio.create_task(_stop_quietly(broken))
            self._retiring.add(retire)
            retire.add_done_callback(self._retiring.discard)
        finally:
            self._renewal = None

    async def flush(self) -> None:
        """Wait until every record handed to the producer so far is on the log (or failed)."""
        await self.current.flush()

    async def stop(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
        if self._retiring:
            _, unfinished = await asyncio.wait(self._retiring, timeout=5)
            for task in unfinished:
                task.cancel()
        await self.current.stop()


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    """Stop a replaced producer: its pending writes land or fail (and their callers retry)."""
    try:
        await producer.stop()
    except (KafkaError, OSError) as exc:
        log.warning("replaced producer did not stop cleanly: %s", exc)


@dataclass(frozen=True)
class DeadLetter:
    """Where a record came from and why it could not be handled."""

    topic: str
    partition: int
    offset: int
    reason: str
    consumer: str


async def send_to_dead_letter(
    producer: AIOKafkaProducer | RenewingProducer,
    dead_letter_topic: str,
    letter: DeadLetter,
    key: bytes | None,
    value: bytes | None,
) -> None:
    """Park an unreadable record, with its provenance in headers, and move on."""
    headers = [
        ("dlq.reason", letter.reason.encode()),
        ("dlq.source", f"{letter.topic}/{letter.partition}/{letter.offset}".encode()),
        ("dlq.consumer", letter.consumer.encode()),
    ]
    await producer.send_and_wait(dead_letter_topic, value=value, key=key, headers=headers)
    DEAD_LETTERS.labels(letter.consumer).inc()
    log.warning(
        "dead-lettered %s/%s/%s: %s", letter.topic, letter.partition, letter.offset, letter.reason
    )


def dead_letter_summary(headers: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    """The provenance headers of a dead letter, decoded (for tools and tests)."""
    return {k: v.decode(errors="replace") for k, v in headers if k.startswith("dlq.")}
