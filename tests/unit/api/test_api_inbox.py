"""A socket's inbox: arrival order, a bound that gives up on the subscriber, nothing lost."""

from __future__ import annotations

import asyncio

import pytest

from services.api.inbox import Inbox


async def test_items_come_out_in_arrival_order_and_a_waiter_wakes() -> None:
    inbox: Inbox[int] = Inbox(10)
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.offer(1)
    inbox.offer(2)
    assert await waiting == 1
    assert inbox.get_nowait() == 2
    assert inbox.get_nowait() is None


async def test_past_its_bound_it_gives_up_once_and_drops_what_it_held() -> None:
    inbox: Inbox[int] = Inbox(2)
    calls: list[str] = []
    inbox.on_overflow(lambda: calls.append("overflowed"))
    for item in range(5):
        inbox.offer(item)
    assert inbox.overflowed
    assert calls == ["overflowed"]
    assert inbox.get_nowait() is None
    late: list[str] = []
    inbox.on_overflow(lambda: late.append("told"))  # registered after: told at once
    assert late == ["told"]


async def test_a_cancelled_wait_loses_no_item() -> None:
    inbox: Inbox[int] = Inbox(10)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(inbox.get(), 0.01)
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.offer(7)  # wakes the waiter ...
    waiting.cancel()  # ... which is cancelled before it runs: 7 stays in the inbox
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await inbox.get() == 7
