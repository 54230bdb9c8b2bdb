"""The chain's genesis: a `SolanaVm` rebuilt identically from a seed on every start.

A restarted node replays nothing from genesis: it rebuilds this state and then lays every
persisted block's accounts over it. That only works if genesis is a pure function of the seed,
so every key it uses (the mint authority, the pool creator, the funded wallets) is derived from
the seed rather than drawn at random, and the pools are the Raydium pools of the seeded
`Market`, created with the CPMM program's own `initialize`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from solders.account import Account
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from services.chain.svm.constants import NATIVE_MINT, SYSTEM_PROGRAM_ID
from services.chain.svm.vm import CpmmPoolKeys, SolanaVm
from services.domain.tokens import TOKENS
from services.venues.cpmm import CpmmPool
from services.venues.market import DEFAULT_PAIRS, Market
from services.venues.pool import Pair, Venue

GENESIS_UNIX_TIMESTAMP = 1_750_000_000  # the VM's clock at slot 0; slots move it on
WALLET_LAMPORTS = 1_000 * 10**9  # SOL for fees and rent in each funded wallet
WALLET_VALUE_USDC = Decimal(1_000_000)  # each funded wallet holds about this much of each token
PAYER_LAMPORTS = 10**14  # what SolanaVm gives its payer


def derived_keypair(seed: int, label: str) -> Keypair:
    """A keypair that is a function of the seed and a label: the same on every start."""
    return Keypair.from_seed(hashlib.sha256(f"oee-chain:{seed}:{label}".encode()).digest())


def wallet_keypair(seed: int, index: int) -> Keypair:
    """The `index`-th wallet genesis funds; the engine and tests sign with these."""
    return derived_keypair(seed, f"wallet:{index}")


@dataclass(frozen=True, slots=True)
class Genesis:
    """What the chain starts from: the seed, and how many wallets it funds."""

    seed: int = 42
    wallets: int = 8
    unix_timestamp: int = GENESIS_UNIX_TIMESTAMP


@dataclass(frozen=True, slots=True)
class GenesisState:
    """The booted VM and what genesis put in it."""

    vm: SolanaVm
    pools: dict[Pair, CpmmPoolKeys]
    wallets: list[Keypair]


def _usdc_mids() -> dict[str, Decimal]:
    mids = {"USDC": Decimal(1)}
    for spec in DEFAULT_PAIRS:
        if spec.quote == "USDC":
            mids[spec.base] = spec.mid
    return mids


def _rekey(vm: SolanaVm, seed: int) -> None:
    """Replace SolanaVm's random mint authority and payer with keys derived from the seed.

    SolanaVm draws both at random (right for tests that want fresh state); a node that must
    rebuild byte-identical mints and pools needs them fixed. Done from outside so `vm.py` keeps
    its constructor; it would become a constructor argument once that file settles.
    """
    old_payer = vm.payer.pubkey()
    vm.svm.set_account(old_payer, Account(0, b"", SYSTEM_PROGRAM_ID, False))
    vm.payer = derived_keypair(seed, "payer")
    vm.mint_authority = derived_keypair(seed, "mint-authority")
    vm.svm.set_account(vm.payer.pubkey(), Account(PAYER_LAMPORTS, b"", SYSTEM_PROGRAM_ID, False))
    for token in TOKENS.values():
        mint = Pubkey.from_string(token.mint)
        authority = None if mint == NATIVE_MINT else vm.mint_authority.pubkey()
        vm._put_mint(mint, token.decimals, authority)


def build_genesis(genesis: Genesis) -> GenesisState:
    """Boot the VM, create the seeded market's CPMM pools, fund the wallets."""
    vm = SolanaVm(unix_timestamp=genesis.unix_timestamp)
    _rekey(vm, genesis.seed)
    market = Market(genesis.seed)
    # Pools open one second after `initialize`: created a little before slot 0, they are open
    # from the first slot on.
    vm.set_time(genesis.unix_timestamp - 10)
    pools: dict[Pair, CpmmPoolKeys] = {}
    for (venue, pair), pool in sorted(market.pools.items(), key=lambda item: item[0][1]):
        if venue is not Venue.RAYDIUM or not isinstance(pool, CpmmPool):
            continue
        base, quote = pair
        pools[pair] = vm.create_cpmm_pool(
            vm.mint_of(base), vm.mint_of(quote), pool.reserve_base, pool.reserve_quote
        )
    vm.set_time(genesis.unix_timestamp)
    mids = _usdc_mids()
    wallets = [wallet_keypair(genesis.seed, i) for i in range(genesis.wallets)]
    for wallet in wallets:
        owner = wallet.pubkey()
        vm.svm.set_account(owner, Account(WALLET_LAMPORTS, b"", SYSTEM_PROGRAM_ID, False))
        for symbol, token in TOKENS.items():
            whole = (WALLET_VALUE_USDC / mids[symbol]).to_integral_value(ROUND_CEILING)
            vm.fund(owner, Pubkey.from_string(token.mint), int(whole) * 10**token.decimals)
    return GenesisState(vm, pools, wallets)
