"""The load generator's clients: each POSTs one order at its due time and may watch its socket."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import aiohttp  # a faust-streaming dependency: cheaper per request than httpx
import orjson

from bench.launcher import auth_headers
from bench.workload import LoadConfig, order_payloads, schedule


@dataclass
class OrderTrace:
    """What one client saw of one order (wall-clock seconds)."""

    index: int
    due: float
    watch: bool
    pair: str
    order_id: str | None = None
    accepted_at: float | None = None
    error: str | None = None
    socket: dict[str, float] = field(default_factory=dict)  # status -> received at
    socket_sequences: list[int] = field(default_factory=list)
    socket_close: int | None = None
    socket_close_reason: str | None = None


class Clients:
    """HTTP and WebSocket clients spread over the API processes."""

    def __init__(
        self, base_urls: list[str], config: LoadConfig, api_key: str | None = None
    ) -> None:
        for url in base_urls:
            host = url.split("://", 1)[1].split(":", 1)[0]
            if host != "127.0.0.1":
                raise SystemExit(f"refusing to send load to {url}: loopback (127.0.0.1) only")
        self.base_urls = base_urls
        self.config = config
        self.headers = auth_headers(api_key)
        timeout = aiohttp.ClientTimeout(total=config.http_timeout)
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=config.connections), timeout=timeout
        )
        # Sockets get their own unlimited connector: they must not queue behind submissions.
        self.ws = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def close(self) -> None:
        await self.http.close()
        await self.ws.close()

    async def run_order(self, trace: OrderTrace, body: bytes, deadline: float) -> None:
        base = self.base_urls[trace.index % len(self.base_urls)]
        try:
            async with self.http.post(
                f"{base}/api/orders/execute",
                data=body,
                headers={"content-type": "application/json", **self.headers},
            ) as response:
                answer = await response.read()
                trace.accepted_at = time.time()
                if response.status != 202:
                    trace.error = f"http_{response.status}"
                    return
                trace.order_id = orjson.loads(answer)["orderId"]
        except TimeoutError:
            trace.error = "http_timeout"
            return
        except aiohttp.ClientError as exc:
            trace.error = f"http_{type(exc).__name__}"
            return
        if trace.watch:
            await self._watch(trace, base, deadline)

    async def _watch(self, trace: OrderTrace, base: str, deadline: float) -> None:
        url = base.replace("http://", "ws://") + f"/ws/{trace.order_id}"
        try:
            async with asyncio.timeout(max(1.0, deadline - time.time())):
                async with self.ws.ws_connect(
                    url, max_msg_size=1 << 20, headers=self.headers
                ) as socket:
                    while True:
                        message = await socket.receive()
                        if message.type is aiohttp.WSMsgType.CLOSE:
                            # The server's reason: an error code, or why it gave up on us.
                            trace.socket_close_reason = message.extra or None
                        if message.type is not aiohttp.WSMsgType.TEXT:
                            break
                        received = time.time()
                        data = orjson.loads(message.data)
                        if "sequence" in data:
                            trace.socket.setdefault(data["status"], received)
                            trace.socket_sequences.append(data["sequence"])
                    trace.socket_close = socket.close_code
        except TimeoutError:
            trace.error = "ws_timeout"
        except aiohttp.ClientError as exc:
            trace.error = f"ws_{type(exc).__name__}"


async def generate(clients: Clients, config: LoadConfig, deadline_after: float) -> list[OrderTrace]:
    """Send every order at its due time; return when all clients are done or the deadline passes."""
    loop = asyncio.get_running_loop()
    rng = random.Random(f"{config.seed}:watch")
    payloads = order_payloads(config)
    traces: list[OrderTrace] = []
    tasks: set[asyncio.Task[None]] = set()
    start_mono = loop.time() + 0.2
    start_wall = time.time() + 0.2
    due_times = schedule(config)
    deadline = start_wall + (due_times[-1] if due_times else 0) + deadline_after
    for index, offset in enumerate(due_times):
        delay = start_mono + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        body, pair = next(payloads)
        trace = OrderTrace(index, start_wall + offset, rng.random() < config.ws_share, pair)
        traces.append(trace)
        if len(tasks) >= config.max_in_flight:
            trace.error = "generator_saturated"  # the generator's own bound, counted as an error
            continue
        task = asyncio.create_task(clients.run_order(trace, body, deadline))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=max(0.1, deadline - time.time()))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return traces
