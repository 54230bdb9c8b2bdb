"""The only place events become bytes and bytes become events.

Reading goes raw bytes -> dict -> upcast to the current version -> model, and
every way that can fail ends in `UndecodableEvent` with a reason fit for the
dead-letter topic.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from schemas.envelope import Envelope
from schemas.events import EVENT_TYPES
from schemas.upcasting import upcast


class UndecodableEvent(ValueError):
    """Bytes on the log that are not an event this code can read."""


def encode(envelope: Envelope) -> bytes:
    """Canonical JSON (sorted keys) so an event's hash is stable."""
    return orjson.dumps(envelope.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)


def decode(value: bytes | None) -> Envelope:
    """Parse, upcast and validate one record value."""
    if not value:
        raise UndecodableEvent("empty record value")
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise UndecodableEvent(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise UndecodableEvent("not a JSON object")
    return from_dict(raw)


def from_dict(raw: dict[str, Any]) -> Envelope:
    """Build an envelope from its JSON form, upcasting older payload versions."""
    fields = dict(raw)
    event_type = fields.pop("type", None)
    version = fields.pop("version", None)
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise UndecodableEvent(f"unknown event type {event_type!r}")
    model = EVENT_TYPES[event_type]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UndecodableEvent(f"invalid version {version!r} for {event_type}")
    if version > model.VERSION:
        raise UndecodableEvent(
            f"{event_type} v{version} is newer than this reader (v{model.VERSION})"
        )
    payload = fields.get("payload")
    if not isinstance(payload, dict):
        raise UndecodableEvent(f"{event_type}: payload is not an object")
    try:
        fields["payload"] = model.model_validate(upcast(event_type, version, payload))
        return Envelope.model_validate(fields)
    except KeyError as exc:
        raise UndecodableEvent(str(exc.args[0])) from None
    except ValidationError as exc:
        raise UndecodableEvent(f"{event_type} v{version} invalid: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" + (
        f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    )
