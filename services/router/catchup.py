"""Catching newly assigned partitions up from their resume positions, before they go live.

A plain read_committed consumer, outside faust's group, reads each partition from its
resume position to the end offset seen at assignment, folding every record into the
order states; the live stream then carries on from there.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.router.worker import Assignment, OrderRouter


async def catch_up(
    router: OrderRouter,
    servers: str,
    topic: str,
    assignments: dict[int, Assignment],
    starts: dict[int, int],
) -> None:
    """Fold each partition from `starts` (0 when absent) to its end, then let it go live.

    Every call names the assignment it works for: a partition revoked meanwhile is
    skipped, so a stale catch-up can neither fold into nor resume a later owner's orders.
    """
    tps = [TopicPartition(topic, p) for p in assignments]
    reader = AIOKafkaConsumer(
        bootstrap_servers=servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await reader.start()
    try:
        ends = await reader.end_offsets(tps)
        reader.assign(tps)
        for tp in tps:
            start = starts.get(tp.partition, 0)
            router.begin_catch_up(tp.partition, start, ends[tp], assignments[tp.partition])
            reader.seek(tp, start)
        behind = {tp for tp in tps if starts.get(tp.partition, 0) < ends[tp]}
        for tp in set(tps) - behind:
            await router.finish_catch_up(tp.partition, assignments[tp.partition])
        while behind:
            batches = await reader.getmany(*behind, timeout_ms=500)
            for tp, messages in batches.items():
                assignment = assignments[tp.partition]
                for message in messages:
                    if message.offset < ends[tp]:
                        await router.fold(
                            tp.partition, message.offset, message.key, message.value, assignment
                        )
            for tp in list(behind):
                if router.current(tp.partition, assignments[tp.partition]) is None:
                    behind.discard(tp)  # revoked meanwhile: nothing more to read for it
                elif await reader.position(tp) >= ends[tp]:
                    behind.discard(tp)
                    await router.finish_catch_up(tp.partition, assignments[tp.partition])
    finally:
        await reader.stop()


async def read_range(
    servers: str, topic: str, partition: int, start: int, end: int
) -> list[tuple[int, bytes | None, bytes | None]]:
    """The committed records of one partition in [start, end): (offset, key, value).

    For the few records faust's live delivery lost (`OrderRouter.on_live_record`).
    """
    tp = TopicPartition(topic, partition)
    reader = AIOKafkaConsumer(
        bootstrap_servers=servers, enable_auto_commit=False, isolation_level="read_committed"
    )
    await reader.start()
    try:
        reader.assign([tp])
        reader.seek(tp, start)
        records: list[tuple[int, bytes | None, bytes | None]] = []
        while await reader.position(tp) < end:
            for message in (await reader.getmany(tp, timeout_ms=500)).get(tp, []):
                if message.offset < end:
                    records.append((message.offset, message.key, message.value))
        return records
    finally:
        await reader.stop()
