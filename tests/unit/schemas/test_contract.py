"""The event contract: committed JSON Schemas, the wire format, and how bad bytes are refused."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas.upcasting
from schemas import codec
from schemas.codec import UndecodableEvent
from schemas.envelope import Envelope, event_id_for, genesis_hash
from schemas.events import (
    EVENT_TYPES,
    OrderEvent,
    OrderSubmitted,
    TransactionBuilt,
    TransactionSubmitted,
)
from schemas.export import JSON_DIR, json_schemas, render
from tests.strategies import (
    LATER_EVENTS,
    envelopes,
    order_completed,
    order_failed,
    order_retrying,
    order_routed,
    order_submitted,
    transaction_built,
    transaction_submitted,
)

FAST = settings(max_examples=60, deadline=None)
ORDER_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
AT = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

PAYLOAD_STRATEGIES: dict[str, st.SearchStrategy[OrderEvent]] = {
    "OrderSubmitted": order_submitted(),
    "OrderRouted": order_routed(),
    "TransactionBuilt": transaction_built(),
    "TransactionSubmitted": transaction_submitted(),
    "OrderRetrying": order_retrying(),
    "OrderCompleted": order_completed(),
    "OrderFailed": order_failed(),
    **{event.TYPE: strategy for event, strategy in LATER_EVENTS.items()},
}


def schema_drift(directory: Path = JSON_DIR) -> list[str]:
    """What differs between the committed schema files and the models, one line per file."""
    expected = {name: render(schema) for name, schema in json_schemas().items()}
    committed = {path.name: path.read_text() for path in directory.glob("*.json")}
    problems = [f"{name} is missing" for name in sorted(expected.keys() - committed.keys())]
    problems += [f"{name} is stale (no model)" for name in sorted(committed.keys() - expected)]
    problems += [
        f"{name} differs from the model"
        for name in sorted(expected.keys() & committed.keys())
        if expected[name] != committed[name]
    ]
    return problems


def submitted(**changes: Any) -> OrderSubmitted:
    fields: dict[str, Any] = {
        "token_in": "SOL",
        "token_out": "USDC",
        "amount": Decimal("10.5"),
        "slippage": Decimal("0.01"),
    }
    fields.update(changes)
    return OrderSubmitted(**fields)


def wrap(payload: OrderEvent, sequence: int = 1) -> Envelope:
    return Envelope.new(
        order_id=ORDER_ID,
        sequence=sequence,
        producer="test",
        prev_hash=genesis_hash(ORDER_ID),
        payload=payload,
        occurred_at=AT,
    )


def wire(**changes: Any) -> dict[str, Any]:
    """A valid OrderSubmitted record as a JSON dict, with top-level fields replaced."""
    raw: dict[str, Any] = orjson.loads(codec.encode(wrap(submitted())))
    raw.update(changes)
    return raw


def with_payload(**changes: Any) -> dict[str, Any]:
    raw = wire()
    raw["payload"] = {**raw["payload"], **changes}
    return raw


def floats_in(value: Any, path: str = "") -> list[str]:
    """Paths of every JSON float in a decoded document."""
    if isinstance(value, float):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in floats_in(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in floats_in(v, f"{path}[{i}]")]
    return []


# --- Committed JSON Schemas -------------------------------------------------------------


def test_committed_json_schemas_match_the_models() -> None:
    drift = schema_drift()
    assert not drift, (
        "schemas/json/ has drifted from the models: "
        + "; ".join(drift)
        + ". Run `make schemas` and commit the result."
    )


def test_the_drift_check_catches_a_new_event_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TransactionBuilt, "VERSION", 2)
    assert schema_drift() == [
        "TransactionBuilt.v2.json is missing",
        "TransactionBuilt.v1.json is stale (no model)",
    ]


def test_the_drift_check_catches_an_edited_file(tmp_path: Path) -> None:
    for name, schema in json_schemas().items():
        (tmp_path / name).write_text(render(schema))
    (tmp_path / "OrderFailed.v1.json").write_text("{}\n")
    (tmp_path / "Old.v1.json").write_text("{}\n")
    assert schema_drift(tmp_path) == [
        "Old.v1.json is stale (no model)",
        "OrderFailed.v1.json differs from the model",
    ]


def test_there_is_one_schema_per_event_type_and_version() -> None:
    assert set(json_schemas()) == {"Envelope.json"} | {
        f"{name}.v{model.VERSION}.json" for name, model in EVENT_TYPES.items()
    }


# --- Round trip and canonical form ------------------------------------------------------


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
@FAST
@given(data=st.data())
def test_every_event_type_round_trips(event_type: str, data: st.DataObject) -> None:
    envelope = data.draw(envelopes(PAYLOAD_STRATEGIES[event_type]))
    decoded = codec.decode(codec.encode(envelope))
    assert decoded == envelope
    assert type(decoded.payload) is EVENT_TYPES[event_type]
    assert decoded.type == event_type
    assert decoded.occurred_at.tzinfo is UTC


def _patterned_values(
    schema: dict[str, Any], value: Any, defs: dict[str, Any]
) -> list[tuple[str, str]]:
    """(pattern, value) for every string value whose exported schema states a pattern."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].split("/")[-1]]
    if "anyOf" in schema:
        return [p for option in schema["anyOf"] for p in _patterned_values(option, value, defs)]
    if isinstance(value, str) and schema.get("type") == "string" and "pattern" in schema:
        return [(schema["pattern"], value)]
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return [
            found
            for key, item in value.items()
            if key in props
            for found in _patterned_values(props[key], item, defs)
        ]
    if isinstance(value, list) and "items" in schema:
        return [found for item in value for found in _patterned_values(schema["items"], item, defs)]
    return []


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
@FAST
@given(data=st.data())
def test_every_money_value_matches_the_bounds_its_exported_schema_states(
    event_type: str, data: st.DataObject
) -> None:
    payload = data.draw(PAYLOAD_STRATEGIES[event_type])
    schema = type(payload).model_json_schema(mode="serialization")
    found = _patterned_values(schema, payload.model_dump(mode="json"), schema.get("$defs", {}))
    assert all(re.search(pattern, value) for pattern, value in found), found


