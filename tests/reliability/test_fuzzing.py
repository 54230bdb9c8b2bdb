"""Property-based fuzzing of the running API from its own OpenAPI document (schemathesis).

Valid and invalid requests for every operation, generated from the spec the API
serves, against a real API process on loopback: never a 5xx, and every answer
is one the spec declares.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.system import System

EXAMPLES_PER_OPERATION = 50
CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

Findings = dict[str, list[str]]


@dataclass
class Fuzzed:
    server_errors: Findings = field(default_factory=lambda: defaultdict(list))
    nonconforming: Findings = field(default_factory=lambda: defaultdict(list))
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)


def fuzz(base_url: str) -> Fuzzed:
    """Send generated requests to every operation and sort the answers."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    found = Fuzzed()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # an operation the spec describes wrongly: the test says so
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases, label=st.just(label))
        def run(case: Any, label: str) -> None:
            response = case.call(base_url=base_url, timeout=10)
            found.answers[label, response.status_code] += 1
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except AssertionError as exc:
                found.server_errors[label].append(f"{response.status_code}: {str(exc)[:300]}")
            try:
                case.validate_response(response, checks=CONFORMANCE)
            except AssertionError as exc:
                lines = " ".join(str(exc).strip().splitlines()[:3])
                found.nonconforming[label].append(f"{response.status_code}: {lines[:200]}")

        run()
    return found


@pytest.fixture(scope="module")
async def fuzzed(front_end: System) -> Fuzzed:
    return await asyncio.to_thread(fuzz, front_end.base_url)


def test_no_fuzzed_request_gets_a_server_error(fuzzed: Fuzzed) -> None:
    operations = {label for label, _ in fuzzed.answers}
    assert len(operations) >= 5, fuzzed.answers
    # Both sides were exercised: requests the API took and requests it refused.
    statuses = {status for _, status in fuzzed.answers}
    assert {200, 202} & statuses, fuzzed.answers
    assert {400, 404} & statuses, fuzzed.answers
    assert not fuzzed.server_errors, dict(fuzzed.server_errors)


def test_every_fuzzed_answer_conforms_to_the_spec(fuzzed: Fuzzed) -> None:
    assert not fuzzed.nonconforming, dict(fuzzed.nonconforming)
