"""A small runner for Postman v2.1 collections: each request in order, variables substituted.

Enough of Postman for our collections, with no Node and no network beyond the API:
`{{var}}` substitution in URLs, headers and raw bodies; a collection-level bearer
token (sent only when it is set); `pm.collectionVariables.set("x", pm.response.json().x)`
captures; and the expected status read from `pm.response.to.have.status(N)` or
`pm.expect(pm.response.code).to.be.oneOf([...])` in a request's test script.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

_VARIABLE = re.compile(r"\{\{(\w+)\}\}")
_STATUS = re.compile(r"to\.have\.status\((\d{3})\)")
_ONE_OF = re.compile(r"oneOf\(\[([\d,\s]+)\]\)")
_CAPTURE = re.compile(r"collectionVariables\.set\(\"(\w+)\",\s*pm\.response\.json\(\)\.(\w+)\)")


@dataclass(frozen=True)
class Exchange:
    """One request of the collection and what the API answered."""

    name: str
    method: str
    url: str
    status: int
    expected: frozenset[int] | None  # from the request's test script, if it says
    body: Any


def substitute(text: str, variables: dict[str, str]) -> str:
    """Replace each {{name}} whose variable is known; leave the others as they are."""
    return _VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


def _script(item: dict[str, Any]) -> str:
    return "\n".join(
        line
        for event in item.get("event", [])
        if event.get("listen") == "test"
        for line in event.get("script", {}).get("exec", [])
    )


def expected_statuses(item: dict[str, Any]) -> frozenset[int] | None:
    script = _script(item)
    found = {int(code) for code in _STATUS.findall(script)}
    for listed in _ONE_OF.findall(script):
        found |= {int(code) for code in listed.replace(" ", "").split(",") if code}
    return frozenset(found) or None


def load(path: Path) -> dict[str, Any]:
    collection: dict[str, Any] = json.loads(path.read_text())
    return collection


def requests_of(collection: dict[str, Any]) -> list[dict[str, Any]]:
    """The collection's requests in order, folders flattened."""
    found: list[dict[str, Any]] = []
    for item in collection.get("item", []):
        if "item" in item:
            found.extend(requests_of(item))
        else:
            found.append(item)
    return found


def _url(request: dict[str, Any]) -> str:
    url = request["url"]
    return str(url["raw"] if isinstance(url, dict) else url)


def _bearer(auth: dict[str, Any] | None, variables: dict[str, str]) -> str | None:
    if not auth or auth.get("type") != "bearer":
        return None
    token = next((e.get("value") for e in auth.get("bearer", []) if e.get("key") == "token"), "")
    value = substitute(str(token or ""), variables)
    return value if value and not _VARIABLE.search(value) else None


def run(
    collection: dict[str, Any], variables: dict[str, str], client: httpx.Client
) -> list[Exchange]:
    """Send every request in order; captures update `variables` as Postman's scripts would."""
    values = {v["key"]: str(v.get("value", "")) for v in collection.get("variable", [])}
    values.update(variables)
    exchanges = []
    for item in requests_of(collection):
        request = item["request"]
        method = request.get("method", "GET")
        url = substitute(_url(request), values)
        headers = {
            h["key"]: substitute(h["value"], values)
            for h in request.get("header", [])
            if not h.get("disabled")
        }
        token = _bearer(request.get("auth") or collection.get("auth"), values)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = request.get("body", {})
        content = substitute(body["raw"], values).encode() if body.get("mode") == "raw" else None
        response = client.request(method, url, headers=headers, content=content)
        try:
            answer: Any = response.json()
        except ValueError:
            answer = response.text
        for variable, field in _CAPTURE.findall(_script(item)):
            if isinstance(answer, dict) and field in answer:
                values[variable] = str(answer[field])
        # The original collection has no scripts: its orderId comes from the created order.
        if isinstance(answer, dict) and "orderId" in answer and not values.get("orderId"):
            values["orderId"] = str(answer["orderId"])
        exchanges.append(
            Exchange(
                item["name"], method, url, response.status_code, expected_statuses(item), answer
            )
        )
    variables.update(values)
    return exchanges
