"""The router's appends to the order log: each order's next event, and dead letters."""

from __future__ import annotations

import os
import socket
import uuid

from aiokafka.errors import KafkaError

from schemas.codec import encode
from schemas.envelope import Envelope, record_hash
from schemas.events import OrderEvent
from services.common.kafka import DeadLetter, RenewingProducer, send_to_dead_letter
from services.common.metrics import dead_letters_start_at_zero
from services.common.process import retry_while_down
from services.common.settings import Settings
from services.domain.order import OrderState, evolve
from services.router import metrics


class Emitter:
    """Appends events for the orders this router executes, waiting out Kafka outages."""

    def __init__(self, producer: RenewingProducer, settings: Settings) -> None:
        self._producer = producer
        self._settings = settings
        self._name = f"router:{socket.gethostname()}:{os.getpid()}"
        dead_letters_start_at_zero(settings.router_group)

    async def emit(self, state: OrderState, *payloads: OrderEvent) -> OrderState:
        """Append the order's next events, in order; return once all are durably on the log.

        Events with nothing to wait for between them (routed, then built) go together: one
        produce request and one acknowledgement to wait for instead of one each.
        """
        values: list[bytes] = []
        appended: list[tuple[OrderState, Envelope]] = []
        for payload in payloads:
            envelope = Envelope.new(
                order_id=state.order_id,
                sequence=state.sequence + 1,
                producer=self._name,
                prev_hash=state.last_hash,
                payload=payload,
            )
            value = encode(envelope)
            values.append(value)
            appended.append((state, envelope))
            state = evolve(state, envelope, record_hash(value))
        await self._append(state.order_id, values)
        for before, envelope in appended:
            metrics.record(before, envelope)
        return state

    async def submit(self, envelope: Envelope) -> None:
        """Append another order's first event (a sniper's autoSell OCO), durably."""
        await self._append(envelope.order_id, [encode(envelope)])

    async def _append(self, order_id: uuid.UUID, values: list[bytes]) -> None:
        """Write an order's records under its key, waiting out Kafka outages until acknowledged."""
        await retry_while_down(
            lambda: self._producer.send_all_and_wait(
                self._settings.orders_topic, values=values, key=str(order_id).encode()
            ),
            is_outage=lambda exc: isinstance(exc, KafkaError),
            what=f"Kafka, for order {order_id},",
        )

    async def dead_letter(
        self, partition: int, offset: int, key: bytes | None, value: bytes | None, reason: str
    ) -> None:
        letter = DeadLetter(
            self._settings.orders_topic, partition, offset, reason, self._settings.router_group
        )
        await send_to_dead_letter(
            self._producer, self._settings.dead_letter_topic, letter, key, value
        )
