"""A three-node Kafka cluster: how topics are made on it, and brokers failing under a steady
stream of orders. (One file, so one pytest-xdist worker runs one cluster at a time.)

One node of three lost, frozen or restarted never takes the in-sync quorum
(min.insync.replicas 2) away, so the promise is: every order answered 202 reaches
exactly one final state, none executes twice, the read models equal a replay, no
engine process needs a restart, and a 503 is only ever a refusal, never a 5xx or
a dropped connection. Outcomes are read from the log, the chain's ledger and the
read models, as in tests/e2e/test_crashes.py. Figures seen are in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from infra.kafka.launcher import KafkaBroker, KafkaCluster, KafkaLauncherError, read_metadata
from schemas.envelope import Envelope, utc_now
from services.common.kafka import dead_letter_summary, ensure_topics, topic_specs
from services.common.settings import Settings
from tests.e2e.system import System, order_payload, read_log
from tests.e2e.test_order_flow import assert_log_matches_read_models
from tests.fixtures.settings import unique
from tests.reliability.support import PAIRS, orders_on_log, router_ready, terminate, wait_all_final
from tests.reliability.test_dependency_outages import assert_resumed_in_process
from tests.reliability.test_poison import dead_letters

RATE_PER_SECOND = 12.0
PARTITIONS = 6
# On a cluster the API waits out a leader's failover (the lost node's session timeout,
# 4 s here, plus a controller election when it was the controller) and, for a frozen
# leader, the producer's 10 s request timeout, rather than refuse: docs/deployment.md
# sets it the same way.
PRODUCE_TIMEOUT_SECONDS = 15.0
# Slots for the scaling test: every order waits a slot or more to land, so orders are
# always in flight when partitions move.
SLOW_SLOT_MS = 1500


@dataclass
class SteadyLoad:
    """Orders sent at a fixed rate whatever the answers' latency (a slow answer does not
    slow the next send), each answer kept with when it was sent and how long it took."""

    base_url: str
    rate: float = RATE_PER_SECOND
    answers: list[tuple[float, str, float]] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        pending: set[asyncio.Task[None]] = set()
        # Idle connections are dropped after 2 s, before the API's (uvicorn's 5 s): with
        # both at 5 s, a request could go out on a connection the server was closing that
        # instant (httpx ReadError, seen once in CI about 5 s after a failover left dozens
        # of connections idle). Any client of a server with a keep-alive timeout must do so.
        limits = httpx.Limits(keepalive_expiry=2.0)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            n = 0
            began = time.monotonic()
            while not self._stop.is_set():
                task = asyncio.create_task(self._one(client, n))
                pending.add(task)
                task.add_done_callback(pending.discard)
                n += 1
                await asyncio.sleep(max(0.0, began + n / self.rate - time.monotonic()))
            if pending:
                await asyncio.gather(*pending)

    async def _one(self, client: httpx.AsyncClient, n: int) -> None:
        token_in, token_out, amount = PAIRS[n % len(PAIRS)]
        sent = time.monotonic()
        try:
            response = await client.post(
                f"{self.base_url}/api/orders/execute",
                json=order_payload(token_in, token_out, amount),
            )
        except httpx.HTTPError as exc:
            self.answers.append((sent, type(exc).__name__, time.monotonic() - sent))
            return
        self.answers.append((sent, str(response.status_code), time.monotonic() - sent))
        if response.status_code == 202:
            self.accepted.add(str(response.json()["orderId"]))

    def stop(self) -> None:
        self._stop.set()

    def outcomes(self) -> Counter[str]:
        return Counter(status for _, status, _ in self.answers)

    def slowest_accept(self) -> float:
        return max((took for _, status, took in self.answers if status == "202"), default=0.0)


# A lost node is fenced after the controller's broker.session.timeout.ms (4 s on these
# nodes), then leaderships move; an election of a new controller may come first. Past this
# many seconds after the fault, the failover itself failed (a load of 9 on 2 cores stretched
# it to 7 s at most).
FAILOVER_DEADLINE_SECONDS = 45.0


async def leaders_moved_off(cluster: KafkaCluster, topic: str, node_id: int, since: float) -> float:
    """Wait until every partition of `topic` has a live leader other than `node_id`.

    Until the controller fences the lost node (broker.session.timeout.ms) the
    metadata still names it as leader: writes to its partitions wait. A metadata read
    that fails (no node answered within 3 s on a loaded machine) is asked again.
    """
    leaders: dict[int, int] = {}
    while time.monotonic() - since < FAILOVER_DEADLINE_SECONDS:
        try:
            leaders = await asyncio.to_thread(cluster.leaders, topic)
        except KafkaLauncherError:
            leaders = {}
        if leaders and all(leader not in (-1, node_id) for leader in leaders.values()):
            return time.monotonic() - since
        await asyncio.sleep(0.1)
    raise AssertionError(
        f"leaders of {topic} not off node {node_id} {FAILOVER_DEADLINE_SECONDS:.0f} s after"
        f" the fault: {leaders}"
    )


@dataclass
class Report:
    """Figures of one fault, printed for docs/reliability.md (pytest -s shows them)."""

    fault: str
    figures: dict[str, Any] = field(default_factory=dict)
    fault_at: float = 0.0
    # When the fault took the in-sync quorum away: (from, to), monotonic seconds.
    no_quorum: tuple[float, float] | None = None

    def show(self) -> None:
        print(f"\n[{self.fault}] " + ", ".join(f"{k}={v}" for k, v in self.figures.items()))


async def under_steady_load(
    start_system: Any,
    cluster: KafkaCluster,
    fault: Callable[[System, Report], Awaitable[None]],
    report: Report,
    *,
    rate: float = RATE_PER_SECOND,
    around: float = 3.0,
    **overrides: Any,
) -> System:
    """Start a system on the cluster, run `fault` under a steady load, prove the outcome.

    The load runs `around` seconds before the fault (orders in flight on every partition
    when it comes) and as long after it (the engine took up the new leaders by itself).
    """
    began = time.monotonic()
    system: System = await start_system(
        venue_latency="realistic",
        venue_failure_rate="0.05",
        supervise=True,
        own_database=True,
        kafka_bootstrap_servers=cluster.bootstrap_servers,
        orders_topic_partitions=PARTITIONS,
        produce_timeout_seconds=PRODUCE_TIMEOUT_SECONDS,
        **overrides,
    )
    ready = await router_ready(system)
    load = SteadyLoad(system.base_url, rate)
    running = asyncio.create_task(load.run())
    try:
        await asyncio.sleep(around)
        await fault(system, report)
        await asyncio.sleep(around)
    finally:
        load.stop()
        await running
    outcomes = load.outcomes()
    refused = [sent - report.fault_at for sent, status, _ in load.answers if status != "202"]
    report.figures.update(
        refused_sent_at_s=f"{min(refused):.1f}..{max(refused):.1f}" if refused else "none",
        orders_sent=len(load.answers),
        outcomes=dict(outcomes),
        slowest_202_s=round(load.slowest_accept(), 2),
    )
    report.show()

    if report.no_quorum is None:
        # One node of three away never takes the quorum: no refusal, no error, no dropped
        # connection; every order waited out the failover at most.
        assert set(outcomes) == {"202"}, outcomes
    else:
        # Refused only while no quorum existed: sent during it, or so shortly before
        # that the API's wait for the log ran out inside it. Never a 5xx or a drop.
        lost, back = report.no_quorum
        assert set(outcomes) <= {"202", "503"}, outcomes
        assert outcomes["503"] > 0, outcomes
        for sent, status, _ in load.answers:
            if status == "503":
                assert lost - PRODUCE_TIMEOUT_SECONDS <= sent <= back, (sent - lost, back - lost)
    on_log = await orders_on_log(system)
    assert load.accepted <= on_log, f"accepted but not on the log: {load.accepted - on_log}"
    await wait_all_final(system, on_log | ready, timeout=90)
    report.figures["all_final_after_s"] = round(time.monotonic() - began, 1)
    await assert_log_matches_read_models(system, on_log | ready)
    await system.assert_replay_verifies()
    assert_resumed_in_process(system)
    await asyncio.to_thread(cluster.wait_fully_replicated)
    print(f"[{report.fault}] all proven, test_wall_s={time.monotonic() - began:.1f}")
    return system


async def stable_with(servers: str, groups: tuple[str, ...], members: int) -> None:
    """Wait until each consumer group is stable with this many members.

    Each group is described in a request of its own: aiokafka decodes a DescribeGroups v3
    answer with the v2 schema (`DescribeGroupsRequest_v3.RESPONSE_TYPE`), which lacks
    each group's trailing `authorized_operations`; one group decodes (the 4 bytes are
    left over), but two groups with the same coordinator share a request, and the second
    is read from the wrong offset ("Buffer underrun decoding string"), on every try:
    the scaling test then failed, "not stable", in about one run of three.
    """
    states: list[tuple[str, int]] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=servers)
        try:
            await admin.start()
            states = [
                (group["state"], len(group["members"]))
                for one in groups
                for response in await admin.describe_consumer_groups([one])
                for group in response.to_object()["groups"]
            ]
        except KafkaError:
            states = []  # no coordinator yet, or it moved: ask again
        finally:
            await admin.close()
        if len(states) == len(groups) and all(s == ("Stable", members) for s in states):
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"groups {groups} not stable with {members} members: {states}")


@pytest.fixture
def cluster(kafka_cluster: KafkaCluster) -> Iterator[KafkaCluster]:
    """The session's cluster; every node running, unfrozen and in sync again after the test."""
    yield kafka_cluster
    for node in kafka_cluster.nodes:
        node.resume()
        if not node.is_running():
            node.start()
    kafka_cluster.wait_fully_replicated()


