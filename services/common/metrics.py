"""Prometheus metrics shared by every process; each serves them at `/metrics`.

The API serves its registry through a route; the router and the projector start
prometheus-client's own HTTP server (`serve_metrics`) on a port of their own.
Label values are small closed sets (stage names, statuses, failure codes, venues,
group names), never order ids: one series per order would grow without bound.
"""

from __future__ import annotations

import logging
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

from schemas.events import FailureCode, OrderStatus
from services.venues.pool import Venue

log = logging.getLogger(__name__)

# Stages of an order whose latency is measured, in the order they happen.
ACCEPT: Final = "accept"  # API: request in -> OrderSubmitted durably on the log
ROUTE: Final = "route"  # router: OrderSubmitted -> OrderRouted (both venues quoted)
EXECUTE: Final = "execute"  # router: OrderRouted -> final event (build, send, confirm)
PROJECT: Final = "project"  # projector: event on the log -> row committed in PostgreSQL
END_TO_END: Final = "end_to_end"  # OrderSubmitted -> final event, by their timestamps
STAGES: Final = (ACCEPT, ROUTE, EXECUTE, PROJECT, END_TO_END)

# From a few milliseconds (accept, project) to the retries' 2 + 4 + 8 s and beyond.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60)

ORDERS_FINISHED = Counter(
    "oee_orders_finished",
    "Orders that reached a final status, by status and failure reason ('' when completed).",
    ["status", "reason"],
)
STAGE_LATENCY = Histogram(
    "oee_stage_latency_seconds",
    "Seconds an order spent in one stage: accept, route, execute, project or end_to_end.",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
)
VENUE_QUOTES = Counter(
    "oee_venue_quotes",
    "Quotes asked of each venue while routing, by outcome (ok or error).",
    ["venue", "outcome"],
)
VENUE_WINS = Counter(
    "oee_venue_wins",
    "Route decisions that used each venue (a split counts for both).",
    ["venue"],
)
RETRIES = Counter(
    "oee_retries",
    "Failed attempts that were retried, by failure code.",
    ["code"],
)
CONSUMER_LAG = Gauge(
    "oee_consumer_lag",
    "Records of the order log a consumer group has not processed yet, per partition.",
    ["group", "partition"],
)
DEAD_LETTERS = Counter(
    "oee_dead_letters",
    "Records this process sent to the dead-letter topic, by consumer.",
    ["consumer"],
)
DEAD_LETTER_RECORDS = Gauge(
    "oee_dead_letter_records",
    "Records on the dead-letter topic (the sum of its end offsets), as last read.",
)
WEBSOCKET_CLIENTS = Gauge(
    "oee_websocket_clients",
    "Open WebSocket connections of this API process, by endpoint (order or firehose).",
    ["endpoint"],
)


def _start_known_series_at_zero() -> None:
    """Create every series whose labels are known up front, so a fresh process shows 0s.

    Prometheus advises this: a series that appears only after its first event makes
    rate() and alerts blind to that first event, and a new system's /metrics shows
    families without samples. Consumer groups are named by settings, so each process
    starts its own dead-letter series (`dead_letters_start_at_zero`).
    """
    venues = [venue.value for venue in Venue]
    for stage in STAGES:
        STAGE_LATENCY.labels(stage)
    ORDERS_FINISHED.labels(OrderStatus.COMPLETED.value, "")
    for code in FailureCode:
        ORDERS_FINISHED.labels(OrderStatus.FAILED.value, code.value)
        RETRIES.labels(code.value)
    for venue in venues:
        VENUE_WINS.labels(venue)
        for outcome in ("ok", "error"):
            VENUE_QUOTES.labels(venue, outcome)
    for endpoint in ("order", "firehose"):
        WEBSOCKET_CLIENTS.labels(endpoint)


_start_known_series_at_zero()


def dead_letters_start_at_zero(consumer: str) -> None:
    """Show this consumer's dead-letter count as 0 before its first dead letter."""
    DEAD_LETTERS.labels(consumer)


def observe_stage(stage: str, seconds: float) -> None:
    """Record how long one order spent in `stage` (one of STAGES)."""
    STAGE_LATENCY.labels(stage).observe(max(0.0, seconds))


def order_finished(status: str, reason: str | None = None) -> None:
    """Count an order that reached `status` (completed or failed) for `reason` (a failure code)."""
    ORDERS_FINISHED.labels(status, reason or "").inc()


def venues_used(selected_dex: str) -> None:
    """Count the venues of a route decision: "RAYDIUM", "METEORA" or both joined by "+"."""
    for venue in selected_dex.split("+"):
        if venue:
            VENUE_WINS.labels(venue).inc()


def exposition(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The registry in Prometheus' text format, with its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def start_metrics_server(host: str, port: int) -> None:
    """Serve `/metrics` from a daemon thread, for processes without an HTTP server of their own.

    A taken port (a second router on the same host) costs the metrics, not the process.
    """
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.warning("metrics not served on %s:%s: %s", host, port, exc)
