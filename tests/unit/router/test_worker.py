"""The router's partition bookkeeping: catch-up, live records, dead letters, backpressure.

`run_order` is a fake that records which orders it ran and can be held on a gate, so
every test sees exactly when the router starts (and stops) an order's work.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter
from collections.abc import Callable
from decimal import Decimal

import pytest

from schemas import events
from schemas.codec import encode
from schemas.envelope import Envelope, genesis_hash
from schemas.events import FailureCode, OrderStatus
from services.domain.order import OrderState
from services.router import worker
from services.router.worker import OrderRouter

WAIT = 2.0  # seconds; generous, since every wait here ends in milliseconds when correct


class FakeRunner:
    """Records each run; with `block`, a run waits until its order is released."""

    def __init__(self, *, block: bool = False) -> None:
        self.block = block
        self.started: list[uuid.UUID] = []
        self.finished: list[uuid.UUID] = []
        self.cancelled: list[uuid.UUID] = []
        self.failing: set[uuid.UUID] = set()
        self._gates: dict[uuid.UUID, asyncio.Event] = {}

    def gate(self, order_id: uuid.UUID) -> asyncio.Event:
        return self._gates.setdefault(order_id, asyncio.Event())

    def release(self, order_id: uuid.UUID) -> None:
        self.gate(order_id).set()

    async def __call__(self, state: OrderState) -> OrderState:
        self.started.append(state.order_id)
        try:
            if self.block:
                await self.gate(state.order_id).wait()
        except asyncio.CancelledError:
            self.cancelled.append(state.order_id)
            raise
        if state.order_id in self.failing:
            raise RuntimeError("unexpected bug while running the order")
        self.finished.append(state.order_id)
        # The run appends routed, built, submitted and completed: four more events.
        return dataclasses.replace(state, status=OrderStatus.COMPLETED, sequence=state.sequence + 4)


class DeadLetters:
    def __init__(self) -> None:
        self.letters: list[tuple[int, int, bytes | None, bytes | None, str]] = []

    async def __call__(
        self, partition: int, offset: int, key: bytes | None, value: bytes | None, reason: str
    ) -> None:
        self.letters.append((partition, offset, key, value, reason))

    @property
    def where(self) -> list[tuple[int, int]]:
        return [(p, o) for p, o, *_ in self.letters]


def key(order_id: uuid.UUID) -> bytes:
    return str(order_id).encode()


def record(order_id: uuid.UUID, sequence: int, payload: events.OrderEvent | None = None) -> bytes:
    """An order event as bytes on the log; a submission unless told otherwise."""
    if payload is None:
        payload = events.OrderSubmitted(
            token_in="SOL", token_out="USDC", amount=Decimal("0.5"), slippage=Decimal("0.01")
        )
    return encode(
        Envelope.new(
            order_id=order_id,
            sequence=sequence,
            producer="test",
            prev_hash=genesis_hash(order_id),  # the router does not check the chain of hashes
            payload=payload,
        )
    )


def routed_event() -> events.OrderRouted:
    plan = events.RoutePlan(
        kind="single", legs=(), amount_out=Decimal(75), min_amount_out=Decimal(74),
        price_impact=Decimal(0), split_improvement_bps=Decimal(0), market_slot=1, quoted_at=0.0,
    )  # fmt: skip
    return events.OrderRouted(attempt=1, quotes=(), plan=plan, reason="best single venue")


FAILED = events.OrderFailed(code=FailureCode.NO_ROUTE, error="no pool", retryable=False, attempts=1)


def make_router(
    runner: FakeRunner, sink: DeadLetters | None = None, max_in_flight: int = 10
) -> OrderRouter:
    return OrderRouter(runner, sink or DeadLetters(), max_in_flight)


async def until(condition: Callable[[], object]) -> None:
    """Poll for a condition the router exposes no event for, failing after WAIT seconds."""
    for _ in range(int(WAIT / 0.001)):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached in time")


async def settle(router: OrderRouter) -> None:
    """Wait until no order is running."""
    await until(lambda: router.in_flight == 0)


async def live(
    router: OrderRouter, partition: int, offset: int, order_id: uuid.UUID, value: bytes
) -> None:
    await router.on_live_record(partition, offset, key(order_id), value)


async def test_catch_up_runs_nothing_then_resumes_exactly_the_unfinished_orders() -> None:
    runner = FakeRunner()
    router = make_router(runner)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    log = [
        (a, record(a, 1)),
        (b, record(b, 1)),
        (a, record(a, 2, routed_event())),
        (b, record(b, 2, FAILED)),  # b is finished: it must never run
        (c, record(c, 1)),
    ]
    router.begin_catch_up(0, 0, len(log))
    for offset, (order_id, value) in enumerate(log):
        await router.fold(0, offset, key(order_id), value)
    await asyncio.sleep(0.01)
    assert runner.started == []
    assert router.in_flight == 0

    await router.finish_catch_up(0)
    await settle(router)

    assert Counter(runner.started) == Counter({a: 1, c: 1})
    assert set(runner.finished) == {a, c}
    assert router.resume_offsets() == {0: len(log)}


async def test_resumed_orders_start_from_their_folded_state() -> None:
    seen: list[OrderState] = []

    async def run(state: OrderState) -> OrderState:
        seen.append(state)
        return dataclasses.replace(state, status=OrderStatus.COMPLETED, sequence=5)

    router = OrderRouter(run, DeadLetters(), 4)
    a = uuid.uuid4()
    router.begin_catch_up(0, 0, 2)
    await router.fold(0, 0, key(a), record(a, 1))
    await router.fold(0, 1, key(a), record(a, 2, routed_event()))
    await router.finish_catch_up(0)
    await settle(router)

    assert [(s.order_id, s.status, s.sequence) for s in seen] == [(a, OrderStatus.ROUTING, 2)]


async def test_live_submission_starts_one_run() -> None:
    runner = FakeRunner()
    router = make_router(runner)
    router.begin_catch_up(0, 7, 7)
    await router.finish_catch_up(0)
    a = uuid.uuid4()

    await live(router, 0, 7, a, record(a, 1))
    await settle(router)

    assert runner.started == [a]
    assert router.resume_offsets() == {0: 8}


async def test_duplicate_submission_records_start_one_run() -> None:
    runner = FakeRunner(block=True)
    router = make_router(runner)
    router.begin_catch_up(0, 0, 0)
    await router.finish_catch_up(0)
    a = uuid.uuid4()

    await live(router, 0, 0, a, record(a, 1))
    await live(router, 0, 1, a, record(a, 1))  # the producer's retry wrote it twice
    await until(lambda: runner.started)
    runner.release(a)
    await settle(router)
    await live(router, 0, 2, a, record(a, 1))  # and once more after it finished

    await settle(router)
    assert runner.started == [a]


async def test_own_events_coming_back_are_neither_run_nor_dead_lettered() -> None:
    runner = FakeRunner(block=True)
    sink = DeadLetters()
    router = make_router(runner, sink)
    router.begin_catch_up(0, 0, 0)
    await router.finish_catch_up(0)
    a = uuid.uuid4()

    await live(router, 0, 0, a, record(a, 1))
    await live(router, 0, 1, a, record(a, 2, routed_event()))  # while it runs
    runner.release(a)
    await settle(router)
    await live(router, 0, 2, a, record(a, 5, FAILED))  # its final event, after the run ended

    assert runner.started == [a]
    assert sink.letters == []


async def test_live_records_below_the_catch_up_end_are_ignored() -> None:
    runner = FakeRunner()
    sink = DeadLetters()
    router = make_router(runner, sink)
    router.begin_catch_up(0, 0, 3)
    a = uuid.uuid4()
    await router.fold(0, 0, key(a), record(a, 1))
    await router.fold(0, 1, key(a), record(a, 2, FAILED))
    await router.finish_catch_up(0)
    b = uuid.uuid4()

    # Fetched again across a rebalance: the catch-up already read these offsets.
    await live(router, 0, 1, a, record(a, 2, FAILED))
    await live(router, 0, 2, b, record(b, 1))
    await live(router, 0, 2, b, b"poison the catch-up already handled")
    await settle(router)

    assert runner.started == []
    assert sink.letters == []
    assert router.resume_offsets() == {0: 3}


async def test_records_of_partitions_not_owned_are_ignored() -> None:
    runner = FakeRunner()
    router = make_router(runner)
    a = uuid.uuid4()

    await live(router, 5, 0, a, record(a, 1))

    assert runner.started == []
    assert router.resume_offsets() == {}


async def test_poison_and_out_of_sequence_records_go_to_the_dead_letter_sink() -> None:
    runner = FakeRunner()
    sink = DeadLetters()
    router = make_router(runner, sink)
    router.begin_catch_up(0, 0, 0)
    await router.finish_catch_up(0)
    a, b, c, d = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    finished = uuid.uuid4()

    await live(router, 0, 0, a, b"\x00not json at all")
    await live(router, 0, 1, a, b"")
    await router.on_live_record(0, 2, None, None)
    await live(router, 0, 3, b, record(b, 3, routed_event()))  # no submission before it
    await live(router, 0, 4, c, record(c, 2, routed_event()))  # first event not a submission
    await live(router, 0, 5, finished, record(finished, 1))
    await settle(router)
    await live(router, 0, 6, finished, record(finished, 6, routed_event()))  # after its final event
    await live(router, 0, 7, d, record(d, 1))  # later records still flow
    await settle(router)

    assert sink.where == [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (0, 6)]
    reasons = [letter[4] for letter in sink.letters]
    assert "not JSON" in reasons[0]
    assert reasons[1] == reasons[2] == "empty record value"
    assert "got sequence 3, expected 1" in reasons[3]
    assert "got sequence 2, expected 1" in reasons[4]
    assert reasons[5] == "event after the order's final event"
    assert sink.letters[0][2:4] == (key(a), b"\x00not json at all")  # the record as it was
    assert runner.started == [finished, d]
    assert router.resume_offsets() == {0: 8}


async def test_a_gap_in_a_known_order_is_dead_lettered_during_catch_up_too() -> None:
    runner = FakeRunner()
    sink = DeadLetters()
    router = make_router(runner, sink)
    a = uuid.uuid4()
    router.begin_catch_up(0, 0, 3)
    await router.fold(0, 0, key(a), record(a, 1))
    await router.fold(0, 1, key(a), record(a, 3, routed_event()))  # sequence 2 is missing
    await router.fold(0, 2, key(a), b"{}")
    await router.finish_catch_up(0)
    await settle(router)

    assert sink.where == [(0, 1), (0, 2)]
    assert "got sequence 3, expected 2" in sink.letters[0][4]
    assert "unknown event type" in sink.letters[1][4]
    assert runner.started == [a]  # the order itself still resumes from what it knows


async def test_resume_offset_is_the_oldest_unfinished_submission() -> None:
    runner = FakeRunner(block=True)
    router = make_router(runner)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    router.begin_catch_up(0, 10, 15)
    router.begin_catch_up(1, 5, 7)
    router.begin_catch_up(2, 20, 20)
    for offset, (order_id, value) in enumerate(
        [
            (a, record(a, 1)),
            (b, record(b, 1)),
            (a, record(a, 2, FAILED)),
            (c, record(c, 1)),
            (b, record(b, 2, FAILED)),
        ],
        start=10,
    ):
        await router.fold(0, offset, key(order_id), value)
    d = uuid.uuid4()
    await router.fold(1, 5, key(d), record(d, 1))
    await router.fold(1, 6, key(d), record(d, 2, FAILED))

    # Before going live, a partition's resume point is what has been folded so far.
    assert router.resume_offsets() == {0: 13, 1: 7, 2: 20}
    for partition in (0, 1, 2):
        await router.finish_catch_up(partition)
    assert router.resume_offsets() == {0: 13, 1: 7, 2: 20}  # c is still running

    e = uuid.uuid4()
    await live(router, 2, 20, e, record(e, 1))
    await live(router, 2, 21, e, record(e, 2, routed_event()))
    assert router.resume_offsets() == {0: 13, 1: 7, 2: 20}

    runner.release(c)
    runner.release(e)
    await settle(router)
    assert router.resume_offsets() == {0: 15, 1: 7, 2: 22}


async def test_an_order_whose_run_crashes_stays_unfinished() -> None:
    runner = FakeRunner()
    a, b = uuid.uuid4(), uuid.uuid4()
    runner.failing.add(a)
    router = make_router(runner, max_in_flight=1)
    router.begin_catch_up(0, 0, 0)
    await router.finish_catch_up(0)

    await live(router, 0, 0, a, record(a, 1))
    await settle(router)
    await live(router, 0, 1, b, record(b, 1))  # the crashed run gave its slot back
    await settle(router)

    assert runner.started == [a, b]
    assert runner.finished == [b]
    assert router.resume_offsets() == {0: 0}  # a successor resumes a


async def test_max_in_flight_bounds_concurrent_runs() -> None:
    runner = FakeRunner(block=True)
    router = make_router(runner, max_in_flight=2)
    router.begin_catch_up(0, 0, 0)
    await router.finish_catch_up(0)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await live(router, 0, 0, a, record(a, 1))
    await live(router, 0, 1, b, record(b, 1))

    third = asyncio.create_task(live(router, 0, 2, c, record(c, 1)))
    await asyncio.sleep(0.02)
    assert not third.done()  # backpressure: the consumer stops reading
    assert runner.started == [a, b]
    assert router.in_flight == 2

    runner.release(b)
    async with asyncio.timeout(WAIT):
        await third
    await until(lambda: len(runner.started) == 3)
    assert runner.started == [a, b, c]
    assert router.in_flight == 2

    runner.release(a)
    runner.release(c)
    await settle(router)
    assert set(runner.finished) == {a, b, c}


async def test_catch_up_resumption_is_bounded_too() -> None:
    runner = FakeRunner(block=True)
    router = make_router(runner, max_in_flight=1)
    a, b = uuid.uuid4(), uuid.uuid4()
    router.begin_catch_up(0, 0, 2)
    await router.fold(0, 0, key(a), record(a, 1))
    await router.fold(0, 1, key(b), record(b, 1))

    finishing = asyncio.create_task(router.finish_catch_up(0))
    await until(lambda: runner.started)
    await asyncio.sleep(0.02)
    assert not finishing.done()
    assert len(runner.started) == 1

    runner.release(a)
    runner.release(b)
    async with asyncio.timeout(WAIT):
        await finishing
    await settle(router)
    assert Counter(runner.started) == Counter({a: 1, b: 1})


async def test_revoke_cancels_the_partitions_running_orders_only() -> None:
    runner = FakeRunner(block=True)
    router = make_router(runner, max_in_flight=2)
    for partition in (0, 1):
        router.begin_catch_up(partition, 0, 0)
        await router.finish_catch_up(partition)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await live(router, 0, 0, a, record(a, 1))
    await live(router, 1, 0, b, record(b, 1))
    await until(lambda: len(runner.started) == 2)

    await router.revoke(0)

    assert runner.cancelled == [a]
    assert router.in_flight == 1
    assert router.resume_offsets() == {1: 0}
    await live(router, 0, 1, a, record(a, 2, routed_event()))  # no longer ours
    # The cancelled run gave its slot back: partition 1 can start another at once.
    async with asyncio.timeout(WAIT):
        await live(router, 1, 1, c, record(c, 1))
    await until(lambda: len(runner.started) == 3)
    assert runner.started == [a, b, c]
    runner.release(b)
    runner.release(c)
    await settle(router)
    assert set(runner.finished) == {b, c}
    assert runner.cancelled == [a]


async def test_revoke_releases_a_live_record_waiting_for_catch_up() -> None:
    runner = FakeRunner()
    router = make_router(runner)
    router.begin_catch_up(0, 0, 5)
    a = uuid.uuid4()

    waiting = asyncio.create_task(live(router, 0, 5, a, record(a, 1)))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # live records wait until the catch-up is complete

    await router.revoke(0)
    async with asyncio.timeout(WAIT):
        await waiting
    assert runner.started == []


async def test_revoking_a_partition_without_work_leaves_the_others_running() -> None:
    runner = FakeRunner(block=True)
    router = make_router(runner)
    router.begin_catch_up(0, 4, 4)
    await router.finish_catch_up(0)
    router.begin_catch_up(3, 0, 0)
    a = uuid.uuid4()
    await live(router, 0, 4, a, record(a, 1))
    await until(lambda: runner.started)

    await router.revoke(3)
    await router.revoke(9)  # never ours

    assert router.resume_offsets() == {0: 4}
    assert router.in_flight == 1
    assert runner.cancelled == []
    runner.release(a)
    await settle(router)
    assert runner.finished == [a]


async def test_a_live_record_arriving_before_the_catch_up_starts_is_not_lost() -> None:
    # Assignment reserves the partition at once; the catch-up learns its bounds later.
    runner = FakeRunner()
    router = make_router(runner)
    router.reserve(0)
    a = uuid.uuid4()
    waiting = asyncio.create_task(live(router, 0, 7, a, record(a, 1)))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # held until the partition has caught up, not dropped

    router.begin_catch_up(0, 7, 7)
    await router.finish_catch_up(0)
    await waiting
    await settle(router)

    assert runner.started == [a]


async def test_finished_orders_are_remembered_up_to_one_bound_shared_by_the_partitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker, "FINISHED_MEMORY", 4)  # two partitions: two orders each
    runner = FakeRunner()
    router = make_router(runner)
    for partition in (0, 1):
        router.begin_catch_up(partition, 0, 0)
        await router.finish_catch_up(partition)
    oldest, older, newest = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for offset, order_id in enumerate((oldest, older, newest)):
        await live(router, 0, offset, order_id, record(order_id, 1))
        await settle(router)

    for offset, order_id in enumerate((older, newest, oldest), start=3):  # late duplicates
        await live(router, 0, offset, order_id, record(order_id, 1))
        await settle(router)

    # The two newest are still known and dropped; the oldest was forgotten and runs again
    # (the chain would answer it with its first receipt).
    assert runner.started == [oldest, older, newest, oldest]


async def test_a_stale_catch_up_neither_revives_nor_resumes_a_revoked_partition() -> None:
    """Revoked (and assigned again) while its catch-up still ran: the old catch-up must not
    fold into the new assignment, resume its orders, or bring the partition back to life,
    or two routers would execute the same order (seen when routers scaled 1 -> 3 -> 1)."""
    runner = FakeRunner(block=True)
    router = make_router(runner)
    a = uuid.uuid4()
    first = router.reserve(0)
    await router.revoke(0)
    assert not router.begin_catch_up(0, 0, 1, first)
    await router.fold(0, 0, key(a), record(a, 1), first)
    await router.finish_catch_up(0, first)
    assert router.resume_offsets() == {}  # not revived by the stale catch-up
    assert runner.started == []

    second = router.reserve(0)
    assert not router.begin_catch_up(0, 0, 1, first)  # the old one is still stale
    await router.fold(0, 0, key(a), record(a, 1), first)
    await router.finish_catch_up(0, first)
    assert runner.started == []  # nothing resumed from the stale catch-up
    assert router.begin_catch_up(0, 0, 1, second)
    await router.fold(0, 0, key(a), record(a, 1), second)
    await router.finish_catch_up(0, second)
    await until(lambda: runner.started == [a])  # the live assignment resumes it, once
    runner.release(a)
    await settle(router)


async def test_the_end_of_an_order_finished_before_the_resume_position_is_no_dead_letter() -> None:
    runner, letters = FakeRunner(), DeadLetters()
    router = make_router(runner, letters)
    a = uuid.uuid4()
    router.begin_catch_up(0, 5, 6)  # the order's submission lies before offset 5
    await router.fold(0, 5, key(a), record(a, 2, FAILED))
    await router.finish_catch_up(0)
    assert letters.letters == []
    assert runner.started == []
    await live(router, 0, 6, a, record(a, 3, routed_event()))  # after its end: poison
    assert [reason for *_, reason in letters.letters] == ["event after the order's final event"]


async def test_a_successor_reads_the_tail_of_an_order_finished_before_its_resume_position() -> None:
    """Bug 6: an order's run ends (its final event durable) before the router has read its
    own events back, so the resume position moves past the order's submission while its
    later events still lie after it. A successor catching up from there sees those events
    without the submission: valid records of a finished order, not dead letters."""
    runner, letters = FakeRunner(block=True), DeadLetters()
    first = make_router(runner, letters)
    first.begin_catch_up(0, 0, 0)
    await first.finish_catch_up(0)
    finished, running = uuid.uuid4(), uuid.uuid4()
    log = [
        (finished, record(finished, 1)),
        (running, record(running, 1)),
        (finished, record(finished, 2, routed_event())),
        (finished, record(finished, 3, routed_event())),
        (finished, record(finished, 4, routed_event())),
        (finished, record(finished, 5, FAILED)),
    ]
    for offset, (order_id, value) in enumerate(log[:2]):
        await live(first, 0, offset, order_id, value)
    await until(lambda: runner.started == [finished, running])
    runner.release(finished)  # its events 2-5 are on the log, not yet read back
    await until(lambda: first.in_flight == 1)
    resume = first.resume_offsets()[0]
    assert resume == 1  # the running order's submission: past the finished one's
    await first.revoke(0)

    successor_runner = FakeRunner(block=True)
    successor = make_router(successor_runner, letters)
    assignment = successor.reserve(0)
    assert successor.begin_catch_up(0, resume, len(log), assignment)
    for offset in range(resume, len(log)):
        order_id, value = log[offset]
        await successor.fold(0, offset, key(order_id), value, assignment)
    await successor.finish_catch_up(0, assignment)

    assert letters.letters == []
    await until(lambda: successor_runner.started == [running])  # and nothing else, once
    assert successor.resume_offsets() == {0: 1}
    await live(successor, 0, 6, finished, record(finished, 6, routed_event()))
    assert [reason for *_, reason in letters.letters] == ["event after the order's final event"]
    successor_runner.release(running)
    await settle(successor)
    assert successor_runner.started == [running]


async def test_an_unknown_orders_events_without_an_end_in_the_catch_up_are_dead_lettered() -> None:
    """Only a tail that ends within the catch-up is an order finished before the resume
    position; events of an unknown order that never ends there cannot be read."""
    runner, letters = FakeRunner(), DeadLetters()
    router = make_router(runner, letters)
    lost, ended = uuid.uuid4(), uuid.uuid4()
    router.begin_catch_up(0, 10, 14)
    await router.fold(0, 10, key(lost), record(lost, 2, routed_event()))
    await router.fold(0, 11, key(ended), record(ended, 3, routed_event()))
    await router.fold(0, 12, key(lost), record(lost, 3, routed_event()))
    await router.fold(0, 13, key(ended), record(ended, 4, FAILED))
    await router.finish_catch_up(0)

    assert letters.where == [(0, 10), (0, 12)]
    assert "got sequence 2, expected 1" in letters.letters[0][4]
    assert "got sequence 3, expected 1" in letters.letters[1][4]
    assert runner.started == []
    assert router.resume_offsets() == {0: 14}


async def test_a_high_priority_order_starts_ahead_of_waiting_market_orders() -> None:
    runner = FakeRunner(block=True)
    router = make_router(runner, max_in_flight=1)
    for partition in (0, 1, 2):
        router.begin_catch_up(partition, 0, 0)
        await router.finish_catch_up(partition)
    busy, waiting, urgent = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await live(router, 0, 0, busy, record(busy, 1))
    market = asyncio.create_task(live(router, 1, 0, waiting, record(waiting, 1)))
    await asyncio.sleep(0.01)
    assert not market.done()  # a market order waits for the slot in the reading path
    high = events.OrderSubmitted(
        token_in="SOL", token_out="USDC", amount=Decimal(1), slippage=Decimal("0.01"),
        priority="high",
    )  # fmt: skip
    async with asyncio.timeout(WAIT):
        await live(router, 2, 0, urgent, record(urgent, 1, high))  # not held by the backlog
    runner.release(busy)
    await until(lambda: len(runner.started) == 2)
    assert runner.started == [busy, urgent]  # the freed slot went to the high lane
    runner.release(urgent)
    await until(lambda: len(runner.started) == 3)
    assert runner.started[-1] == waiting
    runner.release(waiting)
    await settle(router)
    async with asyncio.timeout(WAIT):
        await market


async def test_live_records_that_skip_offsets_bring_the_missed_ones_from_the_log() -> None:
    """faust's delivery can drop records across a rebalance; the log has no gaps, so the
    router reads the skipped offsets itself: an order among them runs, and the resume
    position stays below it until it ends."""
    runner = FakeRunner(block=True)
    missed, seen = uuid.uuid4(), uuid.uuid4()
    log = {5: (key(missed), record(missed, 1)), 6: (key(seen), record(seen, 1))}
    asked: list[tuple[int, int, int]] = []

    async def read_range(
        partition: int, start: int, end: int
    ) -> list[tuple[int, bytes | None, bytes | None]]:
        asked.append((partition, start, end))
        return [(o, *log[o]) for o in range(start, end)]

    router = OrderRouter(runner, DeadLetters(), 10, read_range=read_range)
    router.begin_catch_up(0, 5, 5)
    await router.finish_catch_up(0)
    await live(router, 0, 6, seen, log[6][1])  # offset 5 never came live

    assert asked == [(0, 5, 6)]
    await until(lambda: set(runner.started) == {missed, seen})
    assert router.resume_offsets() == {0: 5}
    runner.release(missed)
    runner.release(seen)
    await settle(router)
    assert router.resume_offsets() == {0: 7}


async def test_contiguous_live_records_read_nothing_more() -> None:
    runner = FakeRunner()
    order = uuid.uuid4()

    async def read_range(
        partition: int, start: int, end: int
    ) -> list[tuple[int, bytes | None, bytes | None]]:
        raise AssertionError(f"read {partition} [{start}, {end}) with no gap")

    router = OrderRouter(runner, DeadLetters(), 10, read_range=read_range)
    router.begin_catch_up(0, 5, 5)
    await router.finish_catch_up(0)
    await live(router, 0, 5, order, record(order, 1))
    await settle(router)
    assert runner.finished == [order]
