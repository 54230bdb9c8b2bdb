"""WebSockets against a real uvicorn server: connected, history, live, exactly 1..n, then 1000."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from services.api import read_model as read_model_module
from services.api.sockets import NOT_FOUND_GRACE_SECONDS
from services.api.validation import order_id_for
from tests.fixtures.settings import MakeSettings
from tests.integration.api.support import (
    RunningApi,
    eventually,
    lifecycle,
    log_writer,
    projector_running,
    running_api,
)

STATUSES = ["pending", "routing", "building", "submitted", "completed"]


async def receive_all(socket: ClientConnection, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Every message until the server closes the socket."""
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        try:
            while True:
                messages.append(json.loads(await socket.recv()))
        except ConnectionClosed:
            return messages


async def receive(socket: ClientConnection, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(20):
        return [json.loads(await socket.recv()) for _ in range(count)]


async def submit_keyed(api: RunningApi, key: str) -> uuid.UUID:
    response = await api.http.post(
        "/api/orders/execute",
        json={"tokenIn": "SOL", "tokenOut": "USDC", "amount": 10, "clientOrderId": key},
    )
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["orderId"])


async def test_live_events_reach_every_socket_of_the_order_and_the_firehose(
    api: RunningApi,
) -> None:
    key = f"ws-{uuid.uuid4()}"
    order_id = order_id_for(key, None)  # known before submitting, so sockets can wait for it
    url = f"{api.ws_url}/ws/{order_id}"
    async with (
        websockets.connect(url) as one,
        websockets.connect(url) as two,
        websockets.connect(f"{api.ws_url}/ws/orders?tokenIn=SOL") as firehose,
        websockets.connect(f"{api.ws_url}/ws/orders?status=completed") as finals,
        websockets.connect(f"{api.ws_url}/ws/orders?tokenIn=USDC") as others,
    ):
        for socket in (one, two, firehose, finals, others):
            assert (await receive(socket, 1))[0]["status"] == "connected"
        assert await submit_keyed(api, key) == order_id
        async with log_writer(api.settings) as writer:
            for sequence, event in enumerate(lifecycle(), start=2):
                await writer.append(order_id, sequence, event)
        got_one, got_two = await asyncio.gather(receive_all(one), receive_all(two))
        for got, socket in ((got_one, one), (got_two, two)):
            assert [m["sequence"] for m in got] == [1, 2, 3, 4, 5]
            assert [m["status"] for m in got] == STATUSES
            assert {m["orderId"] for m in got} == {str(order_id)}
            assert socket.close_code == 1000
        assert got_one[0]["message"] == "Order received and queued"
        assert got_one[1]["selectedDex"] == "RAYDIUM"
        assert got_one[4]["txHash"] == "4" * 88
        assert got_one[4]["executedPrice"] == "150"

        streamed = await receive(firehose, 5)
        assert [(m["orderId"], m["sequence"]) for m in streamed] == [
            (str(order_id), s) for s in range(1, 6)
        ]
        [final] = await receive(finals, 1)
        assert (final["status"], final["sequence"]) == ("completed", 5)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await others.recv()  # a USDC->SOL filter sees none of a SOL->USDC order


async def test_history_then_live_with_a_gap_the_projector_fills(api: RunningApi) -> None:
    """Stored: 1. On the log but not projected: 2, 3. Live after connecting: 4, 5."""
    events = lifecycle()
    order_id = await submit_keyed(api, f"gap-{uuid.uuid4()}")
    async with projector_running(api.settings):
        await eventually(lambda: _stored(api, order_id, 1))
    async with log_writer(api.settings) as writer:
        await writer.append(order_id, 2, events[0])
        await writer.append(order_id, 3, events[1])
        async with websockets.connect(f"{api.ws_url}/ws/{order_id}") as socket:
            first = await receive(socket, 2)
            assert [m["status"] for m in first] == ["connected", "pending"]
            await writer.append(order_id, 4, events[2])  # live, ahead of what is stored
            await asyncio.sleep(0.3)
            async with projector_running(api.settings):  # now 2, 3 (and 4) get stored
                rest = await receive(socket, 3)
                assert [m["sequence"] for m in rest] == [2, 3, 4]
                await writer.append(order_id, 5, events[3])
                tail = await receive_all(socket)
            assert [m["sequence"] for m in tail] == [5]
            assert socket.close_code == 1000


