"""Quotes from the programs' accounts over JSON-RPC, executed on the node to the base unit.

A node runs the seeded market on both venues (genesis). The engine finds the pools as an
aggregator does (`getProgramAccounts`), quotes with `quote_order` over the RPC adapters, and a
genesis wallet sends the route's swaps as one transaction: what it receives is exactly the
quote's `route.amount_out`, since nothing else trades in between. Each leg's minimum out is its
quoted amount, so a quote one unit too high would fail the transaction instead.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import base58
import pytest
from solana.rpc.commitment import Confirmed
from solana.rpc.models import MemcmpOpts, TxOpts
from solders.compute_budget import set_compute_unit_limit
from solders.keypair import Keypair
from solders.message import Message
from solders.transaction import Transaction

from bench.polling import eventually
from infra.kafka.launcher import free_port
from services.chain.genesis import Genesis, build_genesis, wallet_keypair
from services.chain.rpc_venues import RpcPoolSource, rpc_venues, swap_legs
from services.chain.solana_client import AsyncClientRpc, SolanaChain, guarded_legs
from services.chain.svm.constants import CPMM_PROGRAM_ID
from services.chain.svm.vm import DEFAULT_COMPUTE_UNITS
from services.chain.transactions import SwapInstruction
from services.chain.transactions import Transaction as SwapTransaction
from services.domain.tokens import get_token
from services.pricing.accounts.cpmm import POOL_STATE_LEN
from services.pricing.accounts.pools import CPMM_POOL_STATE_DISCRIMINATOR, DlmmBinPool
from services.pricing.ports import ChainUnreachable
from services.pricing.quote import Quote, quote_order
from services.pricing.routing import RouteKind
from services.venues.cpmm import CpmmPool
from services.venues.market import DEFAULT_PAIRS
from services.venues.pool import Venue
from tests.integration.test_chain_rpc import (  # the node fixtures, shared
    BUILDER,
    SEED,
    Running,
    chain_db,  # noqa: F401 - a fixture
    running_node,
    token_balance,
    wait_landed,
)

MAX_AGE = 0.1
SPLIT_THRESHOLD_BPS = Decimal(1)
SLIPPAGE = Decimal("0.01")


@pytest.fixture
async def node(chain_db: str) -> AsyncIterator[Running]:  # noqa: F811 - the fixture above
    async with running_node(chain_db) as running:
        yield running


@pytest.fixture
async def source(node: Running) -> AsyncIterator[RpcPoolSource]:
    pools = RpcPoolSource(node.url, max_age=MAX_AGE)
    yield pools
    await pools.close()


async def quote(source: RpcPoolSource, token_in: str, token_out: str, amount: str) -> Quote:
    return await quote_order(
        rpc_venues(source),
        token_in,
        token_out,
        Decimal(amount),
        SLIPPAGE,
        split_threshold_bps=SPLIT_THRESHOLD_BPS,
    )


async def execute(node: Running, source: RpcPoolSource, wallet: Keypair, q: Quote) -> int:
    """Send the route's swaps in one transaction; what the wallet received of the output."""
    registry = await source.registry()
    owner = wallet.pubkey()
    mint_out = BUILDER.mint_of(q.route.token_out)
    before = await token_balance(node.client, owner, mint_out)
    ixs = [BUILDER.swap_ix(owner, leg) for leg in swap_legs(q.route, registry)]
    blockhash = (await node.client.get_latest_blockhash()).value.blockhash
    message = Message.new_with_blockhash(
        [set_compute_unit_limit(DEFAULT_COMPUTE_UNITS), *ixs], owner, blockhash
    )
    raw = bytes(Transaction([wallet], message, blockhash))
    sent = await node.client.send_raw_transaction(raw, TxOpts(preflight_commitment=Confirmed))
    status = await wait_landed(node.client, str(sent.value))
    assert status.err is None
    await asyncio.sleep(MAX_AGE * 1.5)  # the next quote reads the chain after this swap
    return await token_balance(node.client, owner, mint_out) - before


