"""What both projectors (orders and market) share about reading batches and waiting out outages."""

from __future__ import annotations

import psycopg
from aiokafka.errors import KafkaError
from psycopg_pool import PoolTimeout

MAX_BATCH = 2000
# Once records arrive, wait this long for more: a batch costs about the same whatever its size.
BATCH_LINGER_SECONDS = 0.02


def is_outage(exc: BaseException) -> bool:
    """PostgreSQL down, or Kafka refusing a dead letter: wait and apply the batch again."""
    return isinstance(exc, psycopg.OperationalError | PoolTimeout | KafkaError)
