"""Turns a payload written by an older version of an event into the current one.

An upcaster is registered for each (type, version it reads); they chain, so a
v1 payload passes through v1->v2, v2->v3, ... until it is current. The log
itself is never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas.events import EVENT_TYPES

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]

UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function that lifts `event_type` from `from_version` to the next version."""

    def register(function: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, from_version)] = function
        return function

    return register


def upcast(event_type: str, version: int, payload: Payload) -> Payload:
    """Apply the registered upcasters until the payload is at the current version."""
    current = EVENT_TYPES[event_type].VERSION
    while version < current:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise KeyError(f"no upcaster for {event_type} v{version}")
        payload = step(payload)
        version += 1
    return payload


@upcaster("TransactionSubmitted", 1)
def _submitted_v1_to_v2(payload: Payload) -> Payload:
    """v1 had only the signature: a simulated-chain transaction, with no bytes to re-send."""
    return {**payload, "transaction": None, "blockhash": None, "last_valid_block_height": None}


@upcaster("OrderSubmitted", 1)
def _order_submitted_v1_to_v2(payload: Payload) -> Payload:
    """v1 knew market orders only: that is what an old submission was."""
    return {**payload, "order_type": "market"}


@upcaster("OrderSubmitted", 2)
def _order_submitted_v2_to_v3(payload: Payload) -> Payload:
    """v2 had no sniper fields and one lane: the defaults say exactly that."""
    return dict(payload)


@upcaster("OrderTriggered", 1)
def _order_triggered_v1_to_v2(payload: Payload) -> Payload:
    """v1 triggers were price crossings: no launch."""
    return dict(payload)


@upcaster("OrderTriggered", 2)
def _order_triggered_v2_to_v3(payload: Payload) -> Payload:
    """v2 launches had no rank: such a sniper is sent without a priority fee (arrival order)."""
    return dict(payload)
