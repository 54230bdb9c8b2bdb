"""Load, waiting and inspection helpers shared by the reliability tests."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import psycopg

from schemas.envelope import Envelope
from services.common.settings import Settings
from tests.e2e.system import System, assert_no_swap_landed_twice, order_payload, read_log

PAIRS = [
    ("SOL", "USDC", "0.2"),
    ("USDC", "SOL", "20"),
    ("JUP", "SOL", "10"),
    ("BONK", "USDC", "50000"),
]


@dataclass
class Load:
    """Clients submitting orders to one or more API processes, remembering what was accepted."""

    base_urls: list[str]
    accepted: set[str] = field(default_factory=set)
    outcomes: Counter[str] = field(default_factory=Counter)
    accepted_by: Counter[str] = field(default_factory=Counter)  # 202s per API base URL
    rng: random.Random = field(default_factory=lambda: random.Random(11))
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def submit(self, client: httpx.AsyncClient, base_url: str | None = None) -> str | None:
        """One order; its id when the answer was 202, else None (any other answer is counted)."""
        token_in, token_out, amount = self.rng.choice(PAIRS)
        url = base_url or self.rng.choice(self.base_urls)
        try:
            response = await client.post(
                f"{url}/api/orders/execute",
                json=order_payload(token_in, token_out, amount),
            )
        except httpx.HTTPError as exc:
            self.outcomes[type(exc).__name__] += 1
            return None
        self.outcomes[str(response.status_code)] += 1
        if response.status_code != 202:
            # A process going away may refuse work, but must never answer with a server error.
            assert response.status_code == 503, response.text
            return None
        order_id = str(response.json()["orderId"])
        self.accepted.add(order_id)
        self.accepted_by[url] += 1
        return order_id

    async def run(self, count: int, *, concurrency: int = 8, pause: float = 0.01) -> None:
        """Submit `count` orders from `concurrency` clients (fewer if `stop` is set first)."""
        remaining = iter(range(count))

        async def client_loop(client: httpx.AsyncClient) -> None:
            for _ in remaining:
                if self.stop.is_set():
                    return
                await self.submit(client)
                await asyncio.sleep(pause)

        async with httpx.AsyncClient(timeout=15) as client:
            await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))


async def router_ready(system: System) -> set[str]:
    """Place one order and wait until it is final: the router has its partitions and is live.

    Load that starts while the router is still taking its partitions can hit the
    start-up race described in docs/reliability.md; the tests here start after it.
    """
    load = Load([system.base_url])
    await load.run(1, concurrency=1)
    await wait_all_final(system, load.accepted, timeout=60, stall=60)
    return load.accepted


async def final_count(system: System, order_ids: set[str]) -> int:
    """How many of these orders the read model shows as completed or failed."""
    async with await psycopg.AsyncConnection.connect(str(system.settings.database_url)) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM read_model.orders"
            " WHERE id = ANY(%s::uuid[]) AND status IN ('completed', 'failed')",
            (list(order_ids),),
        )
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


class OrdersStuck(AssertionError):
    """Accepted orders stopped making progress: a liveness failure, not a wrong answer."""


async def wait_all_final(
    system: System, order_ids: set[str], timeout: float = 60, stall: float = 20
) -> None:
    """Until the read model shows every one of `order_ids` final.

    Raises OrdersStuck, naming each straggler's last event on the log, when the count
    of final orders has not moved for `stall` seconds or `timeout` has passed.
    """
    began = last_change = time.monotonic()
    seen = -1
    while True:
        try:
            done = await final_count(system, order_ids)
        except psycopg.OperationalError:
            done = seen
        if done == len(order_ids):
            return
        now = time.monotonic()
        if done != seen:
            seen, last_change = done, now
        if now - last_change > stall or now - began > timeout:
            stuck = await stragglers(system, order_ids)
            last_events = dict(Counter(stuck.values()))
            raise OrdersStuck(
                f"{len(order_ids) - done} of {len(order_ids)} orders not final (last event on"
                f" the log: {last_events}); logs in {system.log_dir}"
            )
        await asyncio.sleep(0.5)


async def readable_log(settings: Settings) -> list[Envelope]:
    """Every event on the order log that decodes, in log order per partition (poison skipped)."""
    return [envelope for _, _, envelope in await read_log(settings, skip_undecodable=True)]


async def stragglers(system: System, order_ids: set[str]) -> dict[str, str]:
    """Each unfinished order with the last event the log has for it."""
    last: dict[str, str] = {}
    for envelope in await readable_log(system.settings):
        if str(envelope.order_id) in order_ids:
            last[str(envelope.order_id)] = envelope.type
    return {o: t for o, t in last.items() if t not in ("OrderCompleted", "OrderFailed")}


async def orders_on_log(system: System) -> set[str]:
    """Every order with an OrderSubmitted on this system's log, accepted with 202 or not."""
    return {
        str(envelope.order_id)
        for envelope in await readable_log(system.settings)
        if envelope.type == "OrderSubmitted"
    }


def terminate(system: System, key: str, timeout: float = 30) -> tuple[float, int | None]:
    """SIGTERM one process; how long it took to exit and its exit code (None: had to be killed)."""
    process: subprocess.Popen[bytes] = system.expect_exit(key)
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code: int | None = process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        code = None
    return time.monotonic() - began, code


@contextlib.asynccontextmanager
async def running(load: Load, count: int, **kwargs: float) -> AsyncIterator[asyncio.Task[None]]:
    """Run a load in the background for the block; wait for it to finish at the end."""
    task = asyncio.create_task(load.run(count, **kwargs))  # type: ignore[arg-type]
    try:
        yield task
    finally:
        await task


async def kafka_answers(servers: str) -> bool:
    """True once a client can read the cluster's metadata again."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), 5)
        await asyncio.wait_for(admin.list_topics(), 5)
        return True
    except Exception:  # any failure of the probe means: not yet
        return False
    finally:
        await admin.close()


async def assert_exactly_once_despite_poison(system: System, order_ids: set[str]) -> None:
    """`assert_log_matches_read_models` for a log that also holds records nobody can decode."""
    finals: dict[str, str] = {}
    sequences: dict[str, list[int]] = {}
    envelopes = await readable_log(system.settings)
    for envelope in envelopes:
        order_id = str(envelope.order_id)
        if order_id not in order_ids:
            continue
        sequences.setdefault(order_id, []).append(envelope.sequence)
        if envelope.status.is_final:
            assert order_id not in finals, f"two final events for {order_id}"
            finals[order_id] = envelope.status.value
    assert set(finals) == order_ids
    async with await psycopg.AsyncConnection.connect(str(system.settings.database_url)) as conn:
        cursor = await conn.execute(
            "SELECT o.id::text, o.status, o.last_sequence, count(e.sequence)"
            " FROM read_model.orders o JOIN read_model.order_events e ON e.order_id = o.id"
            " WHERE o.id = ANY(%s::uuid[]) GROUP BY 1, 2, 3",
            (list(order_ids),),
        )
        rows = await cursor.fetchall()
    assert {order_id: status for order_id, status, _, _ in rows} == finals
    for order_id, _, last_sequence, stored in rows:
        assert last_sequence == stored == max(sequences[order_id]), order_id
    filled = await assert_no_swap_landed_twice(system.settings, envelopes, order_ids)
    assert set(filled) == {o for o, s in finals.items() if s == "completed"}
