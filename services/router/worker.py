"""Which orders this router process works on, and when it is safe to start them.

Ownership follows Kafka partitions. When a partition is assigned the router
first *catches up*: it reads the partition from its stored resume position up
to the end the log had at that moment, only folding events, so it learns where
every order stands, including orders a crashed predecessor left half-done.
Then it resumes each unfinished order, and only then handles live records.

The resume position of a partition is the offset of its oldest unfinished
submission (or the next offset when none is unfinished). An order counts as
finished when its run has put its final event on the log, usually before the
router has read its own events back, so later events of an order submitted
before the position can lie after it: a successor's catch-up holds such a
*tail* and drops it once the order's final event shows it ended (it does,
within the catch-up: it was on the log before the position was saved). It is kept in
PostgreSQL by the runtime, not in Kafka's committed offsets: faust commits
offsets on its own schedule, and a committed offset past an unfinished order
would lose it on restart. Nothing relies on Kafka transactions either: every
step is idempotent (deterministic event ids and sequences, one transaction
signature per order), which the kill tests check.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
import structlog

from schemas.codec import UndecodableEvent, decode
from schemas.envelope import record_hash
from schemas.events import OrderType
from services.domain.order import OrderState, OutOfSequence, evolve
from services.router.slots import PrioritySlots

log = logging.getLogger(__name__)

# Finished orders are remembered by their last sequence only, to drop late duplicates:
# this many across all of a router's partitions (about 200 bytes each). A duplicate of an
# order forgotten since (or finished before a restart's resume position) runs again, and
# the chain answers it with the first run's receipt: it cannot trade twice.
FINISHED_MEMORY = 200_000

DeadLetterSink = Callable[[int, int, bytes | None, bytes | None, str], Awaitable[None]]
RunOrder = Callable[[OrderState], Awaitable[OrderState]]
# (partition, start, end) -> the log's records in [start, end): (offset, key, value).
ReadRange = Callable[[int, int, int], Awaitable[list[tuple[int, bytes | None, bytes | None]]]]


@dataclass(eq=False)
class _Partition:
    """What the router knows about one assigned partition."""

    catch_up_until: int  # records below this offset are read by the catch-up, not live
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    next_offset: int = 0
    orders: dict[uuid.UUID, OrderState] = field(default_factory=dict)  # unfinished only
    submitted_at: dict[uuid.UUID, int] = field(default_factory=dict)  # unfinished -> offset
    finished: OrderedDict[uuid.UUID, int] = field(default_factory=OrderedDict)  # -> last sequence
    # Catch-up: events of orders whose submission lies before the resume position, held
    # (with why they cannot be folded) until their final event shows the order had ended.
    tails: dict[uuid.UUID, list[tuple[int, bytes | None, bytes | None, str]]] = field(
        default_factory=dict
    )
    # Records of a running order the run may not know (a trigger of an order whose run just
    # put it back to rest): handled in order once the run has ended.
    deferred: dict[uuid.UUID, list[tuple[int, bytes | None, bytes | None]]] = field(
        default_factory=dict
    )

    @property
    def resume_offset(self) -> int:
        return min(self.submitted_at.values(), default=self.next_offset)


Assignment = _Partition
"""One assignment of a partition to this router; a later assignment is another object."""


def is_high_priority(state: OrderState) -> bool:
    """Snipers always, and orders submitted with `"priority": "high"` (a scoped key's)."""
    return state.priority == "high" or state.order_type is OrderType.SNIPER


class OrderRouter:
    """Tracks the orders of this process's partitions and runs each unfinished one once."""

    def __init__(
        self,
        run_order: RunOrder,
        dead_letter: DeadLetterSink,
        max_in_flight: int,
        read_range: ReadRange | None = None,
    ) -> None:
        self._run_order = run_order
        self._dead_letter = dead_letter
        self._read_range = read_range
        self._slots = PrioritySlots(max_in_flight)
        self._partitions: dict[int, _Partition] = {}
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def resume_offsets(self) -> dict[int, int]:
        """Where a successor must start reading each partition to miss no unfinished order."""
        return {p: part.resume_offset for p, part in self._partitions.items()}

    def reserve(self, partition: int) -> Assignment:
        """Take a partition at once, on assignment: its live records wait until it has caught up.

        Without this, a record arriving while the catch-up is still reading offsets
        would find no partition and be dropped. The returned assignment is what the
        catch-up works on: if the partition is revoked (and perhaps assigned again)
        meanwhile, that catch-up is stale and every call with it does nothing.
        """
        part = _Partition(catch_up_until=sys.maxsize)
        self._partitions[partition] = part
        return part

    def current(self, partition: int, assignment: Assignment | None) -> _Partition | None:
        """The partition's state if `assignment` is still the live one (None: any, for tests)."""
        part = self._partitions.get(partition)
        if assignment is not None and part is not assignment:
            return None
        return part

    def begin_catch_up(
        self, partition: int, start: int, end: int, assignment: Assignment | None = None
    ) -> bool:
        """Records in [start, end) will be folded by `fold`; later ones arrive live.

        False when the assignment is stale: a revoked partition must not come back to
        life here, or this router would resume orders another router now owns.
        """
        if assignment is None:
            part = self._partitions.setdefault(partition, _Partition(catch_up_until=end))
        else:
            found = self.current(partition, assignment)
            if found is None:
                return False
            part = found
        part.catch_up_until = end
        part.next_offset = start
        return True

    async def fold(
        self,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        assignment: Assignment | None = None,
    ) -> None:
        """Catch-up: learn from a record without starting any work."""
        part = self.current(partition, assignment)
        if part is not None:
            await self._handle(part, partition, offset, key, value, live=False)

    async def finish_catch_up(self, partition: int, assignment: Assignment | None = None) -> None:
        """The partition is known up to its end: resume unfinished orders, then go live."""
        part = self.current(partition, assignment)
        if part is None:
            return  # revoked meanwhile: its orders belong to the next owner
        part.next_offset = max(part.next_offset, part.catch_up_until)
        # A tail that did not end within the catch-up is no finished order's: unreadable.
        tails = sorted(
            (record for held in part.tails.values() for record in held), key=lambda r: r[0]
        )
        part.tails.clear()
        for offset, key, value, reason in tails:
            await self._dead_letter(partition, offset, key, value, reason)
        if self.current(partition, assignment) is not part:
            return  # revoked while dead-lettering
        if part.orders:
            log.info("resuming %d unfinished orders of partition %d", len(part.orders), partition)
        for order_id, state in list(part.orders.items()):
            if not state.status.is_resting:  # a resting order waits for its trigger
                await self._start(partition, order_id)
        part.ready.set()

    async def on_live_record(
        self, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> None:
        """Handle one live record of the order log, in partition order."""
        part = self._partitions.get(partition)
        if part is None:
            return  # not ours: fetched across a rebalance
        await part.ready.wait()
        if offset < part.catch_up_until:
            return  # the catch-up read it already (or it precedes every unfinished order)
        if offset > part.next_offset and self._read_range is not None:
            # The log has no gaps (no transactions write it), so live records that skip
            # offsets were lost on the way: faust's fetcher drops a fetched batch when a
            # rebalance suspends its flow, and its seek back can come before the records. Read
            # them here; left out, an order among them would never run, and the next resume
            # position would pass it.
            missed = await self._read_range(partition, part.next_offset, offset)
            log.warning(
                "partition %d: live records %d..%d were not delivered; read %d from the log",
                partition, part.next_offset, offset - 1, len(missed),
            )  # fmt: skip
            for missed_offset, missed_key, missed_value in missed:
                if self._partitions.get(partition) is not part:
                    return  # revoked meanwhile: the next owner reads them
                await self._handle(
                    part, partition, missed_offset, missed_key, missed_value, live=True
                )
            if self._partitions.get(partition) is not part:
                return
        await self._handle(part, partition, offset, key, value, live=True)

    async def revoke(self, partition: int) -> None:
        """Give a partition up: stop its orders' work; the next owner resumes them from the log."""
        part = self._partitions.pop(partition, None)
        if part is None:
            return
        part.ready.set()  # release a live record waiting on a catch-up that will not finish
        tasks = [self._tasks.pop(order_id) for order_id in part.orders if order_id in self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def drain(self, timeout: float) -> None:
        """On shutdown: let in-flight orders finish for up to `timeout`, then cancel the rest."""
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _handle(
        self,
        part: _Partition,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        *,
        live: bool,
    ) -> None:
        part.next_offset = max(part.next_offset, offset + 1)
        if self._nothing_new(part, key, value):
            return
        try:
            envelope = decode(value)
        except UndecodableEvent as exc:
            await self._dead_letter(partition, offset, key, value, str(exc))
            return
        order_id = envelope.order_id
        last_final = part.finished.get(order_id)
        if last_final is not None:
            if envelope.sequence > last_final:
                await self._dead_letter(
                    partition, offset, key, value, "event after the order's final event"
                )
            return
        if order_id in self._tasks and order_id in part.orders:
            # Running here: the run's state is ahead of `part.orders`; look again when it ends.
            part.deferred.setdefault(order_id, []).append((offset, key, value))
            return
        known = part.orders.get(order_id)
        if known is not None and envelope.sequence <= known.sequence:
            return  # a duplicate, or our own event coming back: already folded
        if known is None and envelope.sequence > 1 and envelope.payload.STATUS.is_final:
            # The end of an order finished before this partition's resume position (its
            # submission lies before it): nothing to do, and nothing wrong with its records.
            part.tails.pop(order_id, None)
            part.finished[order_id] = envelope.sequence
            return
        try:
            state = evolve(known, envelope, record_hash(value or b""))
        except OutOfSequence as exc:
            if known is None and not live:
                # Perhaps the tail of an order finished before the resume position: its
                # final event, still to come in the catch-up, tells (`finish_catch_up`).
                part.tails.setdefault(order_id, []).append((offset, key, value, str(exc)))
                return
            await self._dead_letter(partition, offset, key, value, str(exc))
            return
        if known is None:
            part.submitted_at[order_id] = offset
        part.orders[order_id] = state
        if state.is_final:
            self._finished(part, order_id)
        elif live and not state.status.is_resting:
            # A market order's submission, or a resting order's trigger: the router's turn.
            await self._start(partition, order_id)

    def _nothing_new(self, part: _Partition, key: bytes | None, value: bytes | None) -> bool:
        """Whether a record is of an order running here or finished, with nothing to learn.

        Four of every five records are the router's own events coming back, and their full
        pydantic decode was most of the agent's per-record work (profiled): a key lookup
        and a JSON parse tell them apart. A running order's run knows more than its records
        (its own events, duplicates) and ends by recording its final state itself; a
        finished order's records at or below its final sequence are duplicates. Anything
        else (another order in the value, an event after the final one) is decoded as usual.
        """
        if key is None or not value:
            return False
        try:
            order_id = uuid.UUID(key.decode())
        except ValueError:  # UnicodeDecodeError included
            return False
        running = order_id in self._tasks and order_id in part.orders
        last_final = part.finished.get(order_id)
        if not running and last_final is None:
            return False
        try:
            raw = orjson.loads(value)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(raw, dict) or raw.get("order_id") != str(order_id):
            return False
        if running:
            # A trigger can follow the run's own last event (it put the order back to rest):
            # it is kept for when the run ends. Everything else is the run's own, or a loser.
            return raw.get("type") != "OrderTriggered"
        sequence = raw.get("sequence")
        return type(sequence) is int and last_final is not None and sequence <= last_final

    async def _start(self, partition: int, order_id: uuid.UUID) -> None:
        if order_id in self._tasks:
            return
        part = self._partitions.get(partition)
        state = None if part is None else part.orders.get(order_id)
        high = state is not None and is_high_priority(state)
        if not high:
            # Backpressure: at most max_in_flight orders at once, and reading waits for a slot.
            await self._slots.acquire(high=False)
        # A high-priority order does not wait in the reading path: its task takes the next
        # free slot ahead of every waiting normal order (`PrioritySlots`).
        self._tasks[order_id] = asyncio.create_task(
            self._work(partition, order_id, acquire=high), name=f"order-{order_id}"
        )

    async def _work(self, partition: int, order_id: uuid.UUID, *, acquire: bool = False) -> None:
        # The task has its own context: every log line about this order carries its id.
        structlog.contextvars.bind_contextvars(order_id=str(order_id))
        acquired = not acquire
        try:
            if acquire:
                await self._slots.acquire(high=True)
                acquired = True
            part = self._partitions[partition]
            final = await self._run_order(part.orders[order_id])
            if self._partitions.get(partition) is part and order_id in part.orders:
                part.orders[order_id] = final
                if final.is_final:
                    self._finished(part, order_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The order stays unfinished: the next assignment of its partition resumes it.
            log.exception("order %s stopped on an unexpected error", order_id)
        finally:
            self._tasks.pop(order_id, None)
            if acquired:
                self._slots.release()
            await self._handle_deferred(partition, order_id)

    async def _handle_deferred(self, partition: int, order_id: uuid.UUID) -> None:
        part = self._partitions.get(partition)
        records = part.deferred.pop(order_id, []) if part is not None else []
        for offset, key, value in records:
            assert part is not None
            await self._handle(part, partition, offset, key, value, live=True)

    def _finished(self, part: _Partition, order_id: uuid.UUID) -> None:
        state = part.orders.pop(order_id)
        part.submitted_at.pop(order_id, None)
        part.finished[order_id] = state.sequence
        # The bound is the router's, shared by its partitions: it was per partition, up
        # to 2.4 million orders (~490 MB) over a 12-partition log.
        share = max(1, FINISHED_MEMORY // max(1, len(self._partitions)))
        while len(part.finished) > share:
            part.finished.popitem(last=False)
