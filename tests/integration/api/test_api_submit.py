"""POST /api/orders/execute against a real broker: accepted means on the log, rejected means not."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from schemas import codec
from schemas.envelope import event_id_for, genesis_hash
from schemas.events import OrderSubmitted
from services.api.validation import order_id_for
from tests.fixtures.settings import MakeSettings
from tests.integration.api.support import RunningApi, read_topic, running_api, topic_size

ORDER = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 10, "slippage": 0.01}


async def test_an_accepted_order_is_exactly_one_submission_on_the_log(api: RunningApi) -> None:
    response = await api.http.post("/api/orders/execute", json=ORDER)
    assert response.status_code == 202, response.text
    body = response.json()
    order_id = uuid.UUID(body["orderId"])
    assert body == {
        "orderId": str(order_id),
        "status": "pending",
        "message": "Order received and queued",
        "websocketUrl": f"/ws/{order_id}",
        "estimatedProcessingTime": "2-5 seconds",
    }
    [record] = await read_topic(api.settings)
    assert record.key == str(order_id).encode()
    envelope = codec.decode(record.value)
    assert envelope.order_id == order_id
    assert envelope.sequence == 1
    assert envelope.producer == "api"
    assert envelope.prev_hash == genesis_hash(order_id)
    assert envelope.event_id == event_id_for(order_id, 1)
    assert envelope.payload == OrderSubmitted(
        token_in="SOL", token_out="USDC", amount=Decimal(10), slippage=Decimal("0.01")
    )


async def test_amounts_keep_full_precision_and_default_slippage(api: RunningApi) -> None:
    body = b'{"tokenIn": "USDC", "tokenOut": "SOL", "amount": "1234567.123456"}'
    response = await api.http.post(
        "/api/orders/execute", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 202, response.text
    [record] = await read_topic(api.settings)
    payload = codec.decode(record.value).payload
    assert isinstance(payload, OrderSubmitted)
    assert payload.amount == Decimal("1234567.123456")
    assert payload.slippage == api.settings.default_slippage


@pytest.fixture
async def small_api(make_settings: MakeSettings) -> AsyncIterator[RunningApi]:
    async with running_api(make_settings(max_body_bytes=256)) as running:
        yield running


PAIR = b'"tokenIn": "SOL", "tokenOut": "USDC", '
INVALID: list[tuple[bytes, int, str, str]] = [
    (b"", 400, "MISSING_BODY", "ERR_020"),
    (b"{not json", 400, "INVALID_JSON", "ERR_021"),
    (b"{" + PAIR + b'"amount": NaN}', 400, "INVALID_JSON", "ERR_021"),
    (b"[1, 2]", 400, "INVALID_BODY", "ERR_022"),
    (b'{"tokenOut": "USDC", "amount": 1}', 400, "MISSING_TOKEN_IN", "ERR_001"),
    (b'{"tokenIn": "SOL", "amount": 1}', 400, "MISSING_TOKEN_OUT", "ERR_002"),
    (b'{"tokenIn": "SOL", "tokenOut": "USDC"}', 400, "MISSING_AMOUNT", "ERR_003"),
    (b"{" + PAIR + b'"amount": true}', 400, "INVALID_AMOUNT_TYPE", "ERR_004"),
    (b"{" + PAIR + b'"amount": "Infinity"}', 400, "INVALID_AMOUNT_TYPE", "ERR_004"),
    (b"{" + PAIR + b'"amount": -5, "slippage": 2}', 400, "INVALID_AMOUNT", "ERR_005"),
    (b"{" + PAIR + b'"amount": 0.0000000001}', 400, "INVALID_AMOUNT", "ERR_005"),
    (b"{" + PAIR + b'"amount": 1e12}', 400, "INVALID_AMOUNT", "ERR_005"),
    (b"{" + PAIR + b'"amount": 1, "slippage": "x"}', 400, "INVALID_SLIPPAGE_TYPE", "ERR_006"),
    (b"{" + PAIR + b'"amount": 1, "slippage": 1.5}', 400, "INVALID_SLIPPAGE_RANGE", "ERR_007"),
    (b'{"tokenIn": "sol", "tokenOut": "USDC", "amount": 1}', 400, "INVALID_TOKEN_IN", "ERR_008"),
    (b'{"tokenIn": "SOL", "tokenOut": "WAT", "amount": 1}', 400, "INVALID_TOKEN_OUT", "ERR_009"),
    (b'{"tokenIn": "SOL", "tokenOut": "SOL", "amount": 1}', 400, "SAME_TOKEN_SWAP", "ERR_010"),
    (
        b"{" + PAIR + b'"amount": 1, "pad": "' + b"x" * 300 + b'"}',
        413,
        "PAYLOAD_TOO_LARGE",
        "ERR_023",
    ),
]


async def test_every_invalid_body_is_refused_and_nothing_reaches_the_log(
    small_api: RunningApi,
) -> None:
    for raw, status, error, code in INVALID:
        response = await small_api.http.post(
            "/api/orders/execute", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == status, (raw, response.text)
        body = response.json()
        assert (body["error"], body["code"]) == (error, code), raw

    async def chunked() -> AsyncIterator[bytes]:
        """No Content-Length: the limit must hold while reading."""
        yield b'{"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1, "pad": "'
        for _ in range(10):
            yield b"x" * 100
        yield b'"}'

    response = await small_api.http.post("/api/orders/execute", content=chunked())
    assert response.status_code == 413
    assert response.json()["error"] == "PAYLOAD_TOO_LARGE"
    assert await topic_size(small_api.settings) == 0


async def test_the_same_client_order_id_twice_at_once_is_one_order(api: RunningApi) -> None:
    keyed = {**ORDER, "clientOrderId": "retry-me-1"}
    first, second = await asyncio.gather(
        api.http.post("/api/orders/execute", json=keyed),
        api.http.post("/api/orders/execute", json=keyed),
    )
    assert first.status_code == second.status_code == 202
    order_id = order_id_for("retry-me-1", None)
    assert first.json()["orderId"] == second.json()["orderId"] == str(order_id)
    header = await api.http.post(
        "/api/orders/execute", json=ORDER, headers={"Idempotency-Key": "retry-me-1"}
    )
    assert header.json()["orderId"] == str(order_id)
    envelopes = [codec.decode(r.value) for r in await read_topic(api.settings)]
    # Three copies of one event: same order, sequence 1, same event id; consumers keep the first.
    assert {(e.order_id, e.sequence, e.event_id) for e in envelopes} == {
        (order_id, 1, event_id_for(order_id, 1))
    }


async def test_a_log_that_cannot_take_the_order_is_a_503(api: RunningApi) -> None:
    """Stopping the app's own producer is what a broken log looks like to the route: send fails."""
    await api.runtime.producer.stop()
    response = await api.http.post("/api/orders/execute", json=ORDER)
    assert response.status_code == 503
    assert response.headers["retry-after"].isdecimal()
    assert response.json()["error"] == "LOG_UNAVAILABLE"
    assert await topic_size(api.settings) == 0


async def test_unknown_routes_and_wrong_methods_answer_json(api: RunningApi) -> None:
    missing = await api.http.get("/api/nope")
    assert missing.status_code == 404
    assert missing.json()["error"] == "ROUTE_NOT_FOUND"
    wrong = await api.http.get("/api/orders/execute/x")
    assert wrong.status_code == 404
    method = await api.http.put("/api/orders/execute")
    assert method.status_code == 405
    assert method.json()["error"] == "METHOD_NOT_ALLOWED"
    docs = await api.http.get("/docs")
    assert docs.status_code == 200
