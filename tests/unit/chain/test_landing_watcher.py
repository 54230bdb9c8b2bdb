"""The router's one poller for every signature in flight (`LandingWatcher`): each round asks
the statuses of all of them in one request and reads the fills of those landed in one more,
waking each waiter with its own transaction; a failed round fails its waiters as their own
polls would have; a signature nobody waits for is no longer asked."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from solders.signature import Signature

from services.chain.solana_client import Landed, LandingWatcher, Status
from services.pricing.ports import ChainUnreachable


@dataclass
class ScriptedRpc:
    """Landed signatures answer with a fill naming their slot; every call is recorded."""

    landed: dict[Signature, int] = field(default_factory=dict)  # signature -> slot
    readable: bool = True  # False: a status whose transaction is not readable yet
    down: bool = False
    status_calls: list[list[Signature]] = field(default_factory=list)
    fill_calls: list[list[Signature]] = field(default_factory=list)

    async def statuses(self, signatures: Sequence[Signature]) -> list[Status | None]:
        self.status_calls.append(list(signatures))
        if self.down:
            raise ChainUnreachable("node restarting")
        return [Status(self.landed[s], None) if s in self.landed else None for s in signatures]

    async def transactions(self, signatures: Sequence[Signature]) -> list[Landed | None]:
        self.fill_calls.append(list(signatures))
        return [
            Landed(self.landed[s], None, [str(s)], [], []) if self.readable else None
            for s in signatures
        ]


async def wait_for(watcher: LandingWatcher, signature: Signature) -> Landed:
    async with watcher.watching(signature) as landing:
        return await landing


async def test_one_round_asks_every_signature_and_wakes_each_with_its_fill() -> None:
    rpc = ScriptedRpc()
    watcher = LandingWatcher(rpc, poll_seconds=0.001)  # type: ignore[arg-type]
    signatures = [Signature.new_unique() for _ in range(50)]
    waiting = [asyncio.create_task(wait_for(watcher, s)) for s in signatures]
    await asyncio.sleep(0.01)
    assert not any(task.done() for task in waiting)
    assert all(sorted(map(str, call)) == sorted(map(str, signatures)) for call in rpc.status_calls)
    assert rpc.fill_calls == []  # nothing landed: no fill read

    rpc.landed = {s: 100 + n for n, s in enumerate(signatures[:30])}
    fills = await asyncio.gather(*waiting[:30])

    assert [(f.slot, f.logs) for f in fills] == [
        (100 + n, [str(s)]) for n, s in enumerate(signatures[:30])
    ]
    [read] = [call for call in rpc.fill_calls if call]
    assert sorted(map(str, read)) == sorted(map(str, signatures[:30]))  # one batched read
    await asyncio.sleep(0.01)
    # The landed ones are no longer asked; the others still are.
    assert set(rpc.status_calls[-1]) == set(signatures[30:])
    assert not any(task.done() for task in waiting[30:])
    for task in waiting[30:]:
        task.cancel()


async def test_a_status_without_a_readable_transaction_waits_for_the_next_round() -> None:
    signature = Signature.new_unique()
    rpc = ScriptedRpc(landed={signature: 7}, readable=False)
    watcher = LandingWatcher(rpc, poll_seconds=0.001)  # type: ignore[arg-type]
    waiting = asyncio.create_task(wait_for(watcher, signature))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    assert len(rpc.fill_calls) >= 2  # asked again each round

    rpc.readable = True

    assert (await waiting).slot == 7


async def test_a_failed_round_fails_its_waiters_and_the_next_waiters_poll_again() -> None:
    signature = Signature.new_unique()
    rpc = ScriptedRpc(down=True)
    watcher = LandingWatcher(rpc, poll_seconds=0.001)  # type: ignore[arg-type]

    with pytest.raises(ChainUnreachable, match="node restarting"):
        await wait_for(watcher, signature)

    rpc.down = False
    rpc.landed = {signature: 9}
    assert (await wait_for(watcher, signature)).slot == 9


async def test_two_waiters_of_one_signature_share_it_and_one_leaving_keeps_it_watched() -> None:
    signature = Signature.new_unique()
    rpc = ScriptedRpc()
    watcher = LandingWatcher(rpc, poll_seconds=0.001)  # type: ignore[arg-type]
    first = asyncio.create_task(wait_for(watcher, signature))
    second = asyncio.create_task(wait_for(watcher, signature))
    await asyncio.sleep(0.005)
    first.cancel()
    await asyncio.sleep(0.005)
    assert rpc.status_calls[-1] == [signature]  # one entry, still asked

    rpc.landed = {signature: 3}
    assert (await second).slot == 3


async def test_a_signature_nobody_waits_for_is_no_longer_asked_and_the_poller_stops() -> None:
    signature = Signature.new_unique()
    rpc = ScriptedRpc()
    watcher = LandingWatcher(rpc, poll_seconds=0.001)  # type: ignore[arg-type]
    waiting = asyncio.create_task(wait_for(watcher, signature))
    await asyncio.sleep(0.005)
    waiting.cancel()
    await asyncio.sleep(0.005)
    asked = len(rpc.status_calls)
    await asyncio.sleep(0.01)
    assert len(rpc.status_calls) == asked  # nothing left to ask: the poller ended
