"""The simulated chain on real PostgreSQL: genesis, landing once, slippage, hops, RPC faults.

The chain tables are shared by the whole session and trades move the shared pools,
so every test trades small amounts under fresh order ids and asserts facts relative
to its own before/after snapshots, never absolute reserves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from services.chain.adapters import SimulatedVenue, SnapshotCache
from services.chain.client import ChainUnavailable, ConfirmationTimeout, SimulatedRpc, fault_draw
from services.chain.ledger import BlockAbandoned, LandedElsewhere, Ledger
from services.chain.signatures import signature_for
from services.chain.transactions import Receipt, SwapInstruction, Transaction
from services.common.db import open_pool
from services.pricing.quote import quote_order
from services.venues.market import Market, arbitrage
from services.venues.pool import Pair, PoolBook, Venue

SEED = 42
SOL_USDC: Pair = ("SOL", "USDC")
JUP_USDC: Pair = ("JUP", "USDC")


@dataclass
class Chain:
    db: AsyncConnectionPool
    ledger: Ledger

    async def rows_for(self, order_id: uuid.UUID) -> int:
        async with self.db.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM chain.transactions WHERE order_id = %s", (order_id,)
            )
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def count(self, table: str) -> int:
        async with self.db.connection() as conn:
            cursor = await conn.execute(f"SELECT count(*) FROM chain.{table}")  # fixed names only
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def reference_mid(self, venue: Venue, pair: Pair) -> Decimal:
        async with self.db.connection() as conn:
            cursor = await conn.execute(
                "SELECT reference_mid FROM chain.pools"
                " WHERE venue = %s AND base = %s AND quote = %s",
                (venue.value, *pair),
            )
            row = await cursor.fetchone()
        assert row is not None
        return Decimal(row[0])

    async def pools(self) -> dict[tuple[Venue, Pair], dict[str, object]]:
        """Every pool's stored state, comparable across snapshots."""
        snapshot = await self.ledger.snapshot()
        return {key: dict(pool.to_dict()) for key, pool in snapshot.pools.items()}


@pytest.fixture
async def chain(database_url: str) -> AsyncIterator[Chain]:
    db = await open_pool(database_url, max_size=12)
    try:
        ledger = Ledger(db, Market(seed=SEED))
        await ledger.genesis()
        yield Chain(db, ledger)
    finally:
        await db.close()


def sol_to_usdc(
    order_id: uuid.UUID, *, lamports: int = 1_000_000, min_amount_out: int = 1
) -> Transaction:
    """0.001 SOL on Raydium by default: a trade too small to matter to the shared pools."""
    return Transaction(
        signature=signature_for(order_id, SEED),
        order_id=order_id,
        token_in="SOL",
        token_out="USDC",
        amount_in=lamports,
        min_amount_out=min_amount_out,
        instructions=(SwapInstruction(Venue.RAYDIUM, "SOL", "USDC", lamports, 0),),
    )


async def planned(
    ledger: Ledger, order_id: uuid.UUID, token_in: str, token_out: str, amount: Decimal
) -> Transaction:
    """A transaction built the way the router builds one: quote both venues, follow the plan."""
    cache = SnapshotCache(ledger.snapshot, max_age=0)
    venues = [SimulatedVenue(v, cache, seed=SEED, latency=(0, 0)) for v in Venue]
    quote = await quote_order(
        venues, token_in, token_out, amount, Decimal("0.01"), split_threshold_bps=Decimal(1)
    )
    route = quote.route
    return Transaction(
        signature=signature_for(order_id, SEED),
        order_id=order_id,
        token_in=token_in,
        token_out=token_out,
        amount_in=route.amount_in,
        min_amount_out=route.min_amount_out,
        instructions=tuple(
            SwapInstruction(
                leg.venue,
                leg.token_in,
                leg.token_out,
                leg.amount_in,
                hop=0 if leg.token_in == token_in else 1,
            )
            for leg in route.legs
        ),
    )


