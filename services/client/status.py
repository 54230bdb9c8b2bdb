"""`oee status`: gathers the system's state from the API, Kafka, PostgreSQL and the metrics ports.

Each source is asked on its own and may be missing; what could not be read is
reported as a problem, never as a crash, since status is what one runs when
something is wrong.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx
import psycopg

from services.client.http import ApiClient, ApiError
from services.client.render import STATUSES, ProcessState, StatusReport
from services.common.errors import DependencyUnavailable
from services.common.logstats import LogStats, read_log_stats, stored_positions
from services.common.settings import Settings

PROBE_TIMEOUT_SECONDS = 2.0


def api_process(client: ApiClient) -> ProcessState:
    """The API's own view of itself and its dependencies, from /health."""
    try:
        health = client.health()
    except ApiError as exc:
        return ProcessState("api", "down", str(exc))
    dependencies = health.get("dependencies", {})
    detail = ", ".join(
        f"{name} {dep.get('status')}" + (f" ({dep['error']})" if dep.get("error") else "")
        for name, dep in sorted(dependencies.items())
    )
    state = "up" if health.get("status") == "ok" else "degraded"
    return ProcessState("api", state, f"{detail}; up {health.get('uptime', '?')} s")


def metrics_process(name: str, url: str) -> ProcessState:
    """A process is up if its /metrics answers; not serving one is not proof it is down."""
    try:
        response = httpx.get(url, timeout=PROBE_TIMEOUT_SECONDS)
    except httpx.HTTPError:
        return ProcessState(name, "unknown", f"no answer from {url}")
    if response.status_code == 200:
        return ProcessState(name, "up", url)
    return ProcessState(name, "unknown", f"{url} answered {response.status_code}")


def chain_process(url: str) -> ProcessState:
    """The chain the orders execute on: `oee chain` (or a cluster) answering `getSlot`."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "getSlot", "params": []}
    try:
        response = httpx.post(url, json=body, timeout=PROBE_TIMEOUT_SECONDS)
        slot = response.json()["result"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        return ProcessState("chain", "down", f"{url}: {exc or type(exc).__name__}")
    return ProcessState("chain", "up", f"{url} at slot {slot}")


def orders_by_status(client: ApiClient) -> dict[str, int]:
    """Totals per status from the list endpoint (a non-admin key sees only its own orders)."""
    return {status: int(client.orders(status=status, limit=1)["total"]) for status in STATUSES}


async def _projector_positions(settings: Settings) -> dict[int, int] | None:
    try:
        async with await psycopg.AsyncConnection.connect(
            settings.postgres_url,
            connect_timeout=int(PROBE_TIMEOUT_SECONDS),
            autocommit=True,
        ) as conn:
            return await stored_positions(conn, settings.orders_topic)
    except psycopg.Error:
        return None


async def log_stats(settings: Settings) -> tuple[LogStats, bool]:
    """The log's lag and dead letters; the projector's positions come from PostgreSQL."""
    positions = await _projector_positions(settings)
    stats = await read_log_stats(
        settings.kafka_servers,
        settings.orders_topic,
        settings.dead_letter_topic,
        settings.consumer_group_prefix,
        positions={settings.projector_group: positions} if positions else None,
    )
    return stats, positions is not None


def gather(client: ApiClient, settings: Settings) -> StatusReport:
    """Ask every source; what cannot be read becomes a problem line."""
    problems: list[str] = []
    api = api_process(client)
    host = urlsplit(client.base_url).hostname or "127.0.0.1"
    processes = (
        api,
        metrics_process("router", f"http://{host}:{settings.router_metrics_port}/metrics"),
        metrics_process("projector", f"http://{host}:{settings.projector_metrics_port}/metrics"),
        chain_process(settings.solana_rpc_url),
    )
    counts: dict[str, int] | None = None
    if api.state != "down":
        try:
            counts = orders_by_status(client)
        except ApiError as exc:
            problems.append(f"orders by status: {exc}")
    lag: dict[str, int | None] | None = None
    dead: int | None = None
    try:
        stats, projector_read = asyncio.run(log_stats(settings))
    except DependencyUnavailable as exc:
        problems.append(str(exc))
    else:
        lag = {group.group: group.total for group in stats.groups}
        dead = stats.dead_letters
        if not projector_read:
            problems.append(
                "the projector keeps its log positions in PostgreSQL, which was not readable"
                " (set DATABASE_URL); its lag is unknown"
            )
    return StatusReport(processes, lag, dead, counts, tuple(problems))
