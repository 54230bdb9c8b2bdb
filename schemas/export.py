"""Writes the JSON Schema of every event to `schemas/json/`, the contract for non-Python readers.

`python -m schemas.export` regenerates it; a test fails when the committed files and
the models drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.envelope import Envelope
from schemas.events import EVENT_TYPES

JSON_DIR = Path(__file__).parent / "json"


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, for the envelope and each event version."""
    schemas: dict[str, dict[str, Any]] = {
        "Envelope.json": Envelope.model_json_schema(mode="serialization")
    }
    for name, model in EVENT_TYPES.items():
        schemas[f"{name}.v{model.VERSION}.json"] = model.model_json_schema(mode="serialization")
    return schemas


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    JSON_DIR.mkdir(exist_ok=True)
    for stale in JSON_DIR.glob("*.json"):
        stale.unlink()
    for file_name, schema in json_schemas().items():
        (JSON_DIR / file_name).write_text(render(schema))
    print(f"wrote {len(json_schemas())} schemas to {JSON_DIR}")


if __name__ == "__main__":
    main()