def test_the_exported_money_patterns_refuse_what_the_models_refuse() -> None:
    amount = OrderSubmitted.model_json_schema(mode="serialization")["properties"]["amount"]
    assert amount["description"] == "exact decimal string, > 0"
    assert [bool(re.search(amount["pattern"], v)) for v in ("10", "0.5", "0", "0.00", "-1")] == [
        True,
        True,
        False,
        False,
        False,
    ]


@FAST
@given(envelopes())
def test_encoding_is_canonical(envelope: Envelope) -> None:
    value = codec.encode(envelope)
    assert codec.encode(codec.decode(value)) == value
    assert value == orjson.dumps(orjson.loads(value), option=orjson.OPT_SORT_KEYS)


def test_encoding_sorts_keys_at_every_level() -> None:
    value = codec.encode(wrap(submitted()))
    assert value.startswith(b'{"event_id":')
    assert b'"payload":{"allow_partial":true,"amount":"10.5","auto_sell":null,' in value


# --- Money --------------------------------------------------------------------------------


@FAST
@given(envelopes())
def test_money_is_never_a_float_on_the_wire(envelope: Envelope) -> None:
    document = orjson.loads(codec.encode(envelope))
    # The route's quote timestamp is the one float of the contract, and it is not money.
    assert [p for p in floats_in(document) if p != ".payload.plan.quoted_at"] == []


def test_money_keeps_every_digit_as_a_decimal() -> None:
    amount = Decimal("123456789012.123456789123456789")
    value = codec.encode(wrap(submitted(amount=amount, slippage=Decimal("0.0050"))))
    assert orjson.loads(value)["payload"]["amount"] == "123456789012.123456789123456789"
    payload = codec.decode(value).payload
    assert isinstance(payload, OrderSubmitted)
    assert isinstance(payload.amount, Decimal)
    assert payload.amount == amount
    assert str(payload.slippage) == "0.0050"


def test_a_money_field_written_as_a_json_number_is_not_silently_rounded() -> None:
    value = orjson.dumps(wire()).replace(b'"amount":"10.5"', b'"amount":1234567.1234567891234')
    with pytest.raises(UndecodableEvent, match="must be strings, not JSON numbers"):
        codec.decode(value)


# --- Event ids ----------------------------------------------------------------------------