async def test_an_order_that_finished_before_the_socket_and_the_projector_is_caught_up(
    api: RunningApi,
) -> None:
    """Stored: 1. The rest was written before the socket subscribed, so it never comes live:
    the socket finds it in the read model once the projector has stored it."""
    order_id = await submit_keyed(api, f"late-{uuid.uuid4()}")
    async with projector_running(api.settings):
        await eventually(lambda: _stored(api, order_id, 1))
    async with log_writer(api.settings) as writer:
        for sequence, event in enumerate(lifecycle(), start=2):
            await writer.append(order_id, sequence, event)
    await asyncio.sleep(1.0)  # the API's live feed has passed them before the socket exists
    async with websockets.connect(f"{api.ws_url}/ws/{order_id}") as socket:
        first = await receive(socket, 2)
        assert [m["status"] for m in first] == ["connected", "pending"]
        async with projector_running(api.settings):
            rest = await receive_all(socket)
    assert [m["sequence"] for m in rest] == [2, 3, 4, 5]
    assert socket.close_code == 1000


async def _stored(api: RunningApi, order_id: uuid.UUID, count: int) -> bool:
    response = await api.http.get(f"/api/orders/{order_id}/events")
    return response.status_code == 200 and len(response.json()["events"]) >= count


async def test_a_finished_order_replays_its_history_and_closes(api: RunningApi) -> None:
    order_id = await submit_keyed(api, f"done-{uuid.uuid4()}")
    async with log_writer(api.settings) as writer:
        for sequence, event in enumerate(lifecycle(), start=2):
            await writer.append(order_id, sequence, event)
    async with projector_running(api.settings):
        await eventually(lambda: _stored(api, order_id, 5))
    async with websockets.connect(f"{api.ws_url}/ws/{order_id}") as socket:
        got = await receive_all(socket)
    assert [m["status"] for m in got] == ["connected", *STATUSES]
    assert socket.close_code == 1000
    # A client that had 1..2 (from this process or another) resumes after 2.
    async with websockets.connect(f"{api.ws_url}/ws/{order_id}?since=2") as socket:
        resumed = await receive_all(socket)
    assert [m.get("sequence") for m in resumed] == [None, 3, 4, 5]
    assert socket.close_code == 1000
    for bad in ("-1", "two", "1.5"):
        async with websockets.connect(f"{api.ws_url}/ws/{order_id}?since={bad}") as socket:
            refused = await receive_all(socket)
        assert [m["error"] for m in refused] == ["INVALID_SINCE"], refused
        assert socket.close_code == 1008


async def test_an_order_the_feed_saw_submitted_is_waited_for_past_the_grace(
    api: RunningApi,
) -> None:
    """Under load the projector can be further behind than the not-found grace, and the
    first live event (routing) later still; the API's feed saw the submission, so the
    socket waits for the history instead of calling a real order not found."""
    order_id = await submit_keyed(api, f"slow-{uuid.uuid4()}")
    await eventually(lambda: _fed(api, order_id))
    async with websockets.connect(f"{api.ws_url}/ws/{order_id}") as socket:
        assert [m["status"] for m in await receive(socket, 1)] == ["connected"]
        await asyncio.sleep(NOT_FOUND_GRACE_SECONDS + 1.0)  # nothing stored, nothing live
        async with projector_running(api.settings):
            assert [m["status"] for m in await receive(socket, 1)] == ["pending"]
            async with log_writer(api.settings) as writer:
                for sequence, event in enumerate(lifecycle(), start=2):
                    await writer.append(order_id, sequence, event)
            rest = await receive_all(socket)
    assert [m["sequence"] for m in rest] == [2, 3, 4, 5]
    assert socket.close_code == 1000


