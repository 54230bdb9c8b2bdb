"""A running system (api, router, projector as real processes) per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from bench.launcher import chain_on
from services.common.db import migrate
from services.common.kafka import ensure_topics, topic_specs
from tests.e2e.system import System, new_port
from tests.fixtures.settings import MakeSettings, unique

StartSystem = Callable[..., Any]


def create_database(server_url: str) -> str:
    """A new empty database on the session's server; its URL.

    Why: `oee replay verify` compares the whole live read-model schema with the log,
    and the session's shared database holds every other test's orders too.
    """
    name = f"oee_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urlsplit(server_url)._replace(path=f"/{name}").geturl()


def drop_database(server_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
async def start_system(
    make_settings: MakeSettings, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[StartSystem]:
    """Start a system (by default `oee chain`, then projector, router and API; the router once
    the chain answers); `own_database=True` gives it a database of its own, `supervise=True`
    restarts a process that exits by itself (as `oee up` does), counting it in `restarts`."""
    systems: list[System] = []
    databases: list[str] = []

    async def start(
        *,
        processes: tuple[str, ...] = ("chain", "projector", "router", "api"),
        own_database: bool = False,
        supervise: bool = False,
        **overrides: Any,
    ) -> System:
        # The original API, without credentials, unless a test enables auth itself.
        overrides.setdefault("auth", "disabled")
        # Several routers and projectors share the host: free ports unless a test picks them.
        overrides.setdefault("router_metrics_port", 0)
        overrides.setdefault("projector_metrics_port", 0)
        if own_database:
            databases.append(create_database(database_url))
            overrides["database_url"] = databases[-1]
        # A chain node of the system's own (`oee chain`, on its database's schema svm).
        for key, value in chain_on(new_port()).items():
            overrides.setdefault(key, value)
        settings = make_settings(
            api_port=new_port(),
            consumer_group_prefix=unique("oee-test"),
            data_dir=tmp_path_factory.mktemp("oee-data"),
            **overrides,
        )
        assert settings.database_url is not None
        assert settings.kafka_bootstrap_servers is not None
        migrate(settings.database_url)
        await ensure_topics(settings.kafka_bootstrap_servers, topic_specs(settings))
        system = System(settings, tmp_path_factory.mktemp("logs"))
        systems.append(system)
        for name in processes:
            # The router and the API read the chain from their start; the projector need not
            # wait for it, so its start overlaps the chain's.
            if name in ("router", "api") and "chain" in processes:
                await system.wait_chain()
            system.start(name)
        if supervise:
            system.supervise()
        if "api" in processes:
            await system.wait_healthy()
        return system

    yield start
    for system in systems:
        system.stop_all()
    for url in databases:
        drop_database(database_url, url)
