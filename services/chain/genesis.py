"""The chain's genesis: a `SolanaVm` rebuilt identically from a seed on every start.

A restarted node replays nothing from genesis: it rebuilds this state and then lays every
persisted block's accounts over it. That only works if genesis is a pure function of the seed,
so every key it uses (the mint authority, the pool creator, the funded wallets) is derived from
the seed rather than drawn at random, and the market is the seeded `Market` on both venues,
built by `svm.seeded.build_seeded_market` with the programs' own instructions: a Raydium CPMM
pool and a Meteora DLMM pair per pair.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from solders.account import Account
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from services.chain.svm.constants import SYSTEM_PROGRAM_ID
from services.chain.svm.seeded import SeededMarket, build_seeded_market
from services.chain.svm.vm import CpmmPoolKeys, DlmmPoolKeys, SolanaVm
from services.domain.tokens import TOKENS
from services.venues.market import DEFAULT_PAIRS
from services.venues.pool import Pair

GENESIS_UNIX_TIMESTAMP = 1_750_000_000  # the VM's clock at slot 0; slots move it on
WALLET_LAMPORTS = 1_000 * 10**9  # SOL for fees and rent in each funded wallet
WALLET_VALUE_USDC = Decimal(1_000_000)  # each funded wallet holds about this much of each token
# The market process's background maker (wallet 1 unless OEE_MARKET_MAKER_WALLET says otherwise)
# trades every pool toward the walk and carries admin moves. $1M of a token bought only ~1.5 % on
# SOL-USDC's DLMM pair (its bins near the mid hold more than that) and the move stalled on
# "insufficient funds"; $20M of each token is ten times the deepest pool's side, enough for a
# ±10 % move on every pair with room for the walk's drift around it.
MAKER_VALUE_USDC = Decimal(20_000_000)
DEFAULT_MAKER_WALLET = 1
# The engine signs with wallet 0 (`OEE_WALLET_KEYPAIR` unset). $1M of each token ran out of SOL
# half way through the load bench (its mix sells about $2.6M of SOL in 30 s at 150 orders/s), so
# its orders failed INSUFFICIENT_FUNDS for a reason that is the bench's, not the engine's.
ENGINE_WALLET = 0
ENGINE_VALUE_USDC = Decimal(10_000_000)


def derived_keypair(seed: int, label: str) -> Keypair:
    """A keypair that is a function of the seed and a label: the same on every start."""
    return Keypair.from_seed(hashlib.sha256(f"oee-chain:{seed}:{label}".encode()).digest())


def wallet_keypair(seed: int, index: int) -> Keypair:
    """The `index`-th wallet genesis funds; the engine and tests sign with these."""
    return derived_keypair(seed, f"wallet:{index}")


@dataclass(frozen=True, slots=True)
class Genesis:
    """What the chain starts from: the seed, how many wallets it funds, and which of them is
    the market maker's (funded more)."""

    seed: int = 42
    wallets: int = 8
    unix_timestamp: int = GENESIS_UNIX_TIMESTAMP
    maker_wallet: int | None = DEFAULT_MAKER_WALLET  # funded with MAKER_VALUE_USDC, if it exists
    engine_wallet: int | None = ENGINE_WALLET  # funded with ENGINE_VALUE_USDC, if it exists


@dataclass(frozen=True, slots=True)
class GenesisState:
    """The booted VM and what genesis put in it."""

    vm: SolanaVm
    market: SeededMarket
    wallets: list[Keypair]

    @property
    def pools(self) -> Mapping[Pair, CpmmPoolKeys]:
        """The CPMM pools, by (base, quote) pair."""
        return self.market.cpmm

    @property
    def pairs(self) -> Mapping[Pair, DlmmPoolKeys]:
        """The DLMM pairs, by (base, quote) pair."""
        return self.market.dlmm


def _usdc_mids() -> dict[str, Decimal]:
    mids = {"USDC": Decimal(1)}
    for spec in DEFAULT_PAIRS:
        if spec.quote == "USDC":
            mids[spec.base] = spec.mid
    return mids


def _wallet_value(genesis: Genesis, index: int) -> Decimal:
    """About how much of each token (in USDC) genesis gives wallet `index`."""
    if index == genesis.maker_wallet:
        return MAKER_VALUE_USDC
    if index == genesis.engine_wallet:
        return ENGINE_VALUE_USDC
    return WALLET_VALUE_USDC


def build_genesis(genesis: Genesis) -> GenesisState:
    """Boot the VM, build the seeded market on both venues, fund the wallets."""
    vm = SolanaVm(
        unix_timestamp=genesis.unix_timestamp,
        mint_authority=derived_keypair(genesis.seed, "mint-authority"),
        payer=derived_keypair(genesis.seed, "payer"),
    )
    # CPMM pools open one second after `initialize`: built a little before slot 0, every pool
    # (and every DLMM pair, which trades at once) is open from the first slot on.
    vm.set_time(genesis.unix_timestamp - 10)
    market = build_seeded_market(vm, genesis.seed)
    vm.set_time(genesis.unix_timestamp)
    mids = _usdc_mids()
    wallets = [wallet_keypair(genesis.seed, i) for i in range(genesis.wallets)]
    for index, wallet in enumerate(wallets):
        owner = wallet.pubkey()
        vm.svm.set_account(owner, Account(WALLET_LAMPORTS, b"", SYSTEM_PROGRAM_ID, False))
        value = _wallet_value(genesis, index)
        for symbol, token in TOKENS.items():
            whole = (value / mids[symbol]).to_integral_value(ROUND_CEILING)
            vm.fund(owner, Pubkey.from_string(token.mint), int(whole) * 10**token.decimals)
    return GenesisState(vm, market, wallets)
