"""The envelope every event travels in: identity, order, time, provenance, integrity."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, computed_field, field_validator

from schemas.events import OrderEvent, OrderStatus

# Event ids are derived from (order, sequence) so that re-emitting an event after a
# crash yields the same id, and consumers can drop the copy.
_EVENT_ID_NAMESPACE = uuid.UUID("6f1c1d0e-6a43-4f1e-9a53-8f9b1d2e7c40")

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def event_id_for(order_id: uuid.UUID, sequence: int) -> uuid.UUID:
    """The one id an order's n-th event can have."""
    return uuid.uuid5(_EVENT_ID_NAMESPACE, f"{order_id}:{sequence}")


def genesis_hash(order_id: uuid.UUID) -> str:
    """Anchor of an order's hash chain: what its first event points back to."""
    return hashlib.sha256(b"oee-order:" + order_id.bytes).hexdigest()


def record_hash(value: bytes) -> str:
    """Hash of an event exactly as written to the log; the next event carries it."""
    return hashlib.sha256(value).hexdigest()


def utc_now() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """An order event plus what the log and an auditor need to know about it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID
    order_id: uuid.UUID
    sequence: int = Field(ge=1)
    occurred_at: AwareDatetime
    producer: str = Field(min_length=1, max_length=64)
    prev_hash: Sha256Hex
    payload: OrderEvent

    @field_validator("occurred_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def type(self) -> str:
        return self.payload.TYPE

    @computed_field  # type: ignore[prop-decorator]
    @property
    def version(self) -> int:
        return self.payload.VERSION

    @property
    def status(self) -> OrderStatus:
        return self.payload.resulting_status()

    @classmethod
    def new(
        cls,
        *,
        order_id: uuid.UUID,
        sequence: int,
        producer: str,
        prev_hash: str,
        payload: OrderEvent,
        occurred_at: datetime | None = None,
    ) -> Envelope:
        """Wrap a payload as the order's `sequence`-th event."""
        return cls(
            event_id=event_id_for(order_id, sequence),
            order_id=order_id,
            sequence=sequence,
            occurred_at=occurred_at or utc_now(),
            producer=producer,
            prev_hash=prev_hash,
            payload=payload,
        )
