"""Landing a launch's snipers in the first block the pool is open in, in submission order.

A transaction the node receives while slot s is its last committed block lands in block s + 1
(or later, if the node skips slots), whose clock is that block's time (`getBlockTime`). So the
first open block is S = the first slot whose block time >= the pool's open time, and a
transaction sent once block S - 1 is committed, and before block S closes, lands in S: sent
earlier it would land before the open and fail 6000 NotApproved, as the real program does.

`OpenSender` is the one sender of a launch in this router: every sniper signed before the open
queues its bytes with its submission key (created_at, order id: the trigger engine's order);
when the node reports slot S - 1 it sends them all, sorted, over one connection in sequential
batches (the node lands a slot's transactions in arrival order), then they are the market path
(`send_and_confirm` re-sends the same bytes, which the node dedupes). A sniper signed after
that is sent at once, after them. A sniper signs no earlier than `SIGN_WITHIN_SLOTS` before the
open, so the blockhash it signs with is still valid then. The slot length comes from
`getRecentPerformanceSamples` and the clock's origin from `getBlockTime(0)`, as a Solana client
would learn them.
"""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Any

Call = Callable[[Sequence[tuple[str, list[object]]]], Awaitable[list[Any]]]
SubmissionKey = tuple[datetime, str]  # (created_at, order id): submission order
# One POST's body stays under the node's 4 MiB request limit; a batch is one request, which the
# node dispatches without yielding to its slot loop, so a batch never straddles two blocks.
SEND_BATCH_BYTES = 3 * 1024 * 1024
NO_SAMPLE_RETRY_SECONDS = 0.2
FAST_POLL_SECONDS = 0.01
# A blockhash is valid for 150 slots: a sniper signs no earlier than this many slots before the
# first open block, so its pre-signed bytes still land there (the client may reuse a blockhash
# a slot old; the rest is margin).
SIGN_WITHIN_SLOTS = 100  # getSlot near the last closed slot: the send window is one slot


@dataclass(frozen=True, slots=True)
class SlotClock:
    """Block times as the node gives them: origin + slot x slot length, in whole seconds."""

    origin: int  # block time of slot 0, unix seconds
    slot_ms: Fraction

    def first_slot_at(self, unix_time: int) -> int:
        """The first slot whose block time is at or after `unix_time`."""
        # floor(origin + s x L/1000) >= t  <=>  s x L/1000 >= t - origin (t, origin integers)
        return max(0, math.ceil((unix_time - self.origin) * 1000 / self.slot_ms))


async def read_slot_clock(call: Call) -> SlotClock:
    """The node's slot length (its latest performance sample) and the time of its slot 0."""
    origin, samples = await call([("getBlockTime", [0]), ("getRecentPerformanceSamples", [1])])
    if not samples:
        msg = "the node reports no performance sample: its slot length is unknown"
        raise RuntimeError(msg)
    sample = samples[0]
    return SlotClock(int(origin), Fraction(sample["samplePeriodSecs"] * 1000, sample["numSlots"]))


@dataclass
class _Launch:
    open_time: int
    queued: list[tuple[SubmissionKey, bytes, asyncio.Future[None]]] = field(default_factory=list)
    sent: bool = False  # the open's batch went: later snipers are sent by their own path
    task: asyncio.Task[None] | None = None


class OpenSender:
    """One sender per launch (keyed by pool) in this process; see the module docstring."""

    def __init__(self, call: Call, *, on_open: Callable[[], None] = lambda: None) -> None:
        self._call = call
        self._on_open = on_open  # called once the first open block is committed
        self._launches: dict[str, _Launch] = {}
        self._signable: dict[str, asyncio.Task[None]] = {}  # pool -> its one waiter

    async def wait_signable(self, pool: str, open_time: int) -> None:
        """Return once a blockhash taken now is still valid in the first open block (a sniper
        signed earlier would expire before the open and be re-quoted and sent on its own)."""
        task = self._signable.get(pool)
        if task is None or _failed(task):
            task = self._signable[pool] = asyncio.ensure_future(self._signable_at(open_time))
        await asyncio.shield(task)

    async def _signable_at(self, open_time: int) -> None:
        clock = await read_slot_clock(self._call)
        await self._until_slot(clock.first_slot_at(open_time) - SIGN_WITHIN_SLOTS, clock)

    def opened(self, pool: str) -> bool:
        """Whether the first open block of this pool is committed (its task finished)."""
        launch = self._launches.get(pool)
        return (
            launch is not None
            and launch.task is not None
            and launch.task.done()
            and not launch.task.cancelled()
            and launch.task.exception() is None
        )

    async def send_at_open(
        self, pool: str, open_time: int, key: SubmissionKey, wire: bytes
    ) -> None:
        """Queue the signed bytes for the first open block; return once they are sent (at once
        if the open's batch has gone)."""
        launch = self._launches.get(pool)
        if launch is None or (launch.task is not None and _failed(launch.task)):
            launch = self._launches[pool] = _Launch(open_time)
        if launch.sent:
            return
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        launch.queued.append((key, wire, sent))
        if launch.task is None:
            launch.task = asyncio.ensure_future(self._run(launch))
        await asyncio.shield(sent)

    async def _run(self, launch: _Launch) -> None:
        try:
            clock = await read_slot_clock(self._call)
            first_open = clock.first_slot_at(launch.open_time)
            await self._until_slot(first_open - 1, clock)
            # No await between taking the queue and marking it sent: a sniper queueing after
            # this is sent by its own path, after these.
            queued, launch.queued, launch.sent = sorted(launch.queued, key=_key), [], True
            try:
                await self._send_in_order([wire for _, wire, _ in queued])
            except BaseException as exc:
                for _, _, done in queued:
                    if not done.done():
                        done.set_exception(exc)
                raise
            for _, _, done in queued:
                if not done.done():
                    done.set_result(None)
            await self._until_slot(first_open, clock)
            self._on_open()
        except BaseException as exc:
            for _, _, done in launch.queued:
                if not done.done():
                    done.set_exception(exc)
            launch.queued = []
            raise

    async def _until_slot(self, slot: int, clock: SlotClock) -> None:
        # Polling another process's slot: there is no event to wait on. Far from it, sleep most
        # of the way; near it, poll fast, since the send window is the one slot after it.
        slot_seconds = float(clock.slot_ms) / 1000
        while (current := (await self._call([("getSlot", [])]))[0]) < slot:  # noqa: ASYNC110
            await asyncio.sleep(max(FAST_POLL_SECONDS, (slot - current - 1) * slot_seconds))

    async def _send_in_order(self, wires: list[bytes]) -> None:
        """Send over one connection, one batch after the other: arrival order is this order.
        No preflight: the node simulates against its last block, which is before the open."""
        batch: list[tuple[str, list[object]]] = []
        size = 0
        for wire in wires:
            encoded = base64.b64encode(wire).decode()
            if batch and size + len(encoded) + 120 > SEND_BATCH_BYTES:
                await self._call(batch)
                batch, size = [], 0
            batch.append(
                ("sendTransaction", [encoded, {"encoding": "base64", "skipPreflight": True}])
            )
            size += len(encoded) + 120  # the request's JSON around the bytes
        if batch:
            await self._call(batch)


def _key(entry: tuple[SubmissionKey, bytes, asyncio.Future[None]]) -> SubmissionKey:
    return entry[0]


def _failed(task: asyncio.Task[None]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)
