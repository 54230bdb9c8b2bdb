"""On a three-node cluster: topics are created to survive a lost node, weaker ones are named."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from infra.kafka.launcher import KafkaCluster, read_metadata
from services.common.kafka import ensure_topics, topic_specs
from services.common.settings import Settings
from tests.fixtures.settings import unique


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
