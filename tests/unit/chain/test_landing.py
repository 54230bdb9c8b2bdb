"""The first open block: the node's block clock, its performance samples, the router's reading of
them (`SlotClock`), and the launch's one sender (`OpenSender`) against a node-like fake that
lands what it receives in the next slot, in arrival order."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any, cast

import pytest

from services.chain.genesis import Genesis
from services.chain.landing import OpenSender, SlotClock, SubmissionKey
from services.chain.node import ChainNode
from services.chain.store import ChainStore


def node_at(slot: int, slot_ms: int) -> ChainNode:
    """A node's clock and samples at `slot` (no store: these read memory only)."""
    node = ChainNode(cast(ChainStore, None), Genesis(), slot_ms=slot_ms)
    node.slot = slot
    return node


@pytest.mark.parametrize("slot_ms", [400, 20, 50, 250, 1500])
@pytest.mark.parametrize("slot", [60, 149, 150, 151, 10_000])
def test_the_first_open_slot_from_the_samples_is_the_nodes(slot: int, slot_ms: int) -> None:
    node = node_at(slot, slot_ms)
    (sample, *_) = node.performance_samples(1)
    clock = SlotClock(node.unix_time(0), Fraction(sample.period_seconds * 1000, sample.num_slots))
    assert clock.slot_ms == slot_ms
    for open_time in range(node.unix_time(0), node.unix_time(400) + 3):
        first = clock.first_slot_at(open_time)
        assert node.unix_time(first) >= open_time
        assert first == 0 or node.unix_time(first - 1) < open_time


def test_samples_cover_whole_seconds_newest_first_and_count_landings() -> None:
    node = node_at(0, 400)
    for slot in (10, 140, 300):
        node._count_landed(slot, 2)
    node.slot = 300
    samples = node.performance_samples(5)
    assert [(s.slot, s.num_slots, s.period_seconds) for s in samples] == [
        (300, 150, 60), (150, 150, 60),
    ]  # fmt: skip
    assert [s.num_transactions for s in samples] == [2, 4]
    young = node_at(12, 400).performance_samples(5)  # younger than a sample: one of 10 slots
    assert [(s.num_slots, s.period_seconds) for s in young] == [(10, 4)]
    assert node_at(3, 400).performance_samples(5) == []  # not yet one whole second of slots


class FakeNode:
    """Slots follow the monotonic clock (100 ms); what arrives while slot s is the last lands in
    s + 1, in arrival order."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.landed: list[tuple[int, str]] = []  # (slot, bytes) in arrival order

    @property
    def slot(self) -> int:
        return int((time.monotonic() - self.started) / 0.1)

    async def call(self, calls: Sequence[tuple[str, list[object]]]) -> list[Any]:
        answers: list[Any] = []
        for method, params in calls:
            if method == "getSlot":
                answers.append(self.slot)
            elif method == "getBlockTime":
                answers.append(1_000 + cast(int, params[0]) // 10)
            elif method == "getRecentPerformanceSamples":
                answers.append([{"numSlots": 600, "samplePeriodSecs": 60}])
            elif method == "sendTransaction":
                assert params[1] == {"encoding": "base64", "skipPreflight": True}
                self.landed.append((self.slot + 1, cast(str, params[0])))
                answers.append("signature")
            else:
                raise AssertionError(method)
        return answers


async def test_the_sender_sends_in_submission_order_for_the_first_open_slot() -> None:
    node = FakeNode()
    opened = asyncio.Event()
    sender = OpenSender(node.call, on_open=opened.set)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    open_time = 1_001  # slot 10 is the first whose clock (1000 + slot / 10) reaches it
    # Queued out of submission order, as concurrent snipers reach their send.
    keys: list[SubmissionKey] = [(start + timedelta(seconds=i), f"order-{i}") for i in range(6)]
    shuffled = [keys[i] for i in (3, 0, 5, 1, 4, 2)]
    await asyncio.gather(
        *(sender.send_at_open("pool", open_time, key, key[1].encode()) for key in shuffled)
    )
    assert {slot for slot, _ in node.landed} == {10}
    assert [wire for _, wire in node.landed] == [
        base64.b64encode(key[1].encode()).decode() for key in keys
    ]
    await asyncio.wait_for(opened.wait(), 5)  # the open block committed: snapshot expired
    assert node.slot >= 10
    assert sender.opened("pool")
    # After the open's batch, a late sniper is not queued: its own path sends it.
    await sender.send_at_open("pool", open_time, (start, "late"), b"late")
    assert len(node.landed) == 6
