"""`POST /api/markets/{pair}/move` against the real broker and database, auth enabled: an
admin key writes the same command `oee market move` writes; everyone else writes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.api.auth.principal import ADMIN
from services.common.kafka import log_reader
from services.market.commands import MarketMove, decode_move
from tests.fixtures.settings import MakeSettings, unique
from tests.integration.api.support import RunningApi, running_api
from tests.integration.api.test_auth import auth, make_key


@pytest.fixture
async def secured(make_settings: MakeSettings) -> AsyncIterator[RunningApi]:
    settings = make_settings(
        auth="enabled", auth_cache_seconds=0, market_commands_topic=unique("market.commands")
    )
    async with running_api(settings) as running:
        yield running


async def commands(api: RunningApi) -> list[tuple[bytes | None, MarketMove]]:
    """Every (key, command) on the test's command topic, from the start."""
    settings = api.settings
    assert settings.kafka_bootstrap_servers
    consumer = log_reader(settings.kafka_bootstrap_servers, client_id="test-market-move")
    await consumer.start()
    try:
        consumer.subscribe([settings.market_commands_topic])
        found: list[tuple[bytes | None, MarketMove]] = []
        while batch := await consumer.getmany(timeout_ms=1500):
            for messages in batch.values():
                found += [(m.key, decode_move(m.value)) for m in messages]
        return found
    finally:
        await consumer.stop()


async def test_an_admin_key_moves_a_market_and_others_are_refused_with_nothing_written(
    secured: RunningApi, database_url: str
) -> None:
    _, admin = make_key(database_url, ADMIN)
    _, trader = make_key(database_url)  # the default scopes: orders:write, orders:read
    http = secured.http
    path = "/api/markets/sol-usdc/move"

    refused = await http.post(path, json={"to": "160"})
    assert refused.status_code == 401, refused.text
    refused = await http.post(path, json={"to": "160"}, headers=auth(trader))
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "INSUFFICIENT_SCOPE"

    unknown = await http.post("/api/markets/DOGE-USDC/move", json={"to": "1"}, headers=auth(admin))
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "UNKNOWN_PAIR"
    assert "SOL-USDC" in unknown.json()["validPairs"]

    bad_bodies: dict[str, list[dict[str, object]]] = {
        "INVALID_REQUEST": [{}, {"to": 160.5}, {"to": "160", "by": "x"}, {"to": "160", "over": 3}],
        "INVALID_PRICE": [{"to": "abc"}, {"to": "0"}, {"to": "-1"}, {"to": "NaN"}],
        "INVALID_DURATION": [{"to": "160", "over": "soon"}, {"to": "160", "over": "25h"}],
    }
    for error, bodies in bad_bodies.items():
        for body in bodies:
            response = await http.post(path, json=body, headers=auth(admin))
            assert response.status_code == 400, (body, response.text)
            assert response.json()["error"] == error, (body, response.json())
            assert response.json()["message"], body
    assert await commands(secured) == []

    before = datetime.now(UTC)
    accepted = await http.post(path, json={"to": "160", "over": "2m"}, headers=auth(admin))
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["pair"] == "SOL-USDC"
    assert accepted.json()["overSeconds"] == 120
    assert "160 USDC/SOL" in accepted.json()["message"]
    defaulted = await http.post("/api/markets/SOL-USDC/move", json={"to": 152}, headers=auth(admin))
    assert defaulted.status_code == 202, defaulted.text

    written = await commands(secured)
    assert [(key, move.pair, move.to, move.over_seconds) for key, move in written] == [
        (b"SOL-USDC", "SOL-USDC", Decimal(160), 120.0),
        (b"SOL-USDC", "SOL-USDC", Decimal(152), 10.0),
    ]
    for _, move in written:
        assert before - timedelta(seconds=1) <= move.issued_at <= datetime.now(UTC)
