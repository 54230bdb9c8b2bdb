"""faust's record delivery, one fetched batch at a time instead of one record at a time.

faust-streaming's fetcher (``Consumer._drain_messages``) hands each record to the
streams under its own ``wait_first(callback(record), suspend_flow.wait())``: two
tasks and an ``asyncio.wait`` per record, about three event-loop turns. In the
router every turn also runs whatever the in-flight orders have ready, so records
the broker already had waited in front of the agent (profiled: records delivered
per second = loop turns per second / 3, with the router at 15-25 % CPU).

This consumer keeps faust's semantics and races the whole batch against
``suspend_flow`` once: a rebalance that suspends the flow still abandons the
records not yet delivered, exactly as it abandoned the next record before
(faust's ``getmany`` also stops yielding once the flow is inactive). Read
offsets, gap tracking and the commit cadence are kept record by record.

Its consumer thread also fetches fewer, fuller batches while records flow
(`BatchFetchingConsumerThread`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
from faust.types.transports import TransportT
from mode import ServiceT

from services.common.kafka import batch_fetches_while_busy

# Yield to the loop every this many records, as faust's own drain loop does, so a
# large batch cannot starve timers and the order tasks.
YIELD_EVERY = 100


class BatchFetchingConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """faust's consumer thread, its aiokafka consumer fetching as `batch_fetches_while_busy`
    says: while records flow, a fetch waits up to 5 ms for more (the reasons and figures
    are there)."""

    async def on_start(self) -> None:
        await super().on_start()
        assert self._consumer is not None
        batch_fetches_while_busy(self._consumer)


class BatchDeliveringConsumer(aiokafka_driver.Consumer):
    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        return BatchFetchingConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set  # type: ignore[attr-defined]
        while not (consumer_stopped() or fetcher_stopped()):
            records = self.getmany(timeout=1.0)
            await self.sleep(0)
            if not self.should_stop:
                await self.wait_first(self._deliver(records), self.suspend_flow.wait())

    async def _deliver(self, records: AsyncIterator[tuple[TP, Any]]) -> None:
        read_offsets = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        since_yield = 0
        async for tp, message in records:
            since_yield += 1
            if since_yield >= YIELD_EVERY:
                await asyncio.sleep(0)
                since_yield = 0
            offset = message.offset
            read_offset = read_offsets[tp]
            if read_offset is not None and offset < read_offset:
                continue  # already delivered before a seek back
            if read_offset and offset - read_offset > 1 and acks_enabled_for(message.topic):
                await self._add_gap(tp, read_offset + 1, offset)
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()
            await self.callback(message)
            read_offsets[tp] = offset


class BatchDeliveringTransport(aiokafka_driver.Transport):
    Consumer = BatchDeliveringConsumer


class BatchDeliveringApp(faust.App):
    """A faust app whose consumer fetches and delivers records a batch at a time."""

    def _new_transport(self) -> TransportT:
        return BatchDeliveringTransport(self.conf.broker_consumer, self)
