"""Brings up Kafka and PostgreSQL for `oee up` when the environment names none.

`KAFKA_BOOTSTRAP_SERVERS` and `DATABASE_URL` always win: when set, nothing is
started and the servers they name are used as they are.
"""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from types import TracebackType

from infra.kafka.launcher import KafkaBroker, KafkaCluster, KafkaLauncherError
from infra.postgres.launcher import EmbeddedPostgres, PostgresLauncherError
from services.common.db import migrate
from services.common.errors import DependencyUnavailable
from services.common.kafka import ensure_topics, topic_specs
from services.common.settings import Settings


class LocalDependencies:
    """Context manager: the effective settings, with our own servers started if needed."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stack = ExitStack()
        self.started: list[str] = []

    def __enter__(self) -> Settings:
        settings = self._settings
        updates: dict[str, str] = {}
        try:
            if settings.kafka_bootstrap_servers is None and settings.kafka_nodes > 1:
                cluster = KafkaCluster(
                    settings.kafka_cluster_data_dir,
                    settings.kafka_nodes,
                    base_port=settings.kafka_port,
                )
                self._stack.enter_context(cluster)
                updates["kafka_bootstrap_servers"] = cluster.bootstrap_servers
                self.started.append(
                    f"Kafka cluster of {settings.kafka_nodes} nodes on {cluster.bootstrap_servers}"
                    f" (data in {cluster.data_dir})"
                )
            elif settings.kafka_bootstrap_servers is None:
                broker = KafkaBroker(settings.kafka_data_dir, settings.kafka_port)
                self._stack.enter_context(broker)
                updates["kafka_bootstrap_servers"] = broker.bootstrap_servers
                self.started.append(
                    f"Kafka on {broker.bootstrap_servers} (data in {broker.data_dir})"
                )
            if settings.database_url is None:
                postgres = EmbeddedPostgres(settings.postgres_data_dir, settings.postgres_port)
                self._stack.enter_context(postgres)
                updates["database_url"] = postgres.url
                self.started.append(f"PostgreSQL on {postgres.url} (data in {postgres.data_dir})")
        except (KafkaLauncherError, PostgresLauncherError) as exc:
            self._stack.close()
            raise DependencyUnavailable(str(exc).splitlines()[0]) from None
        effective = settings.model_copy(update=updates)
        try:
            prepare(effective)
        except BaseException:
            self._stack.close()
            raise
        return effective

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()


def prepare(settings: Settings) -> None:
    """Apply migrations and create topics: safe to run at every start."""
    assert settings.database_url is not None
    assert settings.kafka_bootstrap_servers is not None
    migrate(settings.database_url)
    asyncio.run(ensure_topics(settings.kafka_bootstrap_servers, topic_specs(settings)))
