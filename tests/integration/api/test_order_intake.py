"""The submission route served in front of FastAPI (`routes/intake.py`) answers exactly as
the FastAPI route it replaces on the hot path: same statuses, headers and bytes, same log."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.api.auth.principal import ORDERS_READ
from services.api.main import create_app
from services.api.routes.intake import OrderIntake
from services.api.routes.orders import router as orders_router
from tests.fixtures.settings import MakeSettings
from tests.integration.api.support import RunningApi, read_topic, running_api
from tests.integration.api.test_auth import auth, make_key

ORDER = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "2", "slippage": "0.01"}


@pytest.fixture
async def secured(make_settings: MakeSettings) -> AsyncIterator[RunningApi]:
    settings = make_settings(auth="enabled", max_body_bytes=512, rate_limit_orders_per_second=1000)
    async with running_api(settings) as running:
        yield running


async def fastapi_route_client(api: RunningApi) -> httpx.AsyncClient:
    """A client of the FastAPI app alone (no intake in front), on the same runtime."""
    served = create_app(api.settings, api.runtime)
    assert isinstance(served, OrderIntake)
    served.fastapi_app.state.runtime = api.runtime
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=served.fastapi_app), base_url="http://api"
    )


def answer(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    """Status, the headers a client reads, and the body (ids of accepted orders masked)."""
    headers = {
        name: response.headers[name]
        for name in ("content-type", "content-length", "retry-after")
        if name in response.headers
    }
    body: Any = response.content
    if response.status_code == 202:
        body = json.loads(response.content)
        body["orderId"] = uuid.UUID(body["orderId"]).version  # random (no clientOrderId)
        body["websocketUrl"] = body["websocketUrl"].startswith("/ws/")
    return response.status_code, headers, body


async def test_every_answer_of_the_intake_is_the_fastapi_routes_own(secured: RunningApi) -> None:
    assert any(r.path == "/api/orders/execute" for r in orders_router.routes)  # type: ignore[attr-defined]
    assert secured.settings.database_url is not None
    _, key = make_key(secured.settings.database_url)
    _, read_only = make_key(secured.settings.database_url, ORDERS_READ)
    expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    cases: list[dict[str, Any]] = [
        {"json": ORDER, "headers": auth(key)},
        {
            "json": {**ORDER, "orderType": "limit", "limitPrice": "1", "expiresAt": expires},
            "headers": auth(key),
        },
        {"json": ORDER},  # no credentials: 401
        {"json": ORDER, "headers": auth("oee_" + "x" * 40)},  # unknown key: 401
        {"json": ORDER, "headers": auth(read_only)},  # no orders:write: 403
        {"json": {**ORDER, "priority": "high"}, "headers": auth(key)},  # no orders:priority
        {"content": b"{not json", "headers": auth(key)},
        {"content": b"", "headers": auth(key)},
        {"json": {**ORDER, "amount": "-1"}, "headers": auth(key)},
        {"json": {**ORDER, "tokenOut": "SOL"}, "headers": auth(key)},
        {"content": b'{"pad": "' + b"x" * 600 + b'"}', "headers": auth(key)},  # 413
    ]
    async with await fastapi_route_client(secured) as direct:
        for case in cases:
            case["headers"] = {"content-type": "application/json", **case.get("headers", {})}
            served = await secured.http.post("/api/orders/execute", **case)
            routed = await direct.post("/api/orders/execute", **case)
            assert answer(served) == answer(routed), case
    statuses = [answer(await secured.http.post("/api/orders/execute", **c))[0] for c in cases]
    assert statuses == [202, 202, 401, 401, 403, 403, 400, 400, 400, 400, 413]
    # Each accepted request is one submission on the log (two cases, each posted three times
    # above), and no refused request wrote anything.
    assert len(await read_topic(secured.settings)) == 6


async def test_other_routes_and_methods_pass_through_to_fastapi(secured: RunningApi) -> None:
    assert secured.settings.database_url is not None
    _, key = make_key(secured.settings.database_url)
    # GET is FastAPI's `/api/orders/{orderId}`, for which "execute" is no order.
    read = await secured.http.get("/api/orders/execute", headers=auth(key))
    assert (read.status_code, read.json()["error"]) == (404, "ORDER_NOT_FOUND")
    assert (await secured.http.get("/health")).status_code == 200