@pytest.mark.slow
async def test_the_busiest_leader_killed_and_restarted_under_steady_load(
    start_system: Any, cluster: KafkaCluster
) -> None:
    report = Report("kill -9 of the busiest leader")

    async def kill_busiest_leader(system: System, report: Report) -> None:
        topic = system.settings.orders_topic
        leaders = await asyncio.to_thread(cluster.leaders, topic)
        victim: KafkaBroker = cluster.node(await asyncio.to_thread(cluster.busiest_leader, topic))
        led = sum(1 for leader in leaders.values() if leader == victim.node_id)
        killed_at = time.monotonic()
        await asyncio.to_thread(victim.kill)
        report.figures["victim_led_partitions"] = f"{led}/{len(leaders)}"
        report.fault_at = killed_at
        report.figures["leaders_moved_after_s"] = round(
            await leaders_moved_off(cluster, topic, victim.node_id, killed_at), 2
        )
        await asyncio.sleep(max(0.0, killed_at + 8 - time.monotonic()))  # down for 8 s
        restarted_at = time.monotonic()
        await asyncio.to_thread(victim.start)
        report.figures["node_restart_s"] = round(time.monotonic() - restarted_at, 2)
        await asyncio.to_thread(cluster.wait_fully_replicated, [topic])
        report.figures["in_sync_again_after_restart_s"] = round(time.monotonic() - restarted_at, 2)

    await under_steady_load(start_system, cluster, kill_busiest_leader, report)


