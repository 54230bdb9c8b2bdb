"""Test wiring: real Kafka and PostgreSQL fixtures live in tests/fixtures/ as plugins.

`make test` runs the suite on two pytest-xdist workers (`--dist loadgroup`): most
tests wait on a broker, a database or a fault's clock, so two run in the time of
one. Each worker starts its own broker and database. A file stays on one worker
(its module-scoped systems start once), and every test of the three-node cluster
shares one worker, so only one cluster runs at a time.
"""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.postgres",
    "tests.fixtures.settings",
]

CLUSTER_GROUP = "kafka-cluster"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Group tests for `--dist loadgroup`: by file, and the cluster's all together."""
    for item in items:
        uses_cluster = "kafka_cluster" in getattr(item, "fixturenames", ())
        group = CLUSTER_GROUP if uses_cluster else item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))
