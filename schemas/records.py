"""Reading the side topics' records (`market.*`, `chain.events`): one JSON object with a
`type`, a `version` and a `payload`, written with sorted keys.

Both topics check a record the same way (JSON, an object, a known type, a version this
code can read, a valid payload) and name the first thing wrong; only the error class,
which says whose topic it was, differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

P = TypeVar("P", bound=BaseModel)


def read_record(
    value: bytes | None,
    types: Mapping[str, type[P]],
    undecodable: type[ValueError],
    kind: str,
) -> tuple[dict[str, Any], P]:
    """The record's JSON object and its validated payload; every failure is `undecodable`."""
    if not value:
        raise undecodable("empty record value")
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise undecodable(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise undecodable("not a JSON object")
    model = types.get(raw.get("type"))  # type: ignore[arg-type]
    if model is None:
        raise undecodable(f"unknown {kind} record type {raw.get('type')!r}")
    name, readable = getattr(model, "TYPE"), getattr(model, "VERSION")  # noqa: B009
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > readable:
        raise undecodable(f"unreadable {name} version {version!r}")
    try:
        return raw, model.model_validate(raw.get("payload"))
    except ValidationError as exc:
        raise undecodable(f"{name} invalid: {first_error(exc)}") from None


def first_error(exc: ValidationError) -> str:
    """`field.path: message` of a validation error's first problem."""
    error = exc.errors()[0]
    return ".".join(str(part) for part in error["loc"]) + f": {error['msg']}"
