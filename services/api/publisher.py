"""Kafka edge of the API: an order is accepted only once its first event is durably on the log."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka.errors import KafkaError

from schemas import codec
from schemas.envelope import Envelope, genesis_hash
from schemas.events import OrderSubmitted
from services.api.validation import ValidOrder
from services.common.kafka import RenewingProducer

PRODUCER = "api"


class LogUnavailable(RuntimeError):
    """The log did not confirm the write in time; the order was not accepted."""


def submission(order_id: uuid.UUID, order: ValidOrder, owner: str | None) -> Envelope:
    """The order's first event: sequence 1, chained to the order's genesis hash."""
    return Envelope.new(
        order_id=order_id,
        sequence=1,
        producer=PRODUCER,
        prev_hash=genesis_hash(order_id),
        payload=OrderSubmitted(
            token_in=order.token_in,
            token_out=order.token_out,
            amount=order.amount,
            slippage=order.slippage,
            client_order_id=order.client_order_id,
            owner=owner,
            order_type=order.order_type,
            limit_price=order.limit_price,
            trigger_price=order.trigger_price,
            take_profit_price=order.take_profit_price,
            stop_loss_price=order.stop_loss_price,
            trailing_bps=order.trailing_bps,
            expires_at=order.expires_at,
            allow_partial=order.allow_partial,
            max_price=order.max_price,
            checks=order.checks,
            only_at_launch=order.only_at_launch,
            auto_sell=order.auto_sell,
            priority=order.priority,
        ),
    )


class OrderPublisher:
    """Writes submissions to the orders topic, keyed by order id: one order, one partition."""

    def __init__(self, producer: RenewingProducer, topic: str, timeout: float) -> None:
        self.producer = producer
        self.topic = topic
        self.timeout = timeout

    async def publish(self, envelope: Envelope) -> tuple[int, int]:
        """Return the record's (partition, offset) once the broker acknowledged (acks=all);
        else raise LogUnavailable.

        After a timeout the record may still reach the log later; a client that
        retries with the same clientOrderId gets the same order, not a second one.
        """
        value, key = codec.encode(envelope), str(envelope.order_id).encode()
        try:
            # A timeout scope, not wait_for: no extra task and loop turn per accepted order.
            async with asyncio.timeout(self.timeout):
                written = await self.producer.send_and_wait(self.topic, value=value, key=key)
        except TimeoutError:
            raise LogUnavailable(f"the log did not confirm within {self.timeout}s") from None
        except (KafkaError, OSError) as exc:
            raise LogUnavailable(str(exc) or type(exc).__name__) from None
        return written.partition, written.offset
