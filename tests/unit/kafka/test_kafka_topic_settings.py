"""Topic and broker settings follow the cluster's size; weaker existing topics are named."""

from __future__ import annotations

import pytest

from infra.kafka.launcher import DEFAULT_BROKER_CONFIG, cluster_broker_config
from services.common.kafka import TopicSpec, replication_for, weaker_settings
from services.common.settings import Settings


@pytest.mark.parametrize(
    ("brokers", "factor", "min_isr"), [(1, 1, "1"), (2, 2, "1"), (3, 3, "2"), (5, 3, "2")]
)
def test_replication_follows_the_cluster(brokers: int, factor: int, min_isr: str) -> None:
    got_factor, config = replication_for(brokers)
    assert got_factor == factor
    assert config == {"min.insync.replicas": min_isr, "unclean.leader.election.enable": "false"}


def test_three_nodes_replicate_internal_topics_too() -> None:
    config = cluster_broker_config(3)
    assert config["offsets.topic.replication.factor"] == "3"
    assert config["transaction.state.log.replication.factor"] == "3"
    assert config["transaction.state.log.min.isr"] == "2"
    assert config["min.insync.replicas"] == "2"
    assert config["unclean.leader.election.enable"] == "false"
    # The single node keeps its settings.
    assert DEFAULT_BROKER_CONFIG["offsets.topic.replication.factor"] == "1"


SPEC = TopicSpec("orders.events", 12, {"retention.ms": "-1"})
WANTED = {
    "retention.ms": "-1",
    "min.insync.replicas": "2",
    "unclean.leader.election.enable": "false",
}


def test_a_topic_as_it_would_be_created_is_not_weaker() -> None:
    assert weaker_settings(SPEC, 3, WANTED, partitions=12, factor=3, config=dict(WANTED)) == []
    # Stronger than needed is fine too.
    stronger = WANTED | {"min.insync.replicas": "3"}
    assert weaker_settings(SPEC, 3, WANTED, partitions=24, factor=5, config=stronger) == []


def test_every_shortfall_is_named() -> None:
    found = weaker_settings(
        SPEC,
        3,
        WANTED,
        partitions=6,
        factor=1,
        config={
            "retention.ms": "604800000",
            "min.insync.replicas": "1",
            "unclean.leader.election.enable": "true",
        },
    )
    assert found == [
        "6 partitions < 12",
        "replication factor 1 < 3",
        "retention.ms=604800000 (wants -1)",
        "min.insync.replicas 1 < 2",
        "unclean.leader.election.enable=true (wants false)",
    ]


def test_kafka_nodes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OEE_KAFKA_NODES", "3")
    settings = Settings()
    assert settings.kafka_nodes == 3
    assert settings.kafka_cluster_data_dir.name == "kafka-3-nodes"
    assert Settings(kafka_nodes=1).kafka_nodes == 1