@pytest.mark.slow
async def test_the_busiest_leader_frozen_twenty_seconds_under_steady_load(
    start_system: Any, cluster: KafkaCluster
) -> None:
    """SIGSTOP: unlike a kill, nothing tells the clients; their requests to it just hang."""
    report = Report("SIGSTOP of the busiest leader for 20 s")

    async def freeze_busiest_leader(system: System, report: Report) -> None:
        topic = system.settings.orders_topic
        victim = cluster.node(await asyncio.to_thread(cluster.busiest_leader, topic))
        report.fault_at = frozen_at = time.monotonic()
        victim.suspend()
        try:
            report.figures["leaders_moved_after_s"] = round(
                await leaders_moved_off(cluster, topic, victim.node_id, frozen_at), 2
            )
            await asyncio.sleep(max(0.0, frozen_at + 20 - time.monotonic()))
        finally:
            victim.resume()
        resumed_at = time.monotonic()
        await asyncio.to_thread(cluster.wait_fully_replicated, [topic])
        report.figures["in_sync_again_after_resume_s"] = round(time.monotonic() - resumed_at, 2)

    await under_steady_load(start_system, cluster, freeze_busiest_leader, report)


@pytest.mark.slow
async def test_a_rolling_restart_under_steady_load(
    start_system: Any, cluster: KafkaCluster
) -> None:
    """Each node stopped gracefully (its leaderships handed over first), started, back in
    sync, then the next: how an upgrade or a configuration change is rolled out."""
    report = Report("rolling restart of all three nodes")

    async def roll(system: System, report: Report) -> None:
        topic = system.settings.orders_topic
        report.fault_at = time.monotonic()
        for node in cluster.nodes:
            began = time.monotonic()
            await asyncio.to_thread(node.stop)
            await asyncio.to_thread(node.start)
            await asyncio.to_thread(cluster.wait_fully_replicated, [topic])
            report.figures[f"node_{node.node_id}_cycle_s"] = round(time.monotonic() - began, 1)

    await under_steady_load(start_system, cluster, roll, report)


