"""Pools decoded from the programs' accounts behave as `Pool`s and quote what the VM pays.

The registry is built the way the RPC adapter builds it (program accounts listed, filtered to
the engine's tokens), but straight from a `SolanaVm`: no node. Routes planned over the decoded
book are then executed on the VM as one transaction, and must pay exactly what they quoted.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.chain.rpc_venues import dlmm_keys, swap_legs
from services.chain.svm.book import book_of, registry_of
from services.chain.svm.seeded import SeededMarket, build_seeded_market
from services.chain.svm.vm import DlmmSwap, SolanaVm
from services.domain.tokens import get_token
from services.pricing.accounts.dlmm import (
    DlmmQuoteError,
    decode_bin_array,
    decode_lb_pair,
    quote_exact_in,
)
from services.pricing.accounts.pools import (
    DlmmBinPool,
    PoolRegistry,
)
from services.pricing.accounts.spl import decode_token_amount
from services.pricing.routing import RouteKind, plan_route
from services.venues.cpmm import CpmmPool
from services.venues.market import DEFAULT_PAIRS
from services.venues.pool import InsufficientLiquidityError, SwapError, Venue

PAIRS = [spec.pair for spec in DEFAULT_PAIRS]


@pytest.fixture
def chain() -> tuple[SolanaVm, SeededMarket, PoolRegistry]:
    vm = SolanaVm()
    market = build_seeded_market(vm, seed=42)
    vm.set_time(vm.now + 1)  # CPMM pools open one second after creation
    return vm, market, registry_of(vm)


def test_the_registry_finds_both_venues_for_every_pair(chain):
    vm, market, registry = chain
    assert {(c.symbol_0, c.symbol_1) for c in registry.cpmm} == {
        tuple(sorted(p, key=lambda s: bytes(vm.mint_of(s)))) for p in PAIRS
    }
    assert {registry.dlmm_for(*p).address for p in PAIRS} == {
        k.lb_pair for k in market.dlmm.values()
    }
    assert {registry.cpmm_for(*p).address for p in PAIRS} == {k.pool for k in market.cpmm.values()}
    for pair in PAIRS:
        assert dlmm_keys(registry.dlmm_for(*pair)) == market.dlmm[pair]
    book = book_of(vm, registry)
    assert set(book) == {(v, p) for v in Venue for p in PAIRS}
    assert all(isinstance(book[(Venue.RAYDIUM, p)], CpmmPool) for p in PAIRS)
    assert all(isinstance(book[(Venue.METEORA, p)], DlmmBinPool) for p in PAIRS)


@pytest.mark.parametrize("pair", PAIRS)
def test_dlmm_pool_is_the_programs_quote(chain, pair):
    vm, market, registry = chain
    pool = book_of(vm, registry)[(Venue.METEORA, pair)]
    assert isinstance(pool, DlmmBinPool)
    keys = market.dlmm[pair]
    lb = decode_lb_pair(vm.account_data(keys.lb_pair))
    arrays = {i: decode_bin_array(vm.account_data(k)) for i, k in keys.bin_arrays}
    assert pool.venue is Venue.METEORA
    assert pool.tokens == pair
    for token_in, swap_for_y in ((pair[0], True), (pair[1], False)):
        for whole in (1, 100, 10_000):
            amount = whole * 10 ** get_token(token_in).decimals
            try:
                expected = quote_exact_in(lb, arrays, amount, swap_for_y=swap_for_y, now=vm.now)
            except DlmmQuoteError:  # deeper than the pair: the Pool says so as routing expects
                with pytest.raises(InsufficientLiquidityError):
                    pool.swap(token_in, amount)
                continue
            assert pool.amount_out(token_in, amount, now=0) == expected.amount_out
            result = pool.swap(token_in, amount, now=0)
            assert (result.amount_out, result.fee) == (expected.amount_out, expected.fee)
            assert 0 <= result.price_impact < 1
    # the mid is the active bin's price, quoted both ways round
    assert pool.mid_price(pair[0]) * pool.mid_price(pair[1]) == pytest.approx(Decimal(1))
    with pytest.raises(SwapError):
        pool.amount_out("NOPE", 1)
    with pytest.raises(SwapError):
        pool.amount_out(pair[0], 0)


def test_dlmm_pool_runs_dry_as_insufficient_liquidity(chain):
    vm, _, registry = chain
    pool = book_of(vm, registry)[(Venue.METEORA, ("SOL", "USDC"))]
    with pytest.raises(InsufficientLiquidityError):
        pool.amount_out("SOL", 10**9 * 10**9, now=0)


def test_dlmm_pool_after_is_the_state_the_program_leaves(chain):
    """Sell 3,000 SOL across a dozen bins, then buy half the USDC back: the pool value left by
    `swap` holds the same pair, bins and vaults as the VM, and quotes the next swap exactly."""
    vm, market, registry = chain
    keys = market.dlmm[("SOL", "USDC")]
    sol, usdc = vm.mint_of("SOL"), vm.mint_of("USDC")
    wallet = vm.new_wallet()
    vm.fund(wallet.pubkey(), sol, 3_000 * 10**9)
    pool = book_of(vm, registry)[(Venue.METEORA, ("SOL", "USDC"))]
    first = pool.swap("SOL", 3_000 * 10**9, now=0)
    vm.execute_swaps(wallet, [DlmmSwap(keys, sol, 3_000 * 10**9, first.amount_out)])
    after = first.pool_after
    assert isinstance(after, DlmmBinPool)
    on_chain = book_of(vm, registry)[(Venue.METEORA, ("SOL", "USDC"))]
    assert isinstance(on_chain, DlmmBinPool)
    assert after.pair == on_chain.pair
    assert dict(after.bin_arrays) == dict(on_chain.bin_arrays)
    assert (after.reserve_x, after.reserve_y) == (
        decode_token_amount(vm.account_data(keys.reserve_x)),
        decode_token_amount(vm.account_data(keys.reserve_y)),
    )
    back = first.amount_out // 2
    second = after.amount_out("USDC", back)
    before = vm.balance(wallet.pubkey(), sol)
    vm.execute_swaps(wallet, [DlmmSwap(keys, usdc, back, second)])
    assert vm.balance(wallet.pubkey(), sol) - before == second


ORDERS = [
    ("SOL", "USDC", 1, RouteKind.SINGLE),
    ("USDC", "SOL", 1_000, RouteKind.SINGLE),
    ("SOL", "USDC", 2_000, RouteKind.SPLIT),
    ("USDC", "SOL", 300_000, RouteKind.SPLIT),
    ("JUP", "SOL", 5_000, RouteKind.MULTIHOP),
]


@pytest.mark.parametrize(("token_in", "token_out", "whole", "kind"), ORDERS)
def test_a_route_over_decoded_pools_pays_what_the_vm_pays(chain, token_in, token_out, whole, kind):
    vm, _, registry = chain
    amount = whole * 10 ** get_token(token_in).decimals
    route = plan_route(
        book_of(vm, registry),
        token_in,
        token_out,
        amount,
        slippage=Decimal("0.01"),
        split_threshold_bps=Decimal(1),
        now=0,
    )
    assert route.kind is kind
    wallet = vm.new_wallet()
    mint_in, mint_out = vm.mint_of(token_in), vm.mint_of(token_out)
    vm.fund(wallet.pubkey(), mint_in, amount)
    # every leg's quoted amount is its minimum out: one unit short and the transaction fails
    vm.execute_swaps(wallet, swap_legs(route, registry))
    assert vm.balance(wallet.pubkey(), mint_out) == route.amount_out
    assert vm.balance(wallet.pubkey(), mint_in) == 0
    if kind is RouteKind.MULTIHOP:
        assert vm.balance(wallet.pubkey(), vm.mint_of("USDC")) == 0
