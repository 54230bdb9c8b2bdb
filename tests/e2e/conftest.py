"""A running system (api, router, projector as real processes) per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from services.common.db import migrate
from services.common.kafka import ensure_topics, topic_specs
from tests.e2e.system import System, new_port
from tests.fixtures.settings import MakeSettings, unique

StartSystem = Callable[..., Any]


@pytest.fixture
async def start_system(
    make_settings: MakeSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[StartSystem]:
    systems: list[System] = []

    async def start(
        *, processes: tuple[str, ...] = ("projector", "router", "api"), **overrides: Any
    ) -> System:
        # The original API, without credentials, unless a test enables auth itself.
        overrides.setdefault("auth", "disabled")
        # Several routers and projectors share the host: free ports unless a test picks them.
        overrides.setdefault("router_metrics_port", 0)
        overrides.setdefault("projector_metrics_port", 0)
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
            system.start(name)
        if "api" in processes:
            await system.wait_healthy()
        return system

    yield start
    for system in systems:
        system.stop_all()
