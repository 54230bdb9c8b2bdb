"""Fixtures of the reliability tests: a system of real processes, handles on Kafka and PostgreSQL.

Stopping the session's broker or database affects every test, so only the tests
here do it, always restart it in a `finally`, and wait until it answers again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

from bench.launcher import chain_on
from infra.kafka.launcher import KafkaBroker
from infra.postgres.launcher import EmbeddedPostgres
from services.common.db import migrate
from services.common.kafka import ensure_topics, topic_specs
from services.common.settings import Settings
from tests.e2e.conftest import create_database, start_system
from tests.e2e.system import System, new_port
from tests.fixtures.kafka import KafkaService
from tests.fixtures.postgres import PostgresService
from tests.fixtures.settings import unique

__all__ = ["broker", "front_end", "pg_server", "start_system"]


@pytest.fixture(scope="module")
async def front_end(
    kafka: KafkaService, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[System]:
    """An API and a projector shared by one module's tests (hostile input needs no router),
    with a chain node of their own (quotes and market ladders read its pools) on a
    database of their own, so no other test's node shares its schema `svm`."""
    own_database = create_database(database_url)
    settings = Settings(
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        database_url=own_database,
        orders_topic=unique("orders.events"),
        dead_letter_topic=unique("orders.deadletter"),
        orders_topic_partitions=3,
        consumer_group_prefix=unique("oee-test"),
        api_port=new_port(),
        data_dir=tmp_path_factory.mktemp("oee-data"),
        auth="disabled",  # the original API, without credentials, as in tests/e2e
        **chain_on(new_port()),
    )
    migrate(own_database)
    await ensure_topics(kafka.bootstrap_servers, topic_specs(settings))
    system = System(settings, tmp_path_factory.mktemp("logs"))
    try:
        system.start("chain")
        system.start("projector")
        await system.wait_chain()
        system.start("api")
        await system.wait_healthy()
        yield system
    finally:
        system.stop_all()


@pytest.fixture
def broker(kafka: KafkaService) -> Iterator[KafkaBroker]:
    """The session's broker, to stop and start; restarted (and answering) whatever the test did."""
    if kafka.broker is None:
        pytest.skip("the broker is external (KAFKA_BOOTSTRAP_SERVERS): this test cannot stop it")
    yield kafka.broker
    if not kafka.broker.is_running():
        kafka.broker.start()


@pytest.fixture
def pg_server(postgres: PostgresService) -> Iterator[EmbeddedPostgres]:
    """The session's PostgreSQL server, to stop and start; running again after the test."""
    if postgres.server is None:
        pytest.skip("PostgreSQL is external (DATABASE_URL): this test cannot stop it")
    yield postgres.server
    if not _answers(postgres.url):
        postgres.server.start()


def _answers(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True