def touched(tx: Transaction, book: PoolBook) -> set[tuple[Venue, Pair]]:
    return {
        key
        for i in tx.instructions
        for key in ((i.venue, (i.token_in, i.token_out)), (i.venue, (i.token_out, i.token_in)))
        if key in book
    }


async def test_genesis_is_idempotent(chain: Chain) -> None:
    pools_before = await chain.pools()
    count_before = await chain.count("pools")

    await chain.ledger.genesis()
    await Ledger(chain.db, Market(seed=SEED + 1)).genesis()  # another seed cannot re-open it

    assert await chain.count("pools") == count_before == len(Market(seed=SEED).pools)
    assert await chain.count("genesis") == 1
    assert await chain.pools() == pools_before


async def test_execute_lands_a_routed_swap_and_moves_the_pool(chain: Chain) -> None:
    order_id = uuid.uuid4()
    tx = await planned(chain.ledger, order_id, "SOL", "USDC", Decimal("0.01"))
    before = await chain.pools()

    receipt = await chain.ledger.execute(tx)

    assert receipt.status == "confirmed"
    assert receipt.error_code is None
    assert receipt.error is None
    assert (receipt.signature, receipt.order_id) == (tx.signature, order_id)
    assert receipt.amount_in == tx.amount_in == 10_000_000
    assert receipt.amount_out >= tx.min_amount_out > 0
    assert 0 < receipt.fee < receipt.amount_in
    assert await chain.ledger.receipt(tx.signature) == receipt
    assert await chain.rows_for(order_id) == 1
    after = await chain.pools()
    moved = {key for key in before if before[key] != after[key]}
    assert moved, "a confirmed swap leaves its pool changed"
    assert moved <= touched(tx, (await chain.ledger.snapshot()).pools)


async def test_resending_the_same_transaction_returns_the_first_receipt(chain: Chain) -> None:
    order_id = uuid.uuid4()
    tx = sol_to_usdc(order_id)
    first = await chain.ledger.execute(tx)
    after_first = await chain.pools()

    again = await chain.ledger.execute(tx)

    assert first.status == "confirmed"
    assert again == first
    assert await chain.rows_for(order_id) == 1
    assert await chain.pools() == after_first


async def test_a_resend_with_another_plan_still_returns_the_first_fill(chain: Chain) -> None:
    # A re-routed retry of the same order signs with the same signature: it must not trade again.
    order_id = uuid.uuid4()
    first = await chain.ledger.execute(sol_to_usdc(order_id))
    after_first = await chain.pools()

    again = await chain.ledger.execute(sol_to_usdc(order_id, lamports=2_000_000))

    assert again == first
    assert await chain.rows_for(order_id) == 1
    assert await chain.pools() == after_first


async def test_concurrent_sends_land_once(chain: Chain) -> None:
    order_id = uuid.uuid4()
    tx = sol_to_usdc(order_id)
    key = (Venue.RAYDIUM, SOL_USDC)
    # Constant product math and its arbitrage do not depend on time: one landing, exactly.
    pool = (await chain.ledger.snapshot()).pools[key]
    once = arbitrage(
        pool.swap("SOL", tx.amount_in, 0).pool_after, await chain.reference_mid(*key), 0
    )

    receipts = await asyncio.gather(*(chain.ledger.execute(tx) for _ in range(10)))

    assert len(set(receipts)) == 1
    assert receipts[0].status == "confirmed"
    assert await chain.rows_for(order_id) == 1
    assert await chain.ledger.receipt(tx.signature) == receipts[0]
    assert (await chain.pools())[key] == once.to_dict()


