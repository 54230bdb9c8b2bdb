"""The router's faust consumer hands a fetched batch to the streams in one go."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace

from faust.types import TP

from services.router.delivery import YIELD_EVERY, BatchDeliveringApp, BatchDeliveringConsumer

PARTITION = TP("orders", 0)


@dataclass
class Record:
    tp: TP
    offset: int

    @property
    def topic(self) -> str:
        return self.tp.topic


class Fetcher:
    """The consumer state `_deliver` reads and writes, without faust's consumer thread."""

    def __init__(self, read_offset: int | None = None) -> None:
        self._read_offset: dict[TP, int | None] = {PARTITION: read_offset}
        self._commit_every = None
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True))
        self.delivered: list[int] = []

    async def callback(self, record: Record) -> None:
        self.delivered.append(record.offset)

    async def deliver(self, records: AsyncIterator[tuple[TP, Record]]) -> None:
        await BatchDeliveringConsumer._deliver(self, records)  # type: ignore[arg-type]


def test_the_router_app_fetches_with_the_batch_delivering_consumer() -> None:
    app = BatchDeliveringApp("delivery-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    assert app.transport.Consumer is BatchDeliveringConsumer


async def batch(offsets: list[int]) -> AsyncIterator[tuple[TP, Record]]:
    for offset in offsets:
        yield PARTITION, Record(PARTITION, offset)


async def test_a_batch_is_delivered_in_order_within_a_few_loop_turns() -> None:
    fetcher = Fetcher()
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    counter = asyncio.create_task(count_turns())
    await asyncio.sleep(0)
    turns = 0
    await fetcher.deliver(batch(list(range(3 * YIELD_EVERY))))
    counter.cancel()

    assert fetcher.delivered == list(range(3 * YIELD_EVERY))
    # faust's own loop takes about three turns per record; this yields once per YIELD_EVERY.
    assert turns <= 3
    assert fetcher._read_offset[PARTITION] == 3 * YIELD_EVERY - 1


async def test_records_before_the_read_offset_are_not_delivered_again() -> None:
    fetcher = Fetcher(read_offset=5)
    await fetcher.deliver(batch([3, 4, 5, 6]))

    assert fetcher.delivered == [5, 6]
    assert fetcher._read_offset[PARTITION] == 6
