"""The simulated chain on real PostgreSQL: genesis, landing once, slippage, hops, RPC faults.

The chain tables are shared by the whole session and trades move the shared pools,
so every test trades small amounts under fresh order ids and asserts facts relative
to its own before/after snapshots, never absolute reserves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from psycopg_pool import AsyncConnectionPool

from services.chain.client import ChainUnavailable, ConfirmationTimeout, SimulatedRpc, fault_draw
from services.chain.ledger import Ledger, PoolBook, Receipt, SwapInstruction, Transaction
from services.chain.signatures import signature_for
from services.common.db import open_pool
from services.router.quoting import quote_order
from services.venues.adapters import SimulatedVenue, SnapshotCache
from services.venues.market import Market, arbitrage
from services.venues.pool import Pair, Venue

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