async def test_slippage_guard_fails_without_moving_the_pool(chain: Chain) -> None:
    order_id = uuid.uuid4()
    key = (Venue.RAYDIUM, SOL_USDC)
    book = (await chain.ledger.snapshot()).pools
    can_give = book[key].amount_out("SOL", 1_000_000, 0)
    before = await chain.pools()

    receipt = await chain.ledger.execute(sol_to_usdc(order_id, min_amount_out=can_give + 1))

    assert receipt.status == "failed"
    assert receipt.error_code == "SLIPPAGE_EXCEEDED"
    assert receipt.error is not None
    assert "below the minimum" in receipt.error
    assert (receipt.amount_out, receipt.fee) == (0, 0)
    after = await chain.pools()
    assert after[key] == before[key]
    assert after == before
    assert await chain.rows_for(order_id) == 1

    resent = await chain.ledger.execute(sol_to_usdc(order_id, min_amount_out=1))
    assert resent == receipt
    assert await chain.rows_for(order_id) == 1
    assert await chain.pools() == before


@pytest.mark.parametrize(
    ("instruction", "code"),
    [
        # Meteora's bins hold a few million USDC: a million SOL empties them.
        (SwapInstruction(Venue.METEORA, "SOL", "USDC", 10**15, 0), "INSUFFICIENT_LIQUIDITY"),
        (SwapInstruction(Venue.RAYDIUM, "SOL", "BONK", 1_000_000, 0), "INVALID_TRANSACTION"),
    ],
)
async def test_a_swap_the_pools_cannot_do_fails_without_moving_them(
    chain: Chain, instruction: SwapInstruction, code: str
) -> None:
    order_id = uuid.uuid4()
    tx = dataclasses.replace(
        sol_to_usdc(order_id),
        token_out=instruction.token_out,
        amount_in=instruction.amount_in,
        instructions=(instruction,),
    )
    before = await chain.pools()

    receipt = await chain.ledger.execute(tx)

    assert receipt.status == "failed"
    assert receipt.error_code == code
    assert receipt.amount_out == 0
    assert await chain.pools() == before
    assert await chain.ledger.execute(tx) == receipt
    assert await chain.rows_for(order_id) == 1


async def test_two_hop_route_lands(chain: Chain) -> None:
    order_id = uuid.uuid4()
    tx = await planned(chain.ledger, order_id, "JUP", "SOL", Decimal(3))
    assert {i.hop for i in tx.instructions} == {0, 1}, "JUP->SOL has no direct pool"

    receipt = await chain.ledger.execute(tx)

    assert receipt.status == "confirmed"
    assert receipt.amount_out >= tx.min_amount_out > 0
    assert await chain.rows_for(order_id) == 1


async def test_second_hop_scales_to_the_first_hops_actual_output(chain: Chain) -> None:
    # Raydium pools are constant product, whose output does not depend on time: the
    # expected fill can be computed exactly from the snapshot the swap starts from.
    order_id = uuid.uuid4()
    jup = 2_000_000  # 2 JUP
    book = (await chain.ledger.snapshot()).pools
    hop1 = book[(Venue.RAYDIUM, JUP_USDC)].swap("JUP", jup, 0)
    carried = hop1.amount_out
    # The second hop is planned for three times what the first will actually pay, split 1:2.
    plan_a, plan_b = carried, 2 * carried
    leg_a = plan_a * carried // (plan_a + plan_b)
    leg_b = plan_b * carried // (plan_a + plan_b)
    sol_pool = book[(Venue.RAYDIUM, SOL_USDC)]
    first = sol_pool.swap("USDC", leg_a, 0)
    expected = first.amount_out + first.pool_after.swap("USDC", leg_b, 0).amount_out
    tx = Transaction(
        signature=signature_for(order_id, SEED),
        order_id=order_id,
        token_in="JUP",
        token_out="SOL",
        amount_in=jup,
        min_amount_out=1,
        instructions=(
            SwapInstruction(Venue.RAYDIUM, "JUP", "USDC", jup, 0),
            SwapInstruction(Venue.RAYDIUM, "USDC", "SOL", plan_a, 1),
            SwapInstruction(Venue.RAYDIUM, "USDC", "SOL", plan_b, 1),
        ),
    )

    receipt = await chain.ledger.execute(tx)

    assert receipt.status == "confirmed"
    assert receipt.amount_out == expected
    assert receipt.fee == hop1.fee  # fees are reported in token_in, i.e. the first hop's


