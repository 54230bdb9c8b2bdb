"""Reading a log up to fixed stops: the one loop the order and market rebuilds share.

A rebuild reads each partition from where its consumer stands up to a stop (the
next offset not to apply), in batches, so a later `run_to` can continue from the
same place. What happens when the log ends before a stop is the caller's: the
order rebuild reports it as a short log, the market rebuild just ends there.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.projector.projection import LogRecord


async def read_below_stops(
    consumer: AIOKafkaConsumer, pending: dict[TopicPartition, int], limit: int
) -> tuple[list[LogRecord], bool]:
    """Up to `limit` records below the stops, in log order per partition.

    Partitions that reached their stop leave `pending`; a fetch that read past a
    stop seeks back to it. The flag says the last poll came back empty, so the
    caller can check whether the remaining stops lie beyond the log's end.
    """
    batch: list[LogRecord] = []
    while pending and len(batch) < limit:
        fetched = await consumer.getmany(*pending, timeout_ms=500, max_records=limit - len(batch))
        for tp, messages in fetched.items():
            stop = pending[tp]
            batch.extend(
                LogRecord(m.topic, m.partition, m.offset, m.key, m.value)
                for m in messages
                if m.offset < stop
            )
        for tp, stop in list(pending.items()):
            position = await consumer.position(tp)
            if position >= stop:
                del pending[tp]
                if position > stop:
                    consumer.seek(tp, stop)  # read past the stop: a later run continues from it
        if not fetched:
            return batch, True
    return batch, False