def handovers(envelopes: list[Envelope]) -> list[tuple[datetime, float]]:
    """(when, seconds) between an order's last event by one router and its next event by
    another: how long an order in flight waited for its new owner when its partition moved."""
    last: dict[uuid.UUID, tuple[str, datetime]] = {}
    gaps: list[tuple[datetime, float]] = []
    for envelope in envelopes:
        if not envelope.producer.startswith("router:"):
            continue
        before = last.get(envelope.order_id)
        if before is not None and before[0] != envelope.producer:
            gaps.append((envelope.occurred_at, (envelope.occurred_at - before[1]).total_seconds()))
        last[envelope.order_id] = (envelope.producer, envelope.occurred_at)
    return gaps


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}..{max(values):.2f} s" if values else "none"


@pytest.mark.slow
async def test_routers_and_projectors_scaled_one_three_one_under_load(
    start_system: Any, cluster: KafkaCluster
) -> None:
    """Workers joining and leaving their groups under load: the partitions move between
    them, orders in flight move with them, and every order is still handled once."""
    report = Report("routers and projectors 1 -> 3 -> 1")
    extra = [(kind, str(n)) for n in (2, 3) for kind in ("router", "projector")]
    scaled_down_at: list[datetime] = []

    async def scale(system: System, report: Report) -> None:
        groups = (system.settings.router_group, system.settings.projector_group)
        report.fault_at = began = time.monotonic()
        for kind, instance in extra:
            system.start(kind, instance=instance)
        await stable_with(cluster.bootstrap_servers, groups, 3)
        report.figures["three_each_after_s"] = round(time.monotonic() - began, 1)
        await asyncio.sleep(2)  # three of each share the partitions under load
        began = time.monotonic()
        scaled_down_at.append(utc_now())
        # All four leave at once: two routers' orders in flight move at the same time.
        exits = await asyncio.gather(
            *(asyncio.to_thread(terminate, system, f"{kind}:{n}") for kind, n in extra)
        )
        await stable_with(cluster.bootstrap_servers, groups, 1)
        report.figures["one_each_after_s"] = round(time.monotonic() - began, 1)
        report.figures["sigterm_exits"] = [(round(took, 1), code) for took, code in exits]
        assert all(code == 0 for _, code in exits), exits

    # 8 orders/s and 2 s around the scaling: the rebalances, not the volume, are the point.
    # Slots of 1.5 s keep every order in flight for a slot or more, so about a dozen are
    # mid-way whenever the partitions move. With 400 ms slots an order lands within
    # ~0.5 s and a rebalance could meet none (CI saw that once the router got faster).
    system = await under_steady_load(
        start_system, cluster, scale, report, rate=8.0, around=2.0, slot_ms=SLOW_SLOT_MS
    )
    envelopes = [envelope for _, _, envelope in await read_log(system.settings)]
    # Every event here is valid: none may be dead-lettered (bug 6: routers taking
    # partitions over did, ~260 per run, for orders finished before the resume position).
    letters = [
        dead_letter_summary(letter.headers) for letter in await dead_letters(system.settings)
    ]
    assert letters == [], (len(letters), letters[:5])
    # The work was shared: more than one router finished orders.
    finishers = {e.producer for e in envelopes if e.type in ("OrderCompleted", "OrderFailed")}
    moved = handovers(envelopes)
    up = [gap for at, gap in moved if at < scaled_down_at[0]]
    down = [gap for at, gap in moved if at >= scaled_down_at[0]]
    print(
        f"[{report.fault}] routers that finished orders: {len(finishers)};"
        f" orders picked up by a new owner: {len(up)} when three joined, after {spread(up)};"
        f" {len(down)} when two left, after {spread(down)}"
    )
    assert len(finishers) >= 2, finishers
    # Orders were in flight when their partitions moved, and their new owner went on.
    assert moved, "no order changed router mid-way: the rebalances met no order in flight"