def order_failing_with(kind: type[Exception]) -> uuid.UUID:
    """An order whose first attempt draws the given fault kind at failure rate 1."""
    while True:
        order_id = uuid.uuid4()
        lost = fault_draw(SEED, order_id, 1, "kind") < Decimal("0.5")
        if lost == (kind is ConfirmationTimeout):
            return order_id


def rpc(ledger: Ledger, failure_rate: Decimal) -> SimulatedRpc:
    return SimulatedRpc(ledger, seed=SEED, failure_rate=failure_rate, confirm_latency=(0, 0))


async def test_rpc_outage_before_sending_leaves_nothing_on_chain(chain: Chain) -> None:
    order_id = order_failing_with(ChainUnavailable)
    tx = sol_to_usdc(order_id)
    before = await chain.pools()

    with pytest.raises(ChainUnavailable):
        await rpc(chain.ledger, Decimal(1)).send_and_confirm(tx, 1)

    assert await chain.ledger.receipt(tx.signature) is None
    assert await chain.rows_for(order_id) == 0
    assert await chain.pools() == before


async def test_lost_confirmation_means_the_transaction_landed(chain: Chain) -> None:
    order_id = order_failing_with(ConfirmationTimeout)
    tx = sol_to_usdc(order_id)

    with pytest.raises(ConfirmationTimeout):
        await rpc(chain.ledger, Decimal(1)).send_and_confirm(tx, 1)

    landed = await chain.ledger.receipt(tx.signature)
    assert landed is not None
    assert landed.status == "confirmed"
    assert await chain.rows_for(order_id) == 1
    # The retry after a lost confirmation gets the fill that already happened.
    after = await chain.pools()
    retried = await rpc(chain.ledger, Decimal(0)).send_and_confirm(tx, 2)
    assert retried == landed
    assert await chain.rows_for(order_id) == 1
    assert await chain.pools() == after


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6])
async def test_rpc_fault_kind_follows_fault_draw(chain: Chain, attempt: int) -> None:
    order_id = uuid.uuid4()
    tx = sol_to_usdc(order_id)
    lost = fault_draw(SEED, order_id, attempt, "kind") < Decimal("0.5")
    expected: type[Exception] = ConfirmationTimeout if lost else ChainUnavailable

    with pytest.raises(expected):
        await rpc(chain.ledger, Decimal(1)).send_and_confirm(tx, attempt)

    landed: Receipt | None = await chain.ledger.receipt(tx.signature)
    assert (landed is not None) == lost


# --- Blocks: many sends share one database transaction, each order lands once ----------------


async def landed(
    db: AsyncConnectionPool, order_ids: list[uuid.UUID]
) -> list[tuple[uuid.UUID, str, int]]:
    """(order_id, signature, slot) of every chain.transactions row for these orders."""
    async with db.connection() as conn:
        cursor = await conn.execute(
            "SELECT order_id, signature, slot FROM chain.transactions WHERE order_id = ANY(%s)",
            (order_ids,),
        )
        rows = await cursor.fetchall()
    return [(row[0], row[1], int(row[2])) for row in rows]


async def rows_per_order(
    db: AsyncConnectionPool, order_ids: list[uuid.UUID]
) -> dict[uuid.UUID, int]:
    rows = await landed(db, order_ids)
    return {order_id: sum(1 for o, _, _ in rows if o == order_id) for order_id in order_ids}


Hold = Literal["before_transaction", "inside_transaction", "after_commit"]


@dataclass
class Gate:
    """Stops every block at one point until released, and records the blocks that got there."""

    reached: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    blocks: list[list[str]] = field(default_factory=list)

    async def hold(self, txs: list[Transaction]) -> None:
        self.blocks.append([tx.signature for tx in txs])
        self.reached.set()
        await self.release.wait()

    async def wait_reached(self) -> None:
        async with asyncio.timeout(10):
            await self.reached.wait()


