"""The seeded market on the VM: every pair of `services.venues.market` as real pools.

`build_seeded_market` mirrors `Market(seed, pairs)` at slot 0: each pair gets a CPMM pool with
the model pool's reserves (the program's `initialize`) and a DLMM pair at the model pool's active
bin with the model's fee schedule, filled with `add_liquidity_by_weight` in the spec's liquidity
shape and the model's amounts. A liquidity-provider wallet, derived from the seed, funds and owns
everything. Same seed, same pools, same keys (the VM's own payer and mint authority aside).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from solders.keypair import Keypair

from services.chain.svm.vm import CpmmPoolKeys, DlmmFees, DlmmPoolKeys, SolanaVm
from services.venues.cpmm import CpmmPool
from services.venues.dlmm import DlmmPool, LiquidityShape
from services.venues.market import DEFAULT_PAIRS, Market, PairSpec
from services.venues.pool import Pair, Venue

LP_LAMPORTS = 10_000 * 10**9  # fees, rent of every account created, the CPMM creation fee


def shape_weights(shape: LiquidityShape, radius: int, active_id: int) -> dict[int, int]:
    """Each bin's weight (bin id -> u16) as `DlmmPool.from_mid` spreads depth: flat for spot,
    falling away from the active bin for curve, rising toward the edges for bid-ask."""
    if shape is LiquidityShape.SPOT:
        by_distance = [1] * (radius + 1)
    elif shape is LiquidityShape.CURVE:
        by_distance = [(radius + 1 - d) ** 2 for d in range(radius + 1)]
    else:
        by_distance = [d + 1 for d in range(radius + 1)]
    return {
        b: by_distance[abs(b - active_id)]
        for b in range(active_id - radius, active_id + radius + 1)
    }


@dataclass(frozen=True, slots=True)
class SeededMarket:
    """The pools built on the VM, by (base, quote) pair, and the wallet that funded them."""

    seed: int
    provider: Keypair
    cpmm: Mapping[Pair, CpmmPoolKeys]
    dlmm: Mapping[Pair, DlmmPoolKeys]
    model: Market  # the simulated market the pools mirror, at slot 0

    def keys(self, venue: Venue, pair: Pair) -> CpmmPoolKeys | DlmmPoolKeys:
        """The keys of one pool, by venue and pair."""
        return self.cpmm[pair] if venue is Venue.RAYDIUM else self.dlmm[pair]


def provider_wallet(seed: int) -> Keypair:
    """The liquidity provider of the seeded market: the same key for the same seed."""
    return Keypair.from_seed(hashlib.sha256(f"seeded-market:{seed}:provider".encode()).digest())


def build_seeded_market(
    vm: SolanaVm,
    seed: int = 42,
    pairs: Sequence[PairSpec] = DEFAULT_PAIRS,
) -> SeededMarket:
    """Create every pair's CPMM pool and DLMM pair on the VM, mirroring `Market(seed, pairs)`.

    The DLMM pairs trade at once, the CPMM pools one second after creation (the program's
    rule): move the clock on before swapping. A later open time is not offered here yet: a DLMM
    launch pair takes only one-sided deposits before it opens, and these two-sided deposits
    would have to be split per side first (see `SolanaVm.create_dlmm_pair`).
    """
    model = Market(seed, pairs)
    provider = provider_wallet(seed)
    vm.new_wallet(LP_LAMPORTS, keypair=provider)
    cpmm: dict[Pair, CpmmPoolKeys] = {}
    dlmm: dict[Pair, DlmmPoolKeys] = {}
    for spec in pairs:
        base, quote = vm.mint_of(spec.base), vm.mint_of(spec.quote)
        pool = model.pools[(Venue.RAYDIUM, spec.pair)]
        assert isinstance(pool, CpmmPool)
        cpmm[spec.pair] = vm.create_cpmm_pool(
            base,
            quote,
            pool.reserve_base,
            pool.reserve_quote,
            creator_wallet=provider,
        )
        bins = model.pools[(Venue.METEORA, spec.pair)]
        assert isinstance(bins, DlmmPool)
        amount_x, amount_y = sum(bins.reserves_x), sum(bins.reserves_y)
        vm.fund(provider.pubkey(), base, amount_x)
        vm.fund(provider.pubkey(), quote, amount_y)
        fees = DlmmFees(
            base_factor=bins.base_factor,
            filter_period=bins.filter_period,
            decay_period=bins.decay_period,
            reduction_factor=bins.reduction_factor,
            variable_fee_control=bins.variable_fee_control,
            max_volatility_accumulator=bins.max_volatility_accumulator,
        )
        keys = vm.create_dlmm_pair(
            base,
            quote,
            active_id=bins.active_id,
            bin_step=bins.bin_step,
            fees=fees,
            creator=provider,
        )
        weights = shape_weights(spec.shape, spec.radius, bins.active_id)
        dlmm[spec.pair] = vm.add_dlmm_liquidity(keys, provider, weights, amount_x, amount_y)
    return SeededMarket(seed, provider, MappingProxyType(cpmm), MappingProxyType(dlmm), model)