@pytest.mark.slow
async def test_two_nodes_of_three_lost_is_503_until_one_is_back(
    start_system: Any, cluster: KafkaCluster
) -> None:
    """The other side of the promise: without two in-sync copies a write cannot be
    acknowledged, so the API refuses (503) rather than accept what it cannot keep."""
    report = Report("kill -9 of two nodes of three for 15 s")

    async def kill_two(system: System, report: Report) -> None:
        victims = cluster.nodes[1:]
        report.fault_at = lost = time.monotonic()
        for node in victims:
            await asyncio.to_thread(node.kill)
        await asyncio.sleep(15)
        restarted_at = time.monotonic()
        await asyncio.to_thread(cluster.start)  # launches both, waits until both serve
        report.no_quorum = (lost, time.monotonic())
        report.figures["both_back_after_s"] = round(time.monotonic() - restarted_at, 1)
        await asyncio.to_thread(cluster.wait_fully_replicated, [system.settings.orders_topic])

    await under_steady_load(start_system, cluster, kill_two, report)


# -- topics on the cluster ------------------------------------------------------------


def cluster_settings(cluster: KafkaCluster) -> Settings:
    return Settings(
        kafka_bootstrap_servers=cluster.bootstrap_servers,
        orders_topic=unique("orders.events"),
        dead_letter_topic=unique("orders.deadletter"),
        orders_topic_partitions=6,
    )


async def topic_state(servers: str, topic: str) -> tuple[int, dict[str, str]]:
    """The smallest replica count of the topic's partitions, and its effective configs.

    Asked until the broker that answers knows the topic (a new one reaches each in turn).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        for _ in range(50):
            (described,) = await admin.describe_topics([topic])
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )
            configs = {e[0]: e[1] for r in responses for res in r.resources for e in res[4]}
            if described["partitions"] and configs:
                return min(len(p["replicas"]) for p in described["partitions"]), configs
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    raise AssertionError(f"{topic} not described within 5 s")


async def known_to_every_node(cluster: KafkaCluster, topic: str) -> None:
    """Wait until each node's metadata has the topic, as for one made long ago."""
    for _ in range(50):
        states = [
            read_metadata(node.host, node.port, 3.0, [topic]).partitions for node in cluster.nodes
        ]
        if all(parts and all(p.leader >= 0 for p in parts) for parts in states):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{topic} not known to every node within 5 s")


@pytest.mark.slow
async def test_topics_on_three_nodes_keep_three_copies_and_need_two(
    kafka_cluster: KafkaCluster, caplog: pytest.LogCaptureFixture
) -> None:
    settings = cluster_settings(kafka_cluster)
    servers = kafka_cluster.bootstrap_servers
    with caplog.at_level(logging.WARNING, logger="services.common.kafka"):
        check = await ensure_topics(servers, topic_specs(settings))
    assert (check.brokers, check.replication_factor, check.weaker) == (3, 3, ())
    assert not caplog.records
    for topic in (settings.orders_topic, settings.dead_letter_topic):
        factor, configs = await topic_state(servers, topic)
        assert factor == 3, topic
        assert configs["min.insync.replicas"] == "2"
        assert configs["unclean.leader.election.enable"] == "false"
        assert configs["retention.ms"] == "-1"
    # Leaders spread over the nodes, so losing one costs a third of the partitions, not all.
    assert len(set(kafka_cluster.leaders(settings.orders_topic).values())) >= 2


@pytest.mark.slow
async def test_an_existing_weaker_topic_is_reported_in_one_line_and_used(
    kafka_cluster: KafkaCluster, caplog: pytest.LogCaptureFixture
) -> None:
    settings = cluster_settings(kafka_cluster)
    servers = kafka_cluster.bootstrap_servers
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:  # as an older version, or an operator by hand, would have made it
        await admin.create_topics(
            [NewTopic(settings.orders_topic, num_partitions=6, replication_factor=1)]
        )
    finally:
        await admin.close()
    await known_to_every_node(kafka_cluster, settings.orders_topic)
    with caplog.at_level(logging.WARNING, logger="services.common.kafka"):
        check = await ensure_topics(servers, topic_specs(settings))
    assert len(check.weaker) == 1
    assert check.weaker[0].startswith(f"{settings.orders_topic}: ")
    assert "replication factor 1 < 3" in check.weaker[0]
    assert "min.insync.replicas 1 < 2" not in check.weaker[0]  # the broker default is 2 here
    (record,) = caplog.records
    message = record.getMessage()
    assert "\n" not in message
    assert settings.orders_topic in message
    assert settings.dead_letter_topic not in message  # created now, as it should be
    # Used as it is: not recreated or altered behind the operator's back.
    factor, _ = await topic_state(servers, settings.orders_topic)
    assert factor == 1
