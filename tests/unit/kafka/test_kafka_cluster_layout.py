"""A cluster's nodes as configured, before any JVM starts: one cluster, one voter set."""

from __future__ import annotations

from pathlib import Path

from infra.kafka.launcher import KafkaCluster


def test_three_nodes_share_a_cluster_id_and_voters_but_nothing_else(tmp_path: Path) -> None:
    cluster = KafkaCluster(tmp_path, 3, base_port=19092)
    props = [node._properties() for node in cluster.nodes]
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    assert len({p["controller.quorum.voters"] for p in props}) == 1
    voters = props[0]["controller.quorum.voters"].split(",")
    assert [v.split("@")[0] for v in voters] == ["1", "2", "3"]
    assert [node.port for node in cluster.nodes] == [19092, 19093, 19094]
    assert len({node.controller_port for node in cluster.nodes}) == 3
    assert len({node.data_dir for node in cluster.nodes}) == 3
    assert {node.cluster_id for node in cluster.nodes} == {cluster.cluster_id}
    assert cluster.bootstrap_servers == "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
    assert props[0]["default.replication.factor"] == "3"
    assert props[0]["min.insync.replicas"] == "2"


def test_the_cluster_id_survives_a_restart_of_the_launcher(tmp_path: Path) -> None:
    """Nodes formatted with one id must find the same id next time (`oee up` again)."""
    first = KafkaCluster(tmp_path, 3).cluster_id
    assert KafkaCluster(tmp_path, 3).cluster_id == first


def test_one_node_keeps_the_single_node_settings(tmp_path: Path) -> None:
    (node,) = KafkaCluster(tmp_path, 1).nodes
    props = node._properties()
    assert props["default.replication.factor"] == "1"
    assert props["min.insync.replicas"] == "1"
    assert props["controller.quorum.voters"].count("@") == 1