async def test_quotes_over_rpc_are_what_the_chain_pays(node: Running, source: RpcPoolSource):
    began = time.perf_counter()
    registry = await source.discover()
    discovery = time.perf_counter() - began
    pairs = {spec.pair for spec in DEFAULT_PAIRS}
    market = build_genesis(Genesis(seed=SEED, wallets=0)).market  # the node's, built here
    assert {registry.cpmm_for(*p).address for p in pairs} == {k.pool for k in market.cpmm.values()}
    assert {registry.dlmm_for(*p).address for p in pairs} == {
        k.lb_pair for k in market.dlmm.values()
    }

    began = time.perf_counter()
    snapshot = await source.snapshot()
    reload = time.perf_counter() - began
    assert snapshot.slot > 0
    assert set(snapshot.pools) == {(v, p) for v in Venue for p in pairs}
    assert isinstance(snapshot.pools[(Venue.RAYDIUM, ("SOL", "USDC"))], CpmmPool)
    assert isinstance(snapshot.pools[(Venue.METEORA, ("SOL", "USDC"))], DlmmBinPool)

    wallet = wallet_keypair(SEED, 0)
    orders = [
        ("SOL", "USDC", "1", None),
        ("USDC", "SOL", "1000", None),
        ("SOL", "USDC", "2000", RouteKind.SPLIT),
        ("JUP", "SOL", "5000", RouteKind.MULTIHOP),
    ]
    timings = []
    for token_in, token_out, amount, kind in orders:
        began = time.perf_counter()
        q = await quote(source, token_in, token_out, amount)
        timings.append(time.perf_counter() - began)
        if kind is not None:
            assert q.route.kind is kind, q.reason
        assert q.plan.market_slot > 0
        received = await execute(node, source, wallet, q)
        assert received == q.route.amount_out, (token_in, token_out, amount, q.route.legs)
        assert q.plan.amount_out * 10 ** get_token(token_out).decimals == received

    # a reload and a quote: each snapshot read after the cache expired, then quotes from it
    reloads, warm = [], []
    for _ in range(5):
        await asyncio.sleep(MAX_AGE * 1.5)
        began = time.perf_counter()
        await source.snapshot()
        reloads.append(time.perf_counter() - began)
        began = time.perf_counter()
        await quote(source, "SOL", "USDC", "2000")  # a split: the costliest search
        warm.append(time.perf_counter() - began)
    print(
        f"\ndiscovery {discovery * 1000:.1f} ms, first snapshot {reload * 1000:.1f} ms"
        f" ({len(registry.addresses())} accounts), reloads"
        f" {', '.join(f'{t * 1000:.1f}' for t in reloads)} ms, quotes from a fresh snapshot"
        f" {', '.join(f'{t * 1000:.2f}' for t in warm)} ms, the orders' quotes (reload"
        f" included) {', '.join(f'{t * 1000:.1f}' for t in timings)} ms"
    )


async def next_block(source: RpcPoolSource, after: int) -> None:
    """Until the node has landed a block past slot `after`."""

    async def past() -> bool:
        return await source.slot() > after

    await eventually(past, f"a block after slot {after}", timeout=10, interval=0.02)


async def test_waiting_quotes_share_one_reload(source: RpcPoolSource):
    first = await source.snapshot()
    await asyncio.sleep(MAX_AGE * 1.5)
    await next_block(source, first.slot)  # expired, and a block since: it is read again
    before = source.reloads
    quotes = await asyncio.gather(*(quote(source, "SOL", "USDC", "1") for _ in range(20)))
    assert source.reloads == before + 1
    assert len({q.route.amount_out for q in quotes}) == 1


async def test_a_snapshot_is_not_read_again_while_the_chain_stays_at_its_slot(
    chain_db: str,  # noqa: F811 - the fixture above
):
    # Slots longer than the snapshot's age, as on the bench's chain (400 ms vs 100 ms).
    async with running_node(chain_db, slot_ms=1_000) as slow:
        source = RpcPoolSource(slow.url, max_age=MAX_AGE)
        try:
            await next_block(source, (await source.snapshot()).slot)
            first = await source.snapshot()  # just after a block: the next one is a slot away
            before = source.reloads
            await asyncio.sleep(MAX_AGE * 1.5)  # expired, but no block since

            again = await source.snapshot()

            assert again.slot == first.slot, "a block landed within 150 ms of 1 s slots"
            assert again is first
            assert source.reloads == before
            await next_block(source, first.slot)
            assert (await source.snapshot()).slot > first.slot
            assert source.reloads == before + 1
        finally:
            await source.close()


