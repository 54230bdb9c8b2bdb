"""Two API processes behind one address: sockets on either, and a client whose API dies.

Every API process consumes the whole log itself, so either can serve any order's socket.
A client whose process is killed (SIGKILL, mid-order) reconnects to the other with
`since` = the last sequence it received and must get the rest: no gap, no duplicate.
What each socket saw is compared with the log itself. Figures: docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import websockets

from services.api.sockets import CLOSE_TRY_AGAIN
from tests.e2e.system import System, order_payload, read_log
from tests.reliability.support import PAIRS, router_ready
from tests.reliability.test_process_faults import second_api

ORDERS = 12
# A socket that has not finished this long after its order was accepted is stuck.
FOLLOW_SECONDS = 90.0


@dataclass
class ResumingClient:
    """What a well-behaved client does: follow one order's socket; when its API process goes
    away, connect to the next one with `since` = the last sequence it received. A close
    with 1013 (try again: the read model behind on a loaded machine) is a reconnect too."""

    order_id: str
    ws_urls: list[str]
    sequences: list[tuple[int, str]] = field(default_factory=list)  # (sequence, type) received
    resumed_after: list[int] = field(default_factory=list)  # the `since` of each reconnect
    connected_at: list[float] = field(default_factory=list)  # when each socket said connected
    resumed_event_at: float | None = None  # the first event received after a reconnect
    first_event: asyncio.Event = field(default_factory=asyncio.Event)
    told_to_retry: int = 0  # error messages announcing a 1013 close
    cut_off: list[int | None] = field(default_factory=list)  # close codes of sockets cut off

    async def follow(self) -> None:
        turn = 0
        while True:
            since = self.sequences[-1][0] if self.sequences else 0
            url = f"{self.ws_urls[turn % len(self.ws_urls)]}/ws/{self.order_id}?since={since}"
            if turn:
                self.resumed_after.append(since)
            try:
                async with websockets.connect(url, open_timeout=5) as socket:
                    async for raw in socket:
                        self._receive(orjson.loads(raw))
                    # The server closed: 1000 after the final event, anything else is an error.
                    assert socket.close_code == 1000, (socket.close_code, socket.close_reason)
                    return
            except websockets.ConnectionClosedError as closed:
                # No close frame (None): the process died. Else only 1013 is expected.
                self.cut_off.append(closed.rcvd.code if closed.rcvd else None)
            except (OSError, websockets.InvalidHandshake):
                pass  # refused (the dead process's port) or not answering in time
            turn += 1
            await asyncio.sleep(0.05 if turn % len(self.ws_urls) else 0.5)

    def _receive(self, message: dict[str, Any]) -> None:
        if message["status"] == "error":
            assert message["error"] in ("HISTORY_UNAVAILABLE", "READ_MODEL_UNAVAILABLE"), message
            self.told_to_retry += 1
            return
        if message["status"] == "connected":
            self.connected_at.append(time.monotonic())
            return
        self.sequences.append((message["sequence"], message["type"]))
        self.first_event.set()
        if self.resumed_after and self.resumed_event_at is None:
            self.resumed_event_at = time.monotonic()


async def test_a_client_whose_api_is_killed_resumes_on_the_other_without_gap_or_duplicate(
    start_system: Any,
) -> None:
    # Realistic venue latency and injected failures (retries) keep orders in flight for
    # seconds, so the kill lands mid-order.
    system: System = await start_system(venue_latency="realistic", venue_failure_rate="0.1")
    victim_url = system.base_url
    survivor_url = await second_api(system)
    await router_ready(system)
    ws = {url: url.replace("http://", "ws://") for url in (victim_url, survivor_url)}

    clients: list[ResumingClient] = []
    watchers: list[ResumingClient] = []
    async with httpx.AsyncClient(timeout=15) as http:
        for n in range(ORDERS):
            token_in, token_out, amount = PAIRS[n % len(PAIRS)]
            accepting = (victim_url, survivor_url)[n % 2]  # half accepted by each API
            response = await http.post(
                f"{accepting}/api/orders/execute", json=order_payload(token_in, token_out, amount)
            )
            assert response.status_code == 202, response.text
            order_id = str(response.json()["orderId"])
            # Every order followed from the victim (to be cut off) and watched on the survivor.
            clients.append(ResumingClient(order_id, [ws[victim_url], ws[survivor_url]]))
            watchers.append(ResumingClient(order_id, [ws[survivor_url]]))
    following = [asyncio.create_task(client.follow()) for client in clients + watchers]

    # Kill the victim once every client has its first event from it: orders are mid-way.
    async with asyncio.timeout(30):
        await asyncio.gather(*(client.first_event.wait() for client in clients))
    killed_at = time.monotonic()
    system.kill("api")

    async with asyncio.timeout(FOLLOW_SECONDS):
        await asyncio.gather(*following)

    on_log: dict[str, list[tuple[int, str]]] = {}
    for _, _, envelope in await read_log(system.settings):
        on_log.setdefault(str(envelope.order_id), []).append((envelope.sequence, envelope.type))
    for client in clients:
        expected = on_log[client.order_id]
        assert [s for s, _ in expected] == list(range(1, len(expected) + 1)), expected
        assert client.sequences == expected, (client.order_id, client.resumed_after)
    for watcher in watchers:
        assert watcher.sequences == on_log[watcher.order_id], watcher.resumed_after
    for follower in clients + watchers:
        assert set(follower.cut_off) <= {None, CLOSE_TRY_AGAIN}, follower.cut_off

    cut = [c for c in clients if c.resumed_after and c.resumed_after[0] < len(on_log[c.order_id])]
    # The fault hit orders in flight: their clients resumed mid-order, not after the end.
    assert cut, [(c.resumed_after, len(on_log[c.order_id])) for c in clients]
    # Time from the kill until the client's socket on the survivor said connected (its
    # resume point fixed), and until the first event it had not received yet (which also
    # waits for the order's next step).
    reconnected = [min(t for t in c.connected_at if t > killed_at) - killed_at for c in cut]
    next_event = [c.resumed_event_at - killed_at for c in cut if c.resumed_event_at]
    print(
        f"\n[socket failover] orders={ORDERS} resumed_mid_order={len(cut)}"
        f" since={sorted(c.resumed_after[0] for c in cut)}"
        f" kill_to_reconnected_s={min(reconnected):.2f}..{max(reconnected):.2f}"
        f" kill_to_next_event_s={min(next_event):.2f}..{max(next_event):.2f}"
        f" told_to_retry={sum(c.told_to_retry for c in clients + watchers)}"
    )
