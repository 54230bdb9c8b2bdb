"""`/metrics`: this process's Prometheus metrics, plus the log's lag and dead letters.

Consumer lag and the dead-letter count describe the whole system, not this
process; they are read from Kafka (and the projector's stored positions from
PostgreSQL) when scraped, at most every few seconds, and never fail the scrape.
"""

from __future__ import annotations

import contextlib
import logging
import time

from fastapi import APIRouter, Response

from services.api.deps import Runtime
from services.api.runtime import ApiRuntime
from services.common.errors import DependencyUnavailable
from services.common.logstats import read_log_stats, stored_positions
from services.common.metrics import CONSUMER_LAG, DEAD_LETTER_RECORDS, exposition

router = APIRouter(tags=["metrics"])
log = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0
REFRESH_TIMEOUT_SECONDS = 2.0
_refreshed_at = float("-inf")


async def _projector_positions(runtime: ApiRuntime) -> dict[int, int] | None:
    """The projector keeps its positions in PostgreSQL, not in Kafka; None when unreadable."""
    with contextlib.suppress(Exception):
        async with runtime.read_model.pool.connection(timeout=REFRESH_TIMEOUT_SECONDS) as conn:
            return await stored_positions(conn, runtime.settings.orders_topic)
    return None


async def refresh_log_metrics(runtime: ApiRuntime) -> None:
    """Set the lag and dead-letter gauges from the log, unless they were set moments ago."""
    global _refreshed_at
    # Claimed before the first await, so concurrent scrapes do not each ask Kafka.
    if time.monotonic() - _refreshed_at < REFRESH_SECONDS:
        return
    _refreshed_at = time.monotonic()
    settings = runtime.settings
    projector = await _projector_positions(runtime)
    try:
        stats = await read_log_stats(
            settings.kafka_servers,
            settings.orders_topic,
            settings.dead_letter_topic,
            settings.consumer_group_prefix,
            positions={settings.projector_group: projector} if projector else None,
            timeout=REFRESH_TIMEOUT_SECONDS,
        )
    except DependencyUnavailable as exc:
        log.warning("metrics: could not read the log's lag (%s)", exc)
        return
    for group in stats.groups:
        for partition, lag in (group.lag or {}).items():
            CONSUMER_LAG.labels(group.group, str(partition)).set(lag)
    DEAD_LETTER_RECORDS.set(stats.dead_letters)


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def metrics(runtime: Runtime) -> Response:
    """Prometheus' text exposition format."""
    await refresh_log_metrics(runtime)
    body, content_type = exposition()
    return Response(body, media_type=content_type)