def hold_blocks(monkeypatch: pytest.MonkeyPatch, ledger: Ledger, where: Hold) -> Gate:
    """Make `ledger`'s blocks wait at `where`: before their database transaction, inside it
    (swaps applied and rows inserted, pools locked, not committed), or after it committed."""
    gate = Gate()
    if where == "inside_transaction":
        land = ledger._land

        async def held_land(
            conn: psycopg.AsyncConnection[Any], txs: list[Transaction]
        ) -> dict[str, Receipt]:
            receipts = await land(conn, txs)
            await gate.hold(txs)
            return receipts

        monkeypatch.setattr(ledger, "_land", held_land)
        return gate
    land_block = ledger._land_block

    async def held_block(txs: list[Transaction]) -> dict[str, Receipt | Exception]:
        if where == "before_transaction":
            await gate.hold(txs)
        outcomes = await land_block(txs)
        if where == "after_commit":
            await gate.hold(txs)
        return outcomes

    monkeypatch.setattr(ledger, "_land_block", held_block)
    return gate


HoldBlocks = Callable[[Ledger, Hold], Gate]


@pytest.fixture
async def hold(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HoldBlocks]:
    """`hold_blocks`, released at teardown: a failing test cannot leave a block (and its
    pool locks) waiting on the gate for the rest of the session."""
    held: list[tuple[Ledger, Gate]] = []

    def make(ledger: Ledger, where: Hold) -> Gate:
        gate = hold_blocks(monkeypatch, ledger, where)
        held.append((ledger, gate))
        return gate

    yield make
    for ledger, gate in held:
        gate.release.set()
        if ledger._lander is not None:
            await asyncio.wait([ledger._lander], timeout=10)


async def queued(ledger: Ledger, count: int) -> None:
    """Wait until `count` sends are queued behind the block that is landing."""
    for _ in range(10_000):
        if len(ledger._queue) >= count:
            return
        await asyncio.sleep(0)
    pytest.fail(f"{count} sends never queued")


def send_all(ledger: Ledger, txs: list[Transaction]) -> list[asyncio.Task[Receipt]]:
    return [asyncio.create_task(ledger.execute(tx)) for tx in txs]


async def test_many_concurrent_orders_land_once_each_in_shared_blocks(chain: Chain) -> None:
    order_ids = [uuid.uuid4() for _ in range(60)]
    txs = [sol_to_usdc(order_id) for order_id in order_ids]
    key = (Venue.RAYDIUM, SOL_USDC)
    reference = await chain.reference_mid(*key)
    # Blocks keep the sending order and constant product math ignores time: the pool
    # must end exactly as after these 60 swaps one after another, each applied once.
    expected = (await chain.ledger.snapshot()).pools[key]
    for tx in txs:
        expected = arbitrage(expected.swap("SOL", tx.amount_in, 0).pool_after, reference, 0)

    receipts = await asyncio.gather(*(chain.ledger.execute(tx) for tx in txs))

    assert [(r.signature, r.order_id) for r in receipts] == [
        (tx.signature, tx.order_id) for tx in txs
    ]
    assert {r.status for r in receipts} == {"confirmed"}
    rows = await landed(chain.db, order_ids)
    assert len(rows) == len(txs)
    assert sorted(order_id for order_id, _, _ in rows) == sorted(order_ids)
    assert len({signature for _, signature, _ in rows}) == len(txs)
    assert {(signature, slot) for _, signature, slot in rows} == {
        (r.signature, r.slot) for r in receipts
    }
    slots = {slot for _, _, slot in rows}
    assert len(slots) < len(txs), "concurrent sends must share blocks"
    assert (await chain.pools())[key] == expected.to_dict()


async def test_the_same_transaction_sent_twice_at_once_lands_once(chain: Chain) -> None:
    order_id = uuid.uuid4()
    tx = sol_to_usdc(order_id)

    first, second = await asyncio.gather(chain.ledger.execute(tx), chain.ledger.execute(tx))

    assert first.status == "confirmed"
    assert second == first
    assert await chain.rows_for(order_id) == 1
    after = await chain.pools()
    assert await chain.ledger.execute(tx) == first
    assert await chain.ledger.receipt(tx.signature) == first
    assert await chain.rows_for(order_id) == 1
    assert await chain.pools() == after