def test_event_ids_are_determined_by_order_and_sequence() -> None:
    other_order = uuid.UUID("00000000-0000-4000-8000-000000000002")
    first = wrap(submitted(), sequence=3)
    again = Envelope.new(
        order_id=ORDER_ID,
        sequence=3,
        producer="another-process",
        prev_hash="0" * 64,
        payload=submitted(amount=Decimal(99)),
    )
    assert first.event_id == again.event_id == event_id_for(ORDER_ID, 3)
    assert first.event_id.version == 5
    assert len({event_id_for(o, s) for o in (ORDER_ID, other_order) for s in (1, 2, 3)}) == 6


# --- What decode refuses, and why ---------------------------------------------------------

REFUSED: list[tuple[str, bytes, str]] = [
    ("empty", b"", "empty record value"),
    ("not json", b"{not json", "not JSON"),
    ("json array", b'[{"type": "OrderSubmitted"}]', "not a JSON object"),
    ("json string", b'"OrderSubmitted"', "not a JSON object"),
    ("unknown type", orjson.dumps(wire(type="OrderVanished")),
     "unknown event type 'OrderVanished'"),
    ("no type", orjson.dumps(wire(type=None)), "unknown event type None"),
    ("future version", orjson.dumps(wire(version=4)),
     "OrderSubmitted v4 is newer than this reader (v3)"),
    ("version 0", orjson.dumps(wire(version=0)), "invalid version 0 for OrderSubmitted"),
    ("version bool", orjson.dumps(wire(version=True)), "invalid version True for OrderSubmitted"),
    ("version str", orjson.dumps(wire(version="1")), "invalid version '1' for OrderSubmitted"),
    ("missing payload", orjson.dumps({k: v for k, v in wire().items() if k != "payload"}),
     "OrderSubmitted: payload is not an object"),
    ("payload not object", orjson.dumps(wire(payload=[1])),
     "OrderSubmitted: payload is not an object"),
    ("negative amount", orjson.dumps(with_payload(amount="-1")),
     "OrderSubmitted v3 invalid: amount: Input should be greater than 0"),
    ("nan amount", orjson.dumps(with_payload(amount="NaN")), "OrderSubmitted v3 invalid: amount:"),
    ("slippage above 1", orjson.dumps(with_payload(slippage="1.01")),
     "OrderSubmitted v3 invalid: slippage: Input should be less than or equal to 1"),
    ("bad token symbol", orjson.dumps(with_payload(token_in="sol!")),
     "OrderSubmitted v3 invalid: token_in: String should match pattern"),
    ("extra payload field", orjson.dumps(with_payload(side="buy")),
     "OrderSubmitted v3 invalid: side: Extra inputs are not permitted"),
    ("extra envelope field", orjson.dumps(wire(partition=3)),
     "OrderSubmitted v3 invalid: partition: Extra inputs are not permitted"),
    ("naive datetime", orjson.dumps(wire(occurred_at="2025-01-02T03:04:05")),
     "OrderSubmitted v3 invalid: occurred_at: Input should have timezone info"),
    ("sequence 0", orjson.dumps(wire(sequence=0)), "OrderSubmitted v3 invalid: sequence:"),
    ("bad prev_hash", orjson.dumps(wire(prev_hash="xyz")), "OrderSubmitted v3 invalid: prev_hash:"),
    ("two errors", orjson.dumps(with_payload(amount="-1", slippage="2")), "(+1 more)"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "reason"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_decode_refuses_with_a_specific_reason(value: bytes, reason: str) -> None:
    with pytest.raises(UndecodableEvent) as refused:
        codec.decode(value)
    assert reason in str(refused.value)


def test_decode_refuses_none() -> None:
    with pytest.raises(UndecodableEvent, match="empty record value"):
        codec.decode(None)


def test_the_reference_record_used_above_is_itself_valid() -> None:
    assert codec.decode(orjson.dumps(wire())) == wrap(submitted())


# --- Upcasting ----------------------------------------------------------------------------


def test_an_upcaster_chain_lifts_old_payloads_to_the_current_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Pretend TransactionBuilt is at v3: v1 called the guard `minimum_out`, v2 wrote it in
    # base units as `min_out_units` (9 decimals), v3 is today's model.
    monkeypatch.setattr(schemas.upcasting, "UPCASTERS", {})
    monkeypatch.setattr(TransactionBuilt, "VERSION", 3)

    @schemas.upcasting.upcaster("TransactionBuilt", 1)
    def _v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
        fields = dict(payload)
        fields["min_out_units"] = int(Decimal(fields.pop("minimum_out")).scaleb(9))
        return fields

    @schemas.upcasting.upcaster("TransactionBuilt", 2)
    def _v2_to_v3(payload: dict[str, Any]) -> dict[str, Any]:
        fields = dict(payload)
        fields["min_amount_out"] = str(Decimal(fields.pop("min_out_units")).scaleb(-9).normalize())
        return fields

    current = wrap(TransactionBuilt(attempt=2, min_amount_out=Decimal("1.5")), sequence=3)
    base = orjson.loads(codec.encode(current))
    assert base["version"] == 3
    v1 = {**base, "version": 1, "payload": {"attempt": 2, "minimum_out": "1.5"}}
    v2 = {**base, "version": 2, "payload": {"attempt": 2, "min_out_units": 1_500_000_000}}

    for old in (v1, v2):
        decoded = codec.decode(orjson.dumps(old))
        assert decoded == current
        assert decoded.payload == TransactionBuilt(attempt=2, min_amount_out=Decimal("1.5"))
        assert decoded.version == 3
    # Once read, an old event is written back in the current shape only.
    assert codec.encode(codec.decode(orjson.dumps(v1))) == codec.encode(current)


def test_a_missing_upcaster_is_a_specific_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schemas.upcasting, "UPCASTERS", {})
    monkeypatch.setattr(TransactionBuilt, "VERSION", 2)
    old = orjson.loads(codec.encode(wrap(TransactionBuilt(attempt=1, min_amount_out=Decimal(1)))))
    old["version"] = 1
    with pytest.raises(UndecodableEvent, match="no upcaster for TransactionBuilt v1"):
        codec.decode(orjson.dumps(old))


def test_upcasting_state_is_restored_after_the_tests_above() -> None:
    assert TransactionBuilt.VERSION == 1
    assert "VERSION" not in TransactionBuilt.__dict__
    assert ("TransactionBuilt", 1) not in schemas.upcasting.UPCASTERS


def test_a_v1_transaction_submitted_reads_as_v2_without_signed_bytes() -> None:
    """The real upcaster: a v1 event (simulated chain) has no transaction to re-send."""
    signature = "5" * 88
    current = wrap(TransactionSubmitted(attempt=1, tx_hash=signature), sequence=4)
    v1 = orjson.loads(codec.encode(current))
    assert v1["version"] == 2
    v1["version"] = 1
    v1["payload"] = {"attempt": 1, "tx_hash": signature}
    decoded = codec.decode(orjson.dumps(v1))
    assert decoded.version == 2
    assert decoded.payload == TransactionSubmitted(attempt=1, tx_hash=signature)
    assert decoded.payload.transaction is None
    assert decoded.payload.last_valid_block_height is None


def test_a_v1_submission_reads_as_a_market_order() -> None:
    """Records written before conditional orders existed: the upcaster makes them market orders."""
    current = wrap(submitted())
    old = orjson.loads(codec.encode(current))
    old["version"] = 1
    for name in ("order_type", "limit_price", "trigger_price", "take_profit_price",
                 "stop_loss_price", "trailing_bps", "expires_at", "allow_partial"):  # fmt: skip
        old["payload"].pop(name)
    decoded = codec.decode(orjson.dumps(old))
    assert decoded == current
    assert decoded.payload.order_type.value == "market"  # type: ignore[union-attr]
    assert decoded.status.value == "pending"


def test_a_submission_carries_exactly_the_prices_of_its_type() -> None:
    base = {"token_in": "SOL", "token_out": "USDC", "amount": Decimal(1), "slippage": Decimal(0)}
    limit = OrderSubmitted(**base, order_type="limit", limit_price=Decimal(150))
    assert limit.resulting_status().value == "open"
    for wrong in (
        {"order_type": "limit"},  # no price
        {"order_type": "limit", "limit_price": Decimal(1), "trigger_price": Decimal(1)},
        {"order_type": "market", "limit_price": Decimal(1)},
        {"order_type": "oco", "take_profit_price": Decimal(2)},
        {"order_type": "stop", "trigger_price": Decimal(0)},
    ):
        with pytest.raises(ValueError):  # noqa: PT011 - pydantic's ValidationError
            OrderSubmitted(**base, **wrong)