async def test_get_program_accounts_filters_as_solana_does(node: Running):
    """The `solana` client's own filters: size and memcmp (base58) must both hold."""
    found = await node.client.get_program_accounts(
        CPMM_PROGRAM_ID,
        encoding="base64",
        filters=[
            POOL_STATE_LEN,
            MemcmpOpts(offset=0, bytes=base58.b58encode(CPMM_POOL_STATE_DISCRIMINATOR).decode()),
        ],
    )
    assert len(found.value) == len(DEFAULT_PAIRS)
    assert all(len(bytes(item.account.data)) == POOL_STATE_LEN for item in found.value)
    none = await node.client.get_program_accounts(
        CPMM_PROGRAM_ID,
        encoding="base64",
        filters=[POOL_STATE_LEN, MemcmpOpts(offset=0, bytes=base58.b58encode(bytes(8)).decode())],
    )
    assert none.value == []


async def test_an_unreachable_node_is_chain_unreachable():
    source = RpcPoolSource(f"http://127.0.0.1:{free_port()}", max_age=MAX_AGE, timeout=2)
    try:
        with pytest.raises(ChainUnreachable):
            await quote(source, "SOL", "USDC", "1")
    finally:
        await source.close()


async def test_a_two_hop_lands_though_its_first_pool_moved_against_it(
    node: Running, source: RpcPoolSource
) -> None:
    """Issue 16: the first hop has its share of the allowance and the second spends the first's
    minimum, so a first pool moved against the order (by less than that share) no longer fails
    the transaction; the order still gets at least its min-out, and the first hop's surplus
    stays in the wallet as USDC dust."""
    engine, mover = wallet_keypair(SEED, 0), wallet_keypair(SEED, 1)

    async def on_raydium(token_out: str, amount: str) -> Quote:
        # CPMM: any trade moves its price (a DLMM pair's deep active bin absorbs small ones)
        return await quote_order(
            rpc_venues(source),
            "JUP",
            token_out,
            Decimal(amount),
            SLIPPAGE,
            split_threshold_bps=SPLIT_THRESHOLD_BPS,
            allowed=(Venue.RAYDIUM,),
        )

    order = await on_raydium("SOL", "5000")
    assert order.route.kind is RouteKind.MULTIHOP, order.reason
    first_quoted = sum(leg.amount_out for leg in order.route.legs if leg.token_in == "JUP")
    # Another wallet sells JUP first: the order's first pool now pays less than it quoted,
    # by less than the first hop's allowance (1 - sqrt(0.99), about 0.5 %).
    await execute(node, source, mover, await on_raydium("USDC", "1000"))
    again = await on_raydium("USDC", "5000")
    assert first_quoted * (1 - SLIPPAGE).sqrt() < again.route.amount_out < first_quoted

    tx = SwapTransaction(
        signature="",
        order_id=uuid.uuid4(),
        token_in="JUP",
        token_out="SOL",
        amount_in=order.route.amount_in,
        min_amount_out=order.route.min_amount_out,
        instructions=tuple(
            SwapInstruction(
                leg.venue,
                leg.token_in,
                leg.token_out,
                leg.amount_in,
                0 if leg.token_in == "JUP" else 1,
                leg.amount_out,
                leg.fee,
            )
            for leg in order.route.legs
        ),
    )
    rpc = AsyncClientRpc(node.url)
    chain = SolanaChain(rpc, engine, pools=source, poll_seconds=0.02)
    usdc = BUILDER.mint_of("USDC")
    usdc_before = await token_balance(node.client, engine.pubkey(), usdc)
    try:
        receipt = await chain.send_and_confirm(await chain.sign(tx), 1)
    finally:
        await rpc.close()
    dust = await token_balance(node.client, engine.pubkey(), usdc) - usdc_before

    assert receipt.status == "confirmed", receipt.error
    assert receipt.amount_in == order.route.amount_in
    assert order.route.min_amount_out <= receipt.amount_out < order.route.amount_out
    second_spent = sum(g.amount_in for leg, g in guarded_legs(tx) if leg.hop == 1)
    assert second_spent + dust < first_quoted  # the first hop paid less than quoted ...
    assert 0 <= dust <= first_quoted - second_spent  # ... and its surplus is the dust
