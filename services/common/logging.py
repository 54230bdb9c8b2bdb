"""Structured logs: readable in a terminal, one JSON object per line in production."""

from __future__ import annotations

import logging
import sys

import structlog

from services.common.settings import Settings


def configure_logging(settings: Settings, process: str) -> None:
    """Route stdlib and structlog through one renderer, tagged with the process name."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.CallsiteParameterAdder(
            [structlog.processors.CallsiteParameter.MODULE]
        ),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    structlog.contextvars.bind_contextvars(process=process)
    # Kafka clients are chatty at INFO about every rebalance and reconnect.
    for noisy in ("aiokafka", "kafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
