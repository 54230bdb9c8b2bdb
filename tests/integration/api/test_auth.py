"""Authentication, ownership and limits against the real broker and database, auth enabled."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import jwt
import psycopg
import pytest
import websockets
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from services.api.auth.cli import development_key_notice
from services.api.auth.principal import ADMIN, ORDERS_READ, new_key
from services.api.auth.store import create_key, ensure_development_key, revoke_key
from services.common.db import migrate
from tests.fixtures.settings import MakeSettings
from tests.integration.api.support import (
    RunningApi,
    eventually,
    lifecycle,
    log_writer,
    projector_running,
    running_api,
)

ORDER = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"}
SECRET = "a-test-only-hs256-secret-of-40-bytes-xx"


@contextlib.contextmanager
def keys_db(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def make_key(database_url: str, *scopes: str) -> tuple[str, str]:
    """(key id, key) of a new key with these scopes (the default ones if none)."""
    with keys_db(database_url) as conn:
        row, key = create_key(conn, f"test-{uuid.uuid4().hex[:8]}", *((scopes,) if scopes else ()))
    return str(row.id), key


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def secured(make_settings: MakeSettings) -> AsyncIterator[RunningApi]:
    # No key cache, so a revocation is seen at once.
    async with running_api(make_settings(auth="enabled", auth_cache_seconds=0)) as running:
        yield running


async def messages_until_closed(socket: ClientConnection) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(20):
        try:
            while True:
                got.append(json.loads(await socket.recv()))
        except ConnectionClosed:
            return got


async def next_message(socket: ClientConnection, timeout: float = 20) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        return dict(json.loads(await socket.recv()))


async def test_no_key_a_wrong_key_and_a_revoked_key_are_401(
    secured: RunningApi, database_url: str
) -> None:
    api = secured
    key_id, key = make_key(database_url)
    order_id = uuid.uuid4()
    for method, path in (
        ("POST", "/api/orders/execute"),
        ("GET", "/api/orders"),
        ("GET", f"/api/orders/{order_id}"),
        ("GET", f"/api/orders/{order_id}/events"),
        ("GET", "/api/quote"),
    ):
        response = await api.http.request(method, path)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"] == "UNAUTHORIZED"
        assert response.headers["www-authenticate"].startswith("Bearer")
    # 401 comes before the body is looked at: a broken body does not reveal its 400.
    broken = await api.http.post("/api/orders/execute", content=b"{not json")
    assert broken.status_code == 401
    health = await api.http.get("/health")
    assert health.status_code == 200  # for load balancers
    assert health.json()["auth"] == "enabled"  # so the dashboard asks for a key first

    for wrong in (new_key(), "oee_", "garbage", "a.b.c"):
        response = await api.http.post("/api/orders/execute", json=ORDER, headers=auth(wrong))
        assert response.status_code == 401
        assert response.json()["error"] == "INVALID_CREDENTIALS"

    accepted = await api.http.post("/api/orders/execute", json=ORDER, headers={"X-API-Key": key})
    assert accepted.status_code == 202, accepted.text
    invalid = await api.http.post("/api/orders/execute", json={}, headers=auth(key))
    assert (invalid.status_code, invalid.json()["code"]) == (400, "ERR_001")

    with keys_db(database_url) as conn:
        assert revoke_key(conn, uuid.UUID(key_id)) is not None
    revoked = await api.http.post("/api/orders/execute", json=ORDER, headers=auth(key))
    assert revoked.status_code == 401
    assert revoked.json()["error"] == "INVALID_CREDENTIALS"

    for headers in ({}, auth(key)):
        async with websockets.connect(
            f"{api.ws_url}/ws/orders", additional_headers=headers
        ) as socket:
            [refusal] = await messages_until_closed(socket)
        assert refusal["status"] == "error"
        assert socket.close_code == 4401


async def test_a_browser_socket_sends_its_key_as_the_bearer_subprotocol(
    secured: RunningApi, database_url: str
) -> None:
    _, key = make_key(database_url)
    # What a browser's `new WebSocket(url, ["bearer", key])` sends.
    offered = [Subprotocol("bearer"), Subprotocol(key)]
    async with websockets.connect(f"{secured.ws_url}/ws/orders", subprotocols=offered) as socket:
        assert socket.subprotocol == "bearer"
        assert (await next_message(socket))["status"] == "connected"
    async with websockets.connect(
        f"{secured.ws_url}/ws/orders", subprotocols=[Subprotocol("bearer"), Subprotocol(new_key())]
    ) as socket:
        [refusal] = await messages_until_closed(socket)
    assert refusal["error"] == "INVALID_CREDENTIALS"
    assert socket.close_code == 4401


async def test_keys_are_stored_only_as_hashes(database_url: str) -> None:
    key_id, key = make_key(database_url)
    with keys_db(database_url) as conn:
        row = conn.execute(
            "SELECT row_to_json(k)::text, key_sha256 FROM auth.api_keys k WHERE id = %s",
            (key_id,),
        ).fetchone()
        assert row is not None
        everything = conn.execute(
            "SELECT coalesce(string_agg(row_to_json(k)::text, ''), '') FROM auth.api_keys k"
        ).fetchone()
    assert everything is not None
    text, stored_hash = row
    assert stored_hash == hashlib.sha256(key.encode()).hexdigest()
    secret = key.removeprefix("oee_")
    assert key not in everything[0]
    assert secret not in everything[0]
    assert secret[:12] not in text


async def test_another_keys_order_is_404_everywhere_and_hidden_from_lists_and_the_firehose(
    secured: RunningApi, database_url: str
) -> None:
    api = secured
    alice_id, alice = make_key(database_url)
    _, bob = make_key(database_url)
    _, admin = make_key(database_url, ADMIN)
    since = {"from": datetime.now(UTC).isoformat()}

    async with (
        websockets.connect(f"{api.ws_url}/ws/orders", additional_headers=auth(alice)) as alice_all,
        websockets.connect(f"{api.ws_url}/ws/orders", additional_headers=auth(bob)) as bob_all,
        websockets.connect(f"{api.ws_url}/ws/orders", additional_headers=auth(admin)) as admin_all,
    ):
        for socket in (alice_all, bob_all, admin_all):
            assert (await next_message(socket))["status"] == "connected"
        # The same clientOrderId from two keys: two orders, ids derived per owner.
        same = {**ORDER, "clientOrderId": f"shared-{uuid.uuid4()}"}
        mine = await api.http.post("/api/orders/execute", json=same, headers=auth(alice))
        theirs = await api.http.post("/api/orders/execute", json=same, headers=auth(bob))
        assert mine.status_code == theirs.status_code == 202
        alice_order, bob_order = mine.json()["orderId"], theirs.json()["orderId"]
        assert alice_order != bob_order

        assert (await next_message(alice_all))["orderId"] == alice_order
        assert (await next_message(bob_all))["orderId"] == bob_order
        seen_by_admin = {(await next_message(admin_all))["orderId"] for _ in range(2)}
        assert seen_by_admin == {alice_order, bob_order}
        with pytest.raises(TimeoutError):
            await next_message(alice_all, timeout=0.5)  # nothing of bob's

    async with log_writer(api.settings) as writer:
        for sequence, event in enumerate(lifecycle(), start=2):
            await writer.append(uuid.UUID(alice_order), sequence, event)

    async with projector_running(api.settings):

        async def stored() -> bool:
            response = await api.http.get(f"/api/orders/{alice_order}/events", headers=auth(admin))
            listed = await api.http.get("/api/orders", params=since, headers=auth(admin))
            return (
                response.status_code == 200
                and len(response.json()["events"]) == 5
                and listed.json()["total"] == 2
            )

        await eventually(stored)

    own = await api.http.get(f"/api/orders/{alice_order}", headers=auth(alice))
    assert own.status_code == 200
    assert own.json()["status"] == "completed"
    events = await api.http.get(f"/api/orders/{alice_order}/events", headers=auth(alice))
    assert events.json()["events"][0]["payload"]["owner"] == alice_id

    unknown = uuid.uuid4()
    for path in ("/api/orders/{}", "/api/orders/{}/events"):
        foreign = await api.http.get(path.format(alice_order), headers=auth(bob))
        missing = await api.http.get(path.format(unknown), headers=auth(bob))
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json()["error"] == missing.json()["error"] == "ORDER_NOT_FOUND"
        assert foreign.json()["message"] == missing.json()["message"].replace(
            str(unknown), alice_order
        )
    assert (
        await api.http.get(f"/api/orders/{alice_order}", headers=auth(admin))
    ).status_code == 200

    for key, expected in ((alice, [alice_order]), (bob, [bob_order])):
        listed = (await api.http.get("/api/orders", params=since, headers=auth(key))).json()
        assert [o["id"] for o in listed["orders"]] == expected
        assert listed["total"] == 1
    everyone = (await api.http.get("/api/orders", params=since, headers=auth(admin))).json()
    assert {o["id"] for o in everyone["orders"]} == {alice_order, bob_order}

    async with websockets.connect(
        f"{api.ws_url}/ws/{alice_order}", additional_headers=auth(bob)
    ) as socket:
        refused = await messages_until_closed(socket)
    assert [m["status"] for m in refused] == ["connected", "error"]
    assert refused[-1]["error"] == "ORDER_NOT_FOUND"
    assert not any("sequence" in m for m in refused)
    assert socket.close_code == 4404
    async with websockets.connect(
        f"{api.ws_url}/ws/{alice_order}", additional_headers=auth(alice)
    ) as socket:
        history = await messages_until_closed(socket)
    assert [m.get("sequence") for m in history] == [None, 1, 2, 3, 4, 5]
    assert socket.close_code == 1000


async def test_a_read_only_key_cannot_trade(secured: RunningApi, database_url: str) -> None:
    _, reader = make_key(database_url, ORDERS_READ)
    response = await secured.http.post("/api/orders/execute", json=ORDER, headers=auth(reader))
    assert response.status_code == 403
    assert response.json()["error"] == "INSUFFICIENT_SCOPE"
    assert (await secured.http.get("/api/orders", headers=auth(reader))).status_code == 200


async def test_the_rate_limit_answers_429_with_retry_after_and_recovers(
    make_settings: MakeSettings, database_url: str
) -> None:
    settings = make_settings(auth="enabled", rate_limit_orders_per_second=4, rate_limit_burst=2)
    _, hasty = make_key(database_url)
    _, calm = make_key(database_url)
    async with running_api(settings) as api:

        async def submit(key: str) -> Any:
            return await api.http.post("/api/orders/execute", json=ORDER, headers=auth(key))

        assert [(await submit(hasty)).status_code for _ in range(2)] == [202, 202]
        limited = await submit(hasty)
        assert limited.status_code == 429
        assert limited.json()["error"] == "RATE_LIMITED"
        assert limited.headers["retry-after"] == "1"
        assert (await submit(calm)).status_code == 202  # limits are per key
        await asyncio.sleep(int(limited.headers["retry-after"]))
        assert (await submit(hasty)).status_code == 202


async def test_a_key_with_its_own_rate_limit_is_held_to_it_not_to_the_default(
    make_settings: MakeSettings, database_url: str
) -> None:
    settings = make_settings(auth="enabled", rate_limit_orders_per_second=1, rate_limit_burst=1)
    with keys_db(database_url) as conn:
        row, bot = create_key(conn, f"bot-{uuid.uuid4().hex[:8]}", rate_limit=0.5, burst=6)
    assert (row.rate_limit, row.burst) == (0.5, 6)
    async with running_api(settings) as api:
        answers = [
            (await api.http.post("/api/orders/execute", json=ORDER, headers=auth(bot))).status_code
            for _ in range(6)
        ]
        assert answers == [202] * 6  # six, where the deployment's default allows one
        limited = await api.http.post("/api/orders/execute", json=ORDER, headers=auth(bot))
        assert limited.status_code == 429
        assert "At most 0.5 orders a second for this key (bursts of 6)" in limited.json()["message"]
        assert limited.headers["retry-after"] == "2"


async def test_sockets_per_key_are_limited(make_settings: MakeSettings, database_url: str) -> None:
    _, alice = make_key(database_url)
    _, bob = make_key(database_url)
    async with running_api(make_settings(auth="enabled", ws_max_connections_per_key=1)) as api:
        url = f"{api.ws_url}/ws/orders"
        async with websockets.connect(url, additional_headers=auth(alice)) as first:
            assert (await next_message(first))["status"] == "connected"
            async with websockets.connect(url, additional_headers=auth(alice)) as second:
                [refusal] = await messages_until_closed(second)
            assert refusal["error"] == "TOO_MANY_CONNECTIONS"
            assert second.close_code == 4429
            async with websockets.connect(url, additional_headers=auth(bob)) as other:
                assert (await next_message(other))["status"] == "connected"

        async def admitted_again() -> bool:
            async with websockets.connect(url, additional_headers=auth(alice)) as again:
                return bool((await next_message(again))["status"] == "connected")

        await eventually(admitted_again, timeout=5)


async def test_a_signed_jwt_is_accepted_and_owns_its_orders(make_settings: MakeSettings) -> None:
    settings = make_settings(
        auth="enabled",
        jwt_key=SecretStr(SECRET),
        jwt_issuer="https://id.example.test",
        jwt_audience="oee",
    )
    claims = {"iss": "https://id.example.test", "aud": "oee", "exp": int(time.time()) + 60}
    token = jwt.encode({**claims, "sub": "platform-user-1"}, SECRET, algorithm="HS256")
    wrong_audience = jwt.encode(
        {**claims, "sub": "platform-user-1", "aud": "other"}, SECRET, algorithm="HS256"
    )
    async with running_api(settings) as api:
        response = await api.http.post("/api/orders/execute", json=ORDER, headers=auth(token))
        assert response.status_code == 202, response.text
        refused = await api.http.post(
            "/api/orders/execute", json=ORDER, headers=auth(wrong_audience)
        )
        assert refused.status_code == 401
        assert token not in refused.text


async def test_cors_allows_only_the_configured_origins(make_settings: MakeSettings) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    async with running_api(
        make_settings(auth="enabled", cors_origins=("https://app.example.com",))
    ) as api:
        allowed = await api.http.options(
            "/api/orders/execute", headers={**preflight, "Origin": "https://app.example.com"}
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        other = await api.http.options(
            "/api/orders/execute", headers={**preflight, "Origin": "https://evil.example.com"}
        )
        assert "access-control-allow-origin" not in other.headers
    async with running_api(make_settings(auth="enabled")) as api:  # none by default
        response = await api.http.get("/health", headers={"Origin": "https://app.example.com"})
        assert "access-control-allow-origin" not in response.headers


async def test_logs_and_error_bodies_never_contain_a_key(
    make_settings: MakeSettings,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    _, key = make_key(database_url)
    revoked_id, revoked = make_key(database_url)
    with keys_db(database_url) as conn:
        revoke_key(conn, uuid.UUID(revoked_id))
    unknown = new_key()
    token = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    secrets = [key, revoked, unknown, token]
    bodies: list[str] = []
    caplog.set_level(logging.DEBUG)
    # The test's own socket client logs the headers it sends at DEBUG; the server is what is
    # under test here, and every server-side logger stays at DEBUG.
    caplog.set_level(logging.INFO, logger="websockets.client")
    async with running_api(make_settings(auth="enabled", auth_cache_seconds=0)) as api:
        for secret in secrets:
            for headers in (auth(secret), {"X-API-Key": secret}):
                for response in (
                    await api.http.post("/api/orders/execute", json=ORDER, headers=headers),
                    await api.http.post("/api/orders/execute", content=b"{", headers=headers),
                    await api.http.get("/api/orders", headers=headers),
                ):
                    bodies.append(response.text + json.dumps(dict(response.headers)))
            for way in (
                {"additional_headers": auth(secret)},
                {"subprotocols": [Subprotocol("bearer"), Subprotocol(secret)]},
            ):
                async with websockets.connect(f"{api.ws_url}/ws/orders", **way) as socket:
                    with contextlib.suppress(TimeoutError):
                        bodies.append(json.dumps(await next_message(socket, timeout=2)))
    captured = capfd.readouterr()
    logged = caplog.text + captured.out + captured.err
    assert any("INVALID_CREDENTIALS" in b for b in bodies)
    assert f"refused revoked API key {revoked_id}" in caplog.text  # server logs were captured
    for secret in secrets:
        assert secret not in logged
        assert secret.removeprefix("oee_")[:16] not in logged
        assert not any(secret in body for body in bodies)


async def test_the_development_key_is_made_once_on_an_empty_database(database_url: str) -> None:
    name = f"oee_auth_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(database_url, dbname=name)
    try:
        migrate(url)
        with keys_db(url) as conn:
            key = ensure_development_key(conn)
            assert key is not None
            assert key.startswith("oee_")
            assert ensure_development_key(conn) is None  # a later start: a key exists
            [(stored, names)] = conn.execute(
                "SELECT key_sha256, name FROM auth.api_keys"
            ).fetchall()
            assert (stored, names) == (hashlib.sha256(key.encode()).hexdigest(), "development")
            conn.execute("UPDATE auth.api_keys SET revoked_at = now()")
            assert ensure_development_key(conn) is not None  # all revoked: a new one
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def test_oee_up_links_the_dashboard_signed_in_with_the_key_in_the_fragment(
    database_url: str, make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"oee_auth_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(database_url, dbname=name)
    dashboard = "http://127.0.0.1:8000/"
    monkeypatch.delenv("OEE_API_KEY", raising=False)
    try:
        migrate(url)
        settings = make_settings(auth="enabled", database_url=url)
        first = development_key_notice(settings, dashboard)
        key = first[1].strip()
        assert key.startswith("oee_")
        assert first[-1] == f"dashboard, signed in: {dashboard}#key={key}"
        with keys_db(url) as conn:
            [(stored,)] = conn.execute("SELECT key_sha256 FROM auth.api_keys").fetchall()
        assert stored == hashlib.sha256(key.encode()).hexdigest()  # the key that works

        later = development_key_notice(settings, dashboard)  # the key exists, unreadable now
        assert not any(key in line or "#key=oee_" in line for line in later), later
        assert later[-1].startswith(f"dashboard: {dashboard} ")
        monkeypatch.setenv("OEE_API_KEY", key)
        assert development_key_notice(settings, dashboard)[-1].endswith(f"/#key={key}")
        assert not any("?" in line for line in first + later)  # never in a query string
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