async def test_a_resend_while_its_block_lands_gets_the_same_receipt(
    chain: Chain, hold: HoldBlocks
) -> None:
    order_id = uuid.uuid4()
    tx = sol_to_usdc(order_id)
    gate = hold(chain.ledger, "inside_transaction")
    [first] = send_all(chain.ledger, [tx])
    await gate.wait_reached()  # inserted, not committed
    [second] = send_all(chain.ledger, [tx])
    await queued(chain.ledger, 1)  # waits for the next block

    gate.release.set()
    async with asyncio.timeout(30):  # a lost wake-up fails here instead of hanging
        receipts = await asyncio.gather(first, second)

    assert receipts[0].status == "confirmed"
    assert receipts[1] == receipts[0]
    assert len(gate.blocks) == 2, "the resend landed in a block of its own"
    assert await chain.rows_for(order_id) == 1
    assert await chain.ledger.receipt(tx.signature) == receipts[0]


@pytest.mark.parametrize(
    ("victim_in", "victim_rows"),
    [
        ("landing_block", 1),  # the block had begun: it lands (and commits) without its sender
        ("next_block", 0),  # its sender gave up before its block began: it is left out
    ],
)
async def test_a_cancelled_sender_does_not_break_the_block(
    chain: Chain, hold: HoldBlocks, victim_in: str, victim_rows: int
) -> None:
    landing = [sol_to_usdc(uuid.uuid4()) for _ in range(5)]
    waiting = [sol_to_usdc(uuid.uuid4()) for _ in range(5)]
    gate = hold(chain.ledger, "inside_transaction")
    landing_tasks = send_all(chain.ledger, landing)
    await gate.wait_reached()
    waiting_tasks = send_all(chain.ledger, waiting)
    await queued(chain.ledger, len(waiting))
    txs, tasks = (
        (landing, landing_tasks) if victim_in == "landing_block" else (waiting, waiting_tasks)
    )
    victim, victim_task = txs[2], tasks[2]

    victim_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await victim_task
    gate.release.set()
    others = [t for t in (*landing_tasks, *waiting_tasks) if t is not victim_task]
    async with asyncio.timeout(30):
        receipts = await asyncio.gather(*others)

    assert {r.status for r in receipts} == {"confirmed"}
    other_ids = [tx.order_id for tx in (*landing, *waiting) if tx is not victim]
    assert await rows_per_order(chain.db, other_ids) == dict.fromkeys(other_ids, 1)
    assert await chain.rows_for(victim.order_id) == victim_rows
    assert victim_rows in (0, 1)
    landed_before = await chain.ledger.receipt(victim.signature)

    resent = await chain.ledger.execute(victim)

    assert resent.status == "confirmed"
    if landed_before is not None:
        assert resent == landed_before
    assert await chain.ledger.receipt(victim.signature) == resent
    assert await chain.rows_for(victim.order_id) == 1


