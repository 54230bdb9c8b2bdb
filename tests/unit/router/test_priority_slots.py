"""The router's two lanes: a freed slot goes to waiting high-priority orders first, in order,
but never more than HIGH_BURST in a row while a normal order waits; cancelled waiters give
their turn on."""

from __future__ import annotations

import asyncio

from services.router.slots import PrioritySlots


async def grants(slots: PrioritySlots, lanes: list[bool], frees: int) -> list[str]:
    """Queue waiters in `lanes` order (all slots taken), free `frees` slots; who got them."""
    got: list[str] = []

    async def wait(name: str, high: bool) -> None:
        await slots.acquire(high=high)
        got.append(name)

    tasks = [
        asyncio.create_task(wait(f"{'h' if high else 'n'}{i}", high))
        for i, high in enumerate(lanes)
    ]
    await asyncio.sleep(0)
    for _ in range(frees):
        slots.release()
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return got


async def test_free_slots_are_taken_at_once() -> None:
    slots = PrioritySlots(2)
    await slots.acquire(high=False)
    await slots.acquire(high=True)
    assert slots.waiting == (0, 0)


async def test_high_priority_waiters_go_first_in_their_order() -> None:
    slots = PrioritySlots(1, high_burst=8)
    await slots.acquire(high=False)  # the one slot is busy
    got = await grants(slots, [False, False, True, False, True], frees=3)
    assert got == ["h2", "h4", "n0"]


async def test_a_stream_of_high_priority_orders_does_not_starve_normal_ones() -> None:
    slots = PrioritySlots(1, high_burst=3)
    await slots.acquire(high=False)
    got = await grants(slots, [False] * 2 + [True] * 10, frees=10)
    assert got == ["h2", "h3", "h4", "n0", "h5", "h6", "h7", "n1", "h8", "h9"]


async def test_a_cancelled_waiter_passes_its_turn_on() -> None:
    slots = PrioritySlots(1)
    await slots.acquire(high=False)
    first = asyncio.create_task(slots.acquire(high=True))
    second = asyncio.create_task(slots.acquire(high=False))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    slots.release()
    await asyncio.wait_for(second, 1)
    assert slots.waiting == (0, 0)