async def _fed(api: RunningApi, order_id: uuid.UUID) -> bool:
    return api.runtime.feed.owner_of(order_id)[0]


async def test_an_unknown_order_is_reported_and_closed(api: RunningApi) -> None:
    for order in (str(uuid.uuid4()), "not-an-id"):
        async with websockets.connect(f"{api.ws_url}/ws/{order}") as socket:
            got = await receive_all(socket)
        assert got[-1]["status"] == "error"
        assert got[-1]["error"] == "ORDER_NOT_FOUND"
        assert socket.close_code == 4404


@pytest.fixture
async def tiny_queue_api(make_settings: MakeSettings) -> AsyncIterator[RunningApi]:
    async with running_api(make_settings(ws_queue_size=3)) as running:
        yield running


async def test_a_socket_that_falls_behind_is_closed_with_1013(tiny_queue_api: RunningApi) -> None:
    """Event 2 arrives without 1 being stored, so the socket waits on the read model while its
    queue of 3 fills: that socket is dropped; the feed and other sockets carry on."""
    api = tiny_queue_api
    order_id = uuid.uuid4()
    events = lifecycle()
    async with (
        log_writer(api.settings) as writer,
        websockets.connect(f"{api.ws_url}/ws/{order_id}") as stuck,
    ):
        await receive(stuck, 1)
        for sequence in range(2, 8):
            await writer.append(
                order_id, sequence, events[0].model_copy(update={"attempt": sequence})
            )
        assert await receive_all(stuck) == []
        assert stuck.close_code == 1013
    key = f"after-{uuid.uuid4()}"
    async with websockets.connect(f"{api.ws_url}/ws/{order_id_for(key, None)}") as healthy:
        await receive(healthy, 1)
        await submit_keyed(api, key)
        [pending] = await receive(healthy, 1)
        assert (pending["status"], pending["sequence"]) == ("pending", 1)


async def test_sockets_on_a_saturated_read_pool_wait_and_still_get_every_event(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overload degrades latency, never subscribers: with the API's one pooled connection
    held past the pool's timeout, every socket's history read times out at first (which
    used to close it with 1013 READ_MODEL_UNAVAILABLE); each waits, asks again, and gets its
    order's whole story once the pool is free."""
    monkeypatch.setattr(read_model_module, "QUERY_TIMEOUT_SECONDS", 0.2)
    async with running_api(make_settings(read_pool_size=1)) as api:
        keys = [f"busy-{uuid.uuid4()}" for _ in range(12)]
        orders = [order_id_for(key, None) for key in keys]
        pool = api.runtime.read_model.pool
        async with projector_running(api.settings), log_writer(api.settings) as writer:
            async with pool.connection():  # the pool's only connection, held: saturated
                sockets = [await websockets.connect(f"{api.ws_url}/ws/{o}") for o in orders]
                for socket in sockets:
                    assert (await receive(socket, 1))[0]["status"] == "connected"
                for key in keys:
                    await submit_keyed(api, key)
                for order_id in orders[::2]:  # half finish now, live; half after the pool frees
                    for sequence, event in enumerate(lifecycle(), start=2):
                        await writer.append(order_id, sequence, event)

                async def timed_out_reads() -> bool:
                    return pool.get_stats().get("requests_errors", 0) >= len(orders)

                await eventually(timed_out_reads)  # as many reads timed out as there are sockets
            for order_id in orders[1::2]:
                for sequence, event in enumerate(lifecycle(), start=2):
                    await writer.append(order_id, sequence, event)
            stories = await asyncio.gather(*(receive_all(s, timeout=30) for s in sockets))
        for socket, story in zip(sockets, stories, strict=True):
            assert [m["sequence"] for m in story] == [1, 2, 3, 4, 5], story
            assert socket.close_code == 1000