@pytest.mark.parametrize("where", ["before_transaction", "inside_transaction", "after_commit"])
async def test_a_lander_stopped_mid_block_abandons_its_waiters_and_a_resend_lands_once(
    chain: Chain, hold: HoldBlocks, where: Hold
) -> None:
    in_block = [sol_to_usdc(uuid.uuid4()) for _ in range(5)]
    queued_after = [sol_to_usdc(uuid.uuid4()) for _ in range(3)]
    gate = hold(chain.ledger, where)
    block_tasks = send_all(chain.ledger, in_block)
    await gate.wait_reached()
    queued_tasks = send_all(chain.ledger, queued_after)
    await queued(chain.ledger, len(queued_after))
    lander = chain.ledger._lander
    assert lander is not None
    assert gate.blocks == [[tx.signature for tx in in_block]]

    lander.cancel()
    async with asyncio.timeout(30):  # no waiter may be left waiting for the dropped block
        outcomes = await asyncio.gather(*block_tasks, *queued_tasks, return_exceptions=True)

    assert all(isinstance(outcome, BlockAbandoned) for outcome in outcomes), outcomes
    assert lander.cancelled()
    block_ids = [tx.order_id for tx in in_block]
    queued_ids = [tx.order_id for tx in queued_after]
    committed = 1 if where == "after_commit" else 0
    assert await rows_per_order(chain.db, block_ids) == dict.fromkeys(block_ids, committed)
    assert await rows_per_order(chain.db, queued_ids) == dict.fromkeys(queued_ids, 0)
    before = {tx.signature: await chain.ledger.receipt(tx.signature) for tx in in_block}

    gate.release.set()
    resent = await asyncio.gather(*(chain.ledger.execute(tx) for tx in (*in_block, *queued_after)))

    assert {r.status for r in resent} == {"confirmed"}
    for tx, receipt in zip((*in_block, *queued_after), resent, strict=True):
        assert receipt.signature == tx.signature
        assert await chain.ledger.receipt(tx.signature) == receipt
        if before.get(tx.signature) is not None:
            assert receipt == before[tx.signature], "a resend answers with what landed"
    all_ids = block_ids + queued_ids
    assert await rows_per_order(chain.db, all_ids) == dict.fromkeys(all_ids, 1)


@pytest.fixture
async def other_router(database_url: str) -> AsyncIterator[Ledger]:
    """A second router's ledger: its own connection pool and block lander."""
    db = await open_pool(database_url, max_size=4)
    try:
        yield Ledger(db, Market(seed=SEED))
    finally:
        await db.close()


async def test_two_routers_sending_the_same_orders_land_each_once(
    chain: Chain, other_router: Ledger
) -> None:
    txs = [sol_to_usdc(uuid.uuid4()) for _ in range(30)]
    order_ids = [tx.order_id for tx in txs]

    ours, theirs = await asyncio.gather(
        asyncio.gather(*(chain.ledger.execute(tx) for tx in txs)),
        asyncio.gather(*(other_router.execute(tx) for tx in txs)),
    )

    assert ours == theirs
    assert {r.status for r in ours} == {"confirmed"}
    assert await rows_per_order(chain.db, order_ids) == dict.fromkeys(order_ids, 1)
    rows = await landed(chain.db, order_ids)
    assert {(signature, slot) for _, signature, slot in rows} == {
        (r.signature, r.slot) for r in ours
    }


async def lock_waiters(db: AsyncConnectionPool) -> int:
    async with db.connection() as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_block_that_loses_an_order_to_another_router_lands_the_rest(
    chain: Chain, other_router: Ledger, hold: HoldBlocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This router's block holds the pool locks with `shared` inserted, not yet committed;
    # the other router's block of `shared` and five more waits for the locks, then finds
    # `shared` taken: it rolls back and lands again without it.
    shared = sol_to_usdc(uuid.uuid4())
    rest = [sol_to_usdc(uuid.uuid4()) for _ in range(5)]
    gate = hold(chain.ledger, "inside_transaction")
    [ours] = send_all(chain.ledger, [shared])
    await gate.wait_reached()
    attempts: list[list[str]] = []
    land = other_router._land

    async def spied_land(
        conn: psycopg.AsyncConnection[Any], txs: list[Transaction]
    ) -> dict[str, Receipt]:
        attempts.append([tx.signature for tx in txs])
        return await land(conn, txs)

    monkeypatch.setattr(other_router, "_land", spied_land)
    theirs = send_all(other_router, [shared, *rest])
    for _ in range(1_000):
        if await lock_waiters(chain.db) >= 1:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the other router's block never waited for the pool locks")

    gate.release.set()
    async with asyncio.timeout(30):
        our_receipt = await ours
        their_receipts = await asyncio.gather(*theirs)

    assert our_receipt.status == "confirmed"
    assert their_receipts[0] == our_receipt
    assert {r.status for r in their_receipts[1:]} == {"confirmed"}
    order_ids = [shared.order_id, *(tx.order_id for tx in rest)]
    assert await rows_per_order(chain.db, order_ids) == dict.fromkeys(order_ids, 1)
    rows = await landed(chain.db, order_ids)
    assert {(signature, slot) for _, signature, slot in rows} == {
        (r.signature, r.slot) for r in their_receipts
    }
    assert our_receipt.slot < their_receipts[1].slot
    # It tried the whole block, rolled back, and landed the rest without `shared`.
    signatures = [tx.signature for tx in (shared, *rest)]
    assert attempts == [signatures, signatures[1:]]


async def test_an_order_landed_under_another_signature_cannot_land_again(
    chain: Chain, other_router: Ledger
) -> None:
    order_id = uuid.uuid4()
    tx = sol_to_usdc(order_id)
    elsewhere = dataclasses.replace(tx, signature=signature_for(order_id, SEED + 1))

    outcomes = await asyncio.gather(
        chain.ledger.execute(tx), other_router.execute(elsewhere), return_exceptions=True
    )

    receipts = [o for o in outcomes if isinstance(o, Receipt)]
    assert len(receipts) == 1, outcomes
    assert sum(isinstance(o, LandedElsewhere) for o in outcomes) == 1, outcomes
    rows = await landed(chain.db, [order_id])
    assert [(o, s) for o, s, _ in rows] == [(order_id, receipts[0].signature)]
    assert await chain.ledger.receipt(receipts[0].signature) == receipts[0]


@pytest.mark.parametrize("after_ms", [0.5 * i for i in range(1, 17)])
async def test_a_lander_cancelled_at_any_moment_leaves_each_order_landable_once(
    chain: Chain, after_ms: float
) -> None:
    # Not gated: the cancellation lands wherever the block happens to be (queued, in a
    # round trip, committing, answering). Whatever it hit, every waiter is answered, and
    # a resend answers with what landed, exactly once.
    txs = [sol_to_usdc(uuid.uuid4()) for _ in range(20)]
    order_ids = [tx.order_id for tx in txs]
    tasks = send_all(chain.ledger, txs)
    await asyncio.sleep(after_ms / 1000)
    lander = chain.ledger._lander
    assert lander is not None

    lander.cancel()
    async with asyncio.timeout(30):
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)

    assert all(isinstance(o, Receipt | BlockAbandoned) for o in outcomes), outcomes
    rows = await rows_per_order(chain.db, order_ids)
    assert set(rows.values()) <= {0, 1}
    for tx, outcome in zip(txs, outcomes, strict=True):
        if isinstance(outcome, Receipt):
            assert rows[tx.order_id] == 1
    async with asyncio.timeout(30):
        resent = await asyncio.gather(*(chain.ledger.execute(tx) for tx in txs))
    assert {r.status for r in resent} == {"confirmed"}
    for tx, outcome, receipt in zip(txs, outcomes, resent, strict=True):
        if isinstance(outcome, Receipt) or rows[tx.order_id] == 1:
            assert receipt == await chain.ledger.receipt(tx.signature)
        if isinstance(outcome, Receipt):
            assert receipt == outcome
    assert await rows_per_order(chain.db, order_ids) == dict.fromkeys(order_ids, 1)


async def test_a_lander_cancelled_before_it_starts_abandons_its_waiters(chain: Chain) -> None:
    txs = [sol_to_usdc(uuid.uuid4()) for _ in range(5)]
    tasks = send_all(chain.ledger, txs)
    await asyncio.sleep(0)  # the senders queued and created the lander; it has not run yet
    lander = chain.ledger._lander
    assert lander is not None
    try:
        lander.cancel()
        _, pending = await asyncio.wait(tasks, timeout=2)

        assert not pending, f"{len(pending)} senders still waiting for a lander that is gone"
        assert all(isinstance(t.exception(), BlockAbandoned) for t in tasks)
    finally:
        # Another send starts a new lander, which lands (and so answers) the stranded ones.
        await chain.ledger.execute(sol_to_usdc(uuid.uuid4()))
        async with asyncio.timeout(30):
            await asyncio.gather(*tasks, return_exceptions=True)
