"""The chain as a Solana VM: LiteSVM running the real Raydium CPMM and Meteora DLMM programs.

Mints sit at their mainnet addresses with their decimals, pools are created with the programs'
own instructions (CPMM `initialize`; DLMM `initialize_lb_pair` or the launch pair, bin arrays,
positions, `add_liquidity_by_weight`) or loaded from mainnet snapshots (DLMM), and swaps are real
transactions: one or more swap instructions after a compute-budget instruction, each with its
own minimum out. Nothing here prices anything; quotes come from `services.pricing.accounts`,
which decodes the same accounts the programs read.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from solders.account import Account
from solders.clock import Clock
from solders.compute_budget import set_compute_unit_limit
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata

from services.chain.svm.constants import (
    ACCOUNTS,
    ATA_PROGRAM_ID,
    CPMM_AMM_CONFIG,
    CPMM_CREATE_POOL_FEE,
    CPMM_PROGRAM_ID,
    DLMM_BIN_ARRAY_BITMAP_RANGE,
    DLMM_BINS_PER_POSITION,
    DLMM_ILM_BASE_KEY,
    DLMM_MAX_BIN_ID_PER_BIN_STEP,
    DLMM_PROGRAM_ID,
    MINT_RENT,
    NATIVE_MINT,
    PROGRAMS,
    RENT_SYSVAR_ID,
    SYSTEM_PROGRAM_ID,
    TOKEN_2022_PROGRAM_ID,
    TOKEN_ACCOUNT_RENT,
    TOKEN_PROGRAM_ID,
)
from services.chain.svm.errors import map_error
from services.domain.tokens import TOKENS
from services.pricing.accounts.dlmm import (
    ONE,
    LbPair,
    bin_array_index,
    decode_bin_array,
    decode_lb_pair,
    price_from_id,
)
from services.pricing.accounts.spl import decode_token_amount

DEFAULT_COMPUTE_UNITS = 1_400_000  # the per-transaction maximum: splits and hops share it
_SWAP_BASE_INPUT = hashlib.sha256(b"global:swap_base_input").digest()[:8]
_INITIALIZE = hashlib.sha256(b"global:initialize").digest()[:8]
_DLMM_SWAP = hashlib.sha256(b"global:swap").digest()[:8]


def _anchor(name: str) -> bytes:
    """An Anchor instruction's discriminator: the first 8 bytes of sha256("global:<name>")."""
    return hashlib.sha256(f"global:{name}".encode()).digest()[:8]


_INITIALIZE_LB_PAIR = _anchor("initialize_lb_pair")
_INITIALIZE_LAUNCH_PAIR = _anchor("initialize_customizable_permissionless_lb_pair")
_INITIALIZE_BIN_ARRAY = _anchor("initialize_bin_array")
_INITIALIZE_POSITION = _anchor("initialize_position")
_ADD_LIQUIDITY_BY_WEIGHT = _anchor("add_liquidity_by_weight")
# An account's discriminator is sha256("account:<Name>")[:8]; the IDL lists PresetParameter's.
_PRESET_PARAMETER_ACCOUNT = hashlib.sha256(b"account:PresetParameter").digest()[:8]
_ACTIVATION_BY_TIMESTAMP = 1  # the IDL's ActivationType: 0 slot, 1 unix time


def _dlmm_pda(*seeds: bytes) -> Pubkey:
    return Pubkey.find_program_address(list(seeds), DLMM_PROGRAM_ID)[0]


DLMM_EVENT_AUTHORITY = _dlmm_pda(b"__event_authority")


def dlmm_bin_array_address(lb_pair: Pubkey, index: int) -> Pubkey:
    """The bin array PDA holding bins `index * 70 ..`, as the program derives it."""
    return _dlmm_pda(b"bin_array", bytes(lb_pair), struct.pack("<q", index))


@dataclass(frozen=True, slots=True)
class DlmmFees:
    """A DLMM pair's fee schedule, as a `PresetParameter` holds it.

    Base fee = base_factor * bin_step * 1e-8; the variable part grows with the bins a burst of
    swaps crosses. The defaults are the engine's `DlmmPool` defaults (and a mainnet 10 bps
    pool's); `protocol_share` is the program's default 5 %, which moves no quote.
    """

    base_factor: int
    filter_period: int = 30
    decay_period: int = 600
    reduction_factor: int = 5_000
    variable_fee_control: int = 40_000
    max_volatility_accumulator: int = 350_000
    protocol_share: int = 500


def preset_parameter_data(bin_step: int, fees: DlmmFees) -> bytes:
    """A `PresetParameter` account: discriminator, then the IDL's fields in order (Borsh)."""
    span = DLMM_MAX_BIN_ID_PER_BIN_STEP // bin_step
    return _PRESET_PARAMETER_ACCOUNT + struct.pack(
        "<HHHHHIIiiH",
        bin_step,
        fees.base_factor,
        fees.filter_period,
        fees.decay_period,
        fees.reduction_factor,
        fees.variable_fee_control,
        fees.max_volatility_accumulator,
        -span,
        span,
        fees.protocol_share,
    )


def split_by_weight(
    weights: Mapping[int, int], active_id: int, bin_step: int, amount_x: int, amount_y: int
) -> dict[int, tuple[int, int]]:
    """Each bin's (x, y) when `weights` spread value the way the program's by-weight deposit
    does: y in bins at and below the active one, x at and above, the active bin half of each
    (by value), a bin's value proportional to its weight. Rounded down, so the sums fit."""
    x_parts = {
        b: (w * ONE * ONE // price_from_id(b, bin_step)) // (2 if b == active_id else 1)
        for b, w in weights.items()
        if b >= active_id
    }
    # The same halving on the y side, in units of half a weight.
    y_parts = {b: w * (1 if b == active_id else 2) for b, w in weights.items() if b <= active_id}
    total_x, total_y = sum(x_parts.values()), sum(y_parts.values())
    return {
        b: (
            amount_x * x_parts.get(b, 0) // total_x if total_x else 0,
            amount_y * y_parts.get(b, 0) // total_y if total_y else 0,
        )
        for b in sorted(weights)
    }


def mint_data(
    decimals: int, supply: int, mint_authority: Pubkey | None, freeze_authority: Pubkey | None
) -> bytes:
    """An initialized SPL mint's 82 bytes."""

    def option(key: Pubkey | None) -> bytes:
        return struct.pack("<I", 1) + bytes(key) if key else struct.pack("<I", 0) + bytes(32)

    return (
        option(mint_authority) + struct.pack("<QBB", supply, decimals, 1) + option(freeze_authority)
    )


def token_account_data(mint: Pubkey, owner: Pubkey, amount: int, *, native: bool) -> bytes:
    """An initialized SPL token account's 165 bytes; native ones record their rent reserve."""
    return (
        bytes(mint)
        + bytes(owner)
        + struct.pack("<Q", amount)
        + struct.pack("<I", 0)
        + bytes(32)  # no delegate
        + bytes([1])  # initialized
        + struct.pack("<IQ", 1 if native else 0, TOKEN_ACCOUNT_RENT if native else 0)
        + struct.pack("<Q", 0)  # delegated amount
        + struct.pack("<I", 0)
        + bytes(32)  # no close authority
    )


@functools.lru_cache(maxsize=4096)
def associated_token_address(
    owner: Pubkey, mint: Pubkey, token_program: Pubkey = TOKEN_PROGRAM_ID
) -> Pubkey:
    """The wallet's canonical token account for `mint`, as wallets and routers derive it.
    Cached: a program-address search hashes until it finds a bump, and the router derives
    its wallet's accounts for every transaction it builds."""
    seeds = [bytes(owner), bytes(token_program), bytes(mint)]
    return Pubkey.find_program_address(seeds, ATA_PROGRAM_ID)[0]


@dataclass(frozen=True, slots=True)
class CpmmPoolKeys:
    """Every account a CPMM swap names, derived as the program derives them."""

    pool: Pubkey
    amm_config: Pubkey
    authority: Pubkey
    mint0: Pubkey
    mint1: Pubkey
    vault0: Pubkey
    vault1: Pubkey
    lp_mint: Pubkey
    observation: Pubkey

    @classmethod
    def derive(
        cls, mint_a: Pubkey, mint_b: Pubkey, amm_config: Pubkey = CPMM_AMM_CONFIG
    ) -> CpmmPoolKeys:
        """Derive the PDAs for a pair; the program orders the mints by their bytes."""
        mint0, mint1 = sorted((mint_a, mint_b), key=bytes)

        def pda(*seeds: bytes) -> Pubkey:
            return Pubkey.find_program_address(list(seeds), CPMM_PROGRAM_ID)[0]

        pool = pda(b"pool", bytes(amm_config), bytes(mint0), bytes(mint1))
        return cls(
            pool=pool,
            amm_config=amm_config,
            authority=pda(b"vault_and_lp_mint_auth_seed"),
            mint0=mint0,
            mint1=mint1,
            vault0=pda(b"pool_vault", bytes(pool), bytes(mint0)),
            vault1=pda(b"pool_vault", bytes(pool), bytes(mint1)),
            lp_mint=pda(b"pool_lp_mint", bytes(pool)),
            observation=pda(b"observation", bytes(pool)),
        )


def cpmm_initialize_ix(
    creator: Pubkey,
    keys: CpmmPoolKeys,
    amount0: int,
    amount1: int,
    open_time: int,
    creator_token0: Pubkey,
    creator_token1: Pubkey,
) -> Instruction:
    """The CPMM program's `initialize`: the creator deposits both amounts and gets the LP tokens
    (less the 100 the program locks); the pool opens at `max(open_time, now + 1)`."""
    creator_lp = associated_token_address(creator, keys.lp_mint)
    w, r = True, False
    metas = [
        (creator, True, w),
        (keys.amm_config, False, r),
        (keys.authority, False, r),
        (keys.pool, False, w),
        (keys.mint0, False, r),
        (keys.mint1, False, r),
        (keys.lp_mint, False, w),
        (creator_token0, False, w),
        (creator_token1, False, w),
        (creator_lp, False, w),
        (keys.vault0, False, w),
        (keys.vault1, False, w),
        (CPMM_CREATE_POOL_FEE, False, w),
        (keys.observation, False, w),
        (TOKEN_PROGRAM_ID, False, r),
        (TOKEN_PROGRAM_ID, False, r),
        (TOKEN_PROGRAM_ID, False, r),
        (ATA_PROGRAM_ID, False, r),
        (SYSTEM_PROGRAM_ID, False, r),
        (RENT_SYSVAR_ID, False, r),
    ]
    data = _INITIALIZE + struct.pack("<QQQ", amount0, amount1, open_time)
    return Instruction(CPMM_PROGRAM_ID, data, [AccountMeta(k, s, wr) for k, s, wr in metas])


@dataclass(frozen=True, slots=True)
class DlmmPoolKeys:
    """Every account a DLMM swap names; bin arrays are passed as remaining accounts."""

    lb_pair: Pubkey
    mint_x: Pubkey
    mint_y: Pubkey
    reserve_x: Pubkey
    reserve_y: Pubkey
    oracle: Pubkey
    token_program_x: Pubkey
    token_program_y: Pubkey
    bin_arrays: tuple[tuple[int, Pubkey], ...]  # (bin array index, address)


def dlmm_pair_keys(lb_pair: Pubkey, mint_x: Pubkey, mint_y: Pubkey) -> DlmmPoolKeys:
    """A created pair's accounts, derived as the program derives them (no bin arrays yet)."""
    return DlmmPoolKeys(
        lb_pair=lb_pair,
        mint_x=mint_x,
        mint_y=mint_y,
        reserve_x=_dlmm_pda(bytes(lb_pair), bytes(mint_x)),
        reserve_y=_dlmm_pda(bytes(lb_pair), bytes(mint_y)),
        oracle=_dlmm_pda(b"oracle", bytes(lb_pair)),
        token_program_x=TOKEN_PROGRAM_ID,
        token_program_y=TOKEN_PROGRAM_ID,
        bin_arrays=(),
    )


def dlmm_launch_pair_keys(mint_x: Pubkey, mint_y: Pubkey) -> DlmmPoolKeys:
    """The launch pair of two mints: one per pair of mints, at the ILM base key's PDA."""
    lo, hi = sorted((mint_x, mint_y), key=bytes)
    return dlmm_pair_keys(_dlmm_pda(bytes(DLMM_ILM_BASE_KEY), bytes(lo), bytes(hi)), mint_x, mint_y)


def _dlmm_pair_head(keys: DlmmPoolKeys) -> list[tuple[Pubkey, bool, bool]]:
    return [
        (keys.lb_pair, False, True),
        (DLMM_PROGRAM_ID, False, False),  # no bin array bitmap extension
        (keys.mint_x, False, False),
        (keys.mint_y, False, False),
        (keys.reserve_x, False, True),
        (keys.reserve_y, False, True),
        (keys.oracle, False, True),
    ]


def _dlmm_ix(data: bytes, metas: list[tuple[Pubkey, bool, bool]]) -> Instruction:
    return Instruction(DLMM_PROGRAM_ID, data, [AccountMeta(k, s, w) for k, s, w in metas])


def dlmm_initialize_lb_pair_ix(
    creator: Pubkey, keys: DlmmPoolKeys, preset: Pubkey, active_id: int, bin_step: int
) -> Instruction:
    """`initialize_lb_pair` from a preset parameter: a pair that trades at once."""
    metas = [
        *_dlmm_pair_head(keys),
        (preset, False, False),
        (creator, True, True),
        (TOKEN_PROGRAM_ID, False, False),
        (SYSTEM_PROGRAM_ID, False, False),
        (RENT_SYSVAR_ID, False, False),
        (DLMM_EVENT_AUTHORITY, False, False),
        (DLMM_PROGRAM_ID, False, False),
    ]
    return _dlmm_ix(_INITIALIZE_LB_PAIR + struct.pack("<iH", active_id, bin_step), metas)


def dlmm_launch_pair_ix(
    creator: Pubkey,
    keys: DlmmPoolKeys,
    *,
    active_id: int,
    bin_step: int,
    base_factor: int,
    open_time: int,
) -> Instruction:
    """`initialize_customizable_permissionless_lb_pair`, activated by unix time at `open_time`;
    the creator's token accounts of both mints prove it is the launcher."""
    metas = [
        *_dlmm_pair_head(keys),
        (associated_token_address(creator, keys.mint_x), False, False),
        (creator, True, True),
        (TOKEN_PROGRAM_ID, False, False),
        (SYSTEM_PROGRAM_ID, False, False),
        (associated_token_address(creator, keys.mint_y), False, False),
        (DLMM_EVENT_AUTHORITY, False, False),
        (DLMM_PROGRAM_ID, False, False),
    ]
    # CustomizableParams: active id, bin step, base factor, activation type, no alpha vault,
    # Some(activation point), no creator on/off control, power factor, function type and fee
    # mode zero, 60 bytes of padding.
    data = (
        _INITIALIZE_LAUNCH_PAIR
        + struct.pack("<iHHB?", active_id, bin_step, base_factor, _ACTIVATION_BY_TIMESTAMP, False)
        + struct.pack("<BQ", 1, open_time)
        + struct.pack("<?BBB", False, 0, 0, 0)
        + bytes(60)
    )
    return _dlmm_ix(data, metas)


def dlmm_initialize_bin_array_ix(lb_pair: Pubkey, index: int, funder: Pubkey) -> Instruction:
    """`initialize_bin_array` for bins `index * 70 ..`; the funder pays its rent."""
    metas = [
        (lb_pair, False, False),
        (dlmm_bin_array_address(lb_pair, index), False, True),
        (funder, True, True),
        (SYSTEM_PROGRAM_ID, False, False),
    ]
    return _dlmm_ix(_INITIALIZE_BIN_ARRAY + struct.pack("<q", index), metas)


def dlmm_position_keypair(owner: Pubkey, lb_pair: Pubkey, first: int, seed: bytes = b"") -> Keypair:
    """A position's key, from its owner, pair, first bin and a seed: the same call, the same
    account (a launch or genesis rebuilt from a seed lands the same bytes)."""
    digest = hashlib.sha256(
        b"dlmm-position" + bytes(owner) + bytes(lb_pair) + struct.pack("<i", first) + seed
    ).digest()
    return Keypair.from_seed(digest)


def dlmm_initialize_position_ix(
    owner: Pubkey, position: Pubkey, lb_pair: Pubkey, first: int, width: int
) -> Instruction:
    """`initialize_position` over bins `first .. first + width - 1` (at most 70)."""
    metas = [
        (owner, True, True),
        (position, True, True),
        (lb_pair, False, False),
        (owner, True, False),
        (SYSTEM_PROGRAM_ID, False, False),
        (RENT_SYSVAR_ID, False, False),
        (DLMM_EVENT_AUTHORITY, False, False),
        (DLMM_PROGRAM_ID, False, False),
    ]
    return _dlmm_ix(_INITIALIZE_POSITION + struct.pack("<ii", first, width), metas)


def dlmm_add_liquidity_by_weight_ix(
    owner: Pubkey,
    position: Pubkey,
    keys: DlmmPoolKeys,
    weights: Mapping[int, int],
    amount_x: int,
    amount_y: int,
    active_id: int,
) -> Instruction:
    """`add_liquidity_by_weight` into one position from the owner's associated accounts, with
    the active id seen and no slippage allowed; `weights` lie in the position's bins."""
    lower = bin_array_index(min(weights))
    metas = [
        (position, False, True),
        (keys.lb_pair, False, True),
        (DLMM_PROGRAM_ID, False, False),  # no bin array bitmap extension
        (associated_token_address(owner, keys.mint_x, keys.token_program_x), False, True),
        (associated_token_address(owner, keys.mint_y, keys.token_program_y), False, True),
        (keys.reserve_x, False, True),
        (keys.reserve_y, False, True),
        (keys.mint_x, False, False),
        (keys.mint_y, False, False),
        (dlmm_bin_array_address(keys.lb_pair, lower), False, True),
        (dlmm_bin_array_address(keys.lb_pair, lower + 1), False, True),
        (owner, True, False),
        (keys.token_program_x, False, False),
        (keys.token_program_y, False, False),
        (DLMM_EVENT_AUTHORITY, False, False),
        (DLMM_PROGRAM_ID, False, False),
    ]
    bins = sorted(weights)
    data = (
        _ADD_LIQUIDITY_BY_WEIGHT
        + struct.pack("<QQiiI", amount_x, amount_y, active_id, 0, len(bins))
        + b"".join(struct.pack("<iH", b, weights[b]) for b in bins)
    )
    return _dlmm_ix(data, metas)


@dataclass(frozen=True, slots=True)
class DlmmDeposit:
    """One position's share of a deposit: its bins and weights, and the amounts it takes."""

    weights: dict[int, int]
    amount_x: int
    amount_y: int

    @property
    def first(self) -> int:
        return min(self.weights)

    @property
    def width(self) -> int:
        return len(self.weights)

    @property
    def bin_arrays(self) -> tuple[int, int]:
        """The lower and upper bin arrays the deposit names (two distinct accounts)."""
        lower = bin_array_index(self.first)
        return lower, lower + 1


def plan_dlmm_deposit(
    weights: Mapping[int, int], active_id: int, bin_step: int, amount_x: int, amount_y: int
) -> list[DlmmDeposit]:
    """Cut a deposit over contiguous bins into positions of up to 70 bins, the amounts split so
    the shape runs on across the cut (`split_by_weight`).

    The program scales the whole shape to the scarcer token: a bin that needs a token the
    deposit lacks makes it deposit nothing, without failing. So one-sided deposits must stay on
    their side of the active bin, and this refuses those that do not.
    """
    bins = sorted(weights)
    if not bins or bins != list(range(bins[0], bins[-1] + 1)):
        msg = "weights must cover a contiguous, non-empty range of bins"
        raise ValueError(msg)
    if (amount_x == 0 and bins[-1] >= active_id) or (amount_y == 0 and bins[0] <= active_id):
        msg = f"a one-sided deposit must leave out active bin {active_id} and the far side"
        raise ValueError(msg)
    split = split_by_weight(weights, active_id, bin_step, amount_x, amount_y)
    chunks = [
        bins[i : i + DLMM_BINS_PER_POSITION] for i in range(0, len(bins), DLMM_BINS_PER_POSITION)
    ]
    return [
        DlmmDeposit(
            {b: weights[b] for b in chunk},
            sum(split[b][0] for b in chunk),
            sum(split[b][1] for b in chunk),
        )
        for chunk in chunks
    ]


@dataclass(frozen=True, slots=True)
class CpmmSwap:
    """One `swap_base_input`: exactly `amount_in` of `mint_in`, at least `min_out` back."""

    pool: CpmmPoolKeys
    mint_in: Pubkey
    amount_in: int
    min_out: int


@dataclass(frozen=True, slots=True)
class DlmmSwap:
    """One DLMM `swap`: exactly `amount_in` of `mint_in`, at least `min_out` back."""

    pool: DlmmPoolKeys
    mint_in: Pubkey
    amount_in: int
    min_out: int


SwapLeg = CpmmSwap | DlmmSwap


@dataclass(frozen=True, slots=True)
class Executed:
    """A landed transaction: its signature and the compute it used."""

    signature: str
    compute_units: int
    logs: list[str]


def _load(path: Path) -> bytes:
    return path.read_bytes()


class SolanaVm:
    """LiteSVM with both programs at their mainnet ids, the engine's mints, and a clock we set."""

    def __init__(
        self,
        *,
        unix_timestamp: int = 1_750_000_000,
        mint_authority: Keypair | None = None,
        payer: Keypair | None = None,
    ) -> None:
        """Boot the VM: programs, the CPMM config accounts, the mints; the clock at a fixed time.

        The mint authority and the payer are fresh random keys unless given: a chain that must
        rebuild byte-identical state from a seed passes keys derived from it.
        """
        self.svm = LiteSVM()
        self.svm.add_program_from_file(CPMM_PROGRAM_ID, PROGRAMS / "raydium_cp_swap.so")
        self.svm.add_program_from_file(DLMM_PROGRAM_ID, PROGRAMS / "meteora_dlmm.so")
        raydium = ACCOUNTS / "raydium"
        self.svm.set_account(
            CPMM_AMM_CONFIG,
            Account(
                10**9, _load(raydium / f"amm_config.{CPMM_AMM_CONFIG}.bin"), CPMM_PROGRAM_ID, False
            ),
        )
        self.svm.set_account(
            CPMM_CREATE_POOL_FEE,
            Account(
                TOKEN_ACCOUNT_RENT,
                # An empty native account: the mainnet one's balance says nothing here.
                token_account_data(
                    NATIVE_MINT,
                    Pubkey.from_bytes(
                        _load(raydium / f"create_pool_fee.{CPMM_CREATE_POOL_FEE}.bin")[32:64]
                    ),
                    0,
                    native=True,
                ),
                TOKEN_PROGRAM_ID,
                False,
            ),
        )
        # Mainnet's mint authorities are not ours to sign for; the VM's own key stands in.
        self.mint_authority = mint_authority or Keypair()
        self.payer = payer or Keypair()
        self._credit_lamports(self.payer.pubkey(), 10**14)
        self._supply: dict[Pubkey, int] = {}
        self._decimals: dict[Pubkey, int] = {}
        self._token_program: dict[Pubkey, Pubkey] = {}
        self._our_mints: set[Pubkey] = set()
        for token in TOKENS.values():
            mint = Pubkey.from_string(token.mint)
            authority = None if mint == NATIVE_MINT else self.mint_authority.pubkey()
            self._put_mint(mint, token.decimals, authority)
            self._our_mints.add(mint)
        self.set_time(unix_timestamp)

    # --- accounts ---------------------------------------------------------------------

    def _put_mint(self, mint: Pubkey, decimals: int, authority: Pubkey | None) -> None:
        self._decimals[mint] = decimals
        self._token_program[mint] = TOKEN_PROGRAM_ID
        supply = self._supply.setdefault(mint, 0)
        data = mint_data(decimals, supply, authority, None)
        self.svm.set_account(mint, Account(MINT_RENT, data, TOKEN_PROGRAM_ID, False))

    def create_mint(self, decimals: int) -> Pubkey:
        """A fresh mint under the VM's authority: a new pair for each pool a test creates."""
        mint = Keypair().pubkey()
        self._put_mint(mint, decimals, self.mint_authority.pubkey())
        self._our_mints.add(mint)
        return mint

    def mint_of(self, symbol: str) -> Pubkey:
        """The mainnet mint of one of the engine's tokens."""
        return Pubkey.from_string(TOKENS[symbol].mint)

    def token_account(self, owner: Pubkey, mint: Pubkey) -> Pubkey:
        """The owner's associated token account for `mint`."""
        return associated_token_address(
            owner, mint, self._token_program.get(mint, TOKEN_PROGRAM_ID)
        )

    def balance(self, owner: Pubkey, mint: Pubkey) -> int:
        """Base units of `mint` in the owner's associated account (0 if it does not exist)."""
        account = self.svm.get_account(self.token_account(owner, mint))
        return 0 if account is None else decode_token_amount(bytes(account.data))

    def account_data(self, key: Pubkey) -> bytes:
        """Raw bytes of an account, as a quoting service would fetch them."""
        account = self.svm.get_account(key)
        if account is None:
            msg = f"no account {key}"
            raise KeyError(msg)
        return bytes(account.data)

    def fund(self, owner: Pubkey, mint: Pubkey, amount: int) -> Pubkey:
        """Credit `amount` base units to the owner's associated account, creating it if needed."""
        address = self.token_account(owner, mint)
        program = self._token_program.get(mint, TOKEN_PROGRAM_ID)
        total = self.balance(owner, mint) + amount
        native = mint == NATIVE_MINT
        data = token_account_data(mint, owner, total, native=native)
        lamports = TOKEN_ACCOUNT_RENT + (total if native else 0)
        self.svm.set_account(address, Account(lamports, data, program, False))
        if not native and mint in self._our_mints:
            # Keep the mint's supply equal to what its accounts hold, as a real mint would.
            self._supply[mint] += amount
            self._put_mint(mint, self._decimals[mint], self.mint_authority.pubkey())
        return address

    def _credit_lamports(self, key: Pubkey, lamports: int) -> None:
        # Written directly: LiteSVM's airdrop is itself a transaction with a capped faucet.
        self.svm.set_account(key, Account(lamports, b"", SYSTEM_PROGRAM_ID, False))

    def new_wallet(self, lamports: int = 100 * 10**9, *, keypair: Keypair | None = None) -> Keypair:
        """A fresh keypair (or the one given) with SOL for fees and rent."""
        wallet = keypair or Keypair()
        self._credit_lamports(wallet.pubkey(), lamports)
        return wallet

    # --- clock ------------------------------------------------------------------------

    @property
    def now(self) -> int:
        """The VM's unix time; it moves only when we move it."""
        return int(self.svm.get_clock().unix_timestamp)

    def set_time(self, unix_timestamp: int) -> None:
        """Set the clock: DLMM fees and CPMM open times read it."""
        clock: Clock = self.svm.get_clock()
        clock.unix_timestamp = unix_timestamp
        self.svm.set_clock(clock)

    # --- transactions -----------------------------------------------------------------

    def latest_blockhash(self) -> Hash:
        """The blockhash a new transaction should carry."""
        return self.svm.latest_blockhash()

    def expire_blockhash(self) -> None:
        """Move to a new blockhash; transactions built on older ones then fail to land."""
        self.svm.expire_blockhash()

    def build(
        self,
        instructions: list[Instruction],
        signer: Keypair,
        *,
        compute_units: int = DEFAULT_COMPUTE_UNITS,
        blockhash: Hash | None = None,
    ) -> Transaction:
        """A signed transaction: a compute-budget instruction, then `instructions` in order."""
        blockhash = blockhash or self.svm.latest_blockhash()
        ixs = [set_compute_unit_limit(compute_units), *instructions]
        message = Message.new_with_blockhash(ixs, signer.pubkey(), blockhash)
        return Transaction([signer], message, blockhash)

    def submit(self, tx: Transaction) -> Executed:
        """Send a transaction; raise the typed error its failure maps to."""
        result = self.svm.send_transaction(tx)
        # Each transaction gets its own blockhash, so identical swaps are not deduplicated.
        self.svm.expire_blockhash()
        if isinstance(result, FailedTransactionMetadata):
            message = tx.message
            programs = [message.account_keys[ix.program_id_index] for ix in message.instructions]
            raise map_error(result.err(), programs, list(result.meta().logs()))
        return Executed(str(result.signature()), result.compute_units_consumed(), result.logs())

    def send(
        self,
        instructions: list[Instruction],
        signer: Keypair,
        *,
        compute_units: int = DEFAULT_COMPUTE_UNITS,
    ) -> Executed:
        """Build, sign and submit in one go."""
        return self.submit(self.build(instructions, signer, compute_units=compute_units))

    # --- CPMM -------------------------------------------------------------------------

    def create_cpmm_pool(
        self,
        mint_a: Pubkey,
        mint_b: Pubkey,
        amount_a: int,
        amount_b: int,
        *,
        open_time: int = 0,
        creator_wallet: Keypair | None = None,
    ) -> CpmmPoolKeys:
        """Create and seed a pool with the program's `initialize`, as a launch on mainnet does.

        The program opens the pool at `max(open_time, now + 1)`; swaps before then fail with
        NotApproved (6000). The creator (the VM's payer unless given) is credited the amounts
        and signs; the pool's LP tokens go to it.
        """
        keys = CpmmPoolKeys.derive(mint_a, mint_b)
        amount0, amount1 = (amount_a, amount_b) if keys.mint0 == mint_a else (amount_b, amount_a)
        signer = creator_wallet or self.payer
        creator = signer.pubkey()
        c0 = self.fund(creator, keys.mint0, amount0)
        c1 = self.fund(creator, keys.mint1, amount1)
        ix = cpmm_initialize_ix(creator, keys, amount0, amount1, open_time, c0, c1)
        self.send([ix], signer)
        return keys

    def cpmm_swap_ix(self, owner: Pubkey, leg: CpmmSwap) -> Instruction:
        """`swap_base_input` from the owner's associated accounts."""
        keys = leg.pool
        zero_in = leg.mint_in == keys.mint0
        if not zero_in and leg.mint_in != keys.mint1:
            msg = f"{leg.mint_in} is not in CPMM pool {keys.pool}"
            raise ValueError(msg)
        mint_in, mint_out = (keys.mint0, keys.mint1) if zero_in else (keys.mint1, keys.mint0)
        vault_in, vault_out = (keys.vault0, keys.vault1) if zero_in else (keys.vault1, keys.vault0)
        w, r = True, False
        metas = [
            (owner, True, r),
            (keys.authority, False, r),
            (keys.amm_config, False, r),
            (keys.pool, False, w),
            (self.token_account(owner, mint_in), False, w),
            (self.token_account(owner, mint_out), False, w),
            (vault_in, False, w),
            (vault_out, False, w),
            (self._token_program.get(mint_in, TOKEN_PROGRAM_ID), False, r),
            (self._token_program.get(mint_out, TOKEN_PROGRAM_ID), False, r),
            (mint_in, False, r),
            (mint_out, False, r),
            (keys.observation, False, w),
        ]
        data = _SWAP_BASE_INPUT + struct.pack("<QQ", leg.amount_in, leg.min_out)
        return Instruction(CPMM_PROGRAM_ID, data, [AccountMeta(k, s, wr) for k, s, wr in metas])

    # --- DLMM -------------------------------------------------------------------------

    def load_dlmm_snapshot(self, lb_pair: Pubkey | str) -> DlmmPoolKeys:
        """Load a vendored mainnet DLMM pool (pair, oracle, bin arrays, reserves, mints)."""
        address = Pubkey.from_string(str(lb_pair))
        folder = ACCOUNTS / "meteora" / str(address)
        pair: LbPair = decode_lb_pair(_load(folder / "lb_pair.bin"))
        programs = {0: TOKEN_PROGRAM_ID, 1: TOKEN_2022_PROGRAM_ID}
        token_program_x = programs[pair.token_mint_x_program_flag]
        token_program_y = programs[pair.token_mint_y_program_flag]
        owned = [
            ("lb_pair", address, DLMM_PROGRAM_ID),
            ("oracle", pair.oracle, DLMM_PROGRAM_ID),
            ("reserve_x", pair.reserve_x, token_program_x),
            ("reserve_y", pair.reserve_y, token_program_y),
        ]
        for name, key, owner in owned:
            self.svm.set_account(key, Account(10**10, _load(folder / f"{name}.bin"), owner, False))
        for name, mint, program in (
            ("token_x_mint", pair.token_x_mint, token_program_x),
            ("token_y_mint", pair.token_y_mint, token_program_y),
        ):
            path = folder / f"{name}.bin"
            if path.exists() and mint not in self._decimals:
                data = _load(path)
                self.svm.set_account(mint, Account(10**10, data, program, False))
                self._decimals[mint] = data[44]
                self._token_program[mint] = program
        arrays = []
        for path in sorted(folder.glob("bin_array_*.bin")):
            data = _load(path)
            index = decode_bin_array(data).index
            key = Pubkey.find_program_address(
                [b"bin_array", bytes(address), struct.pack("<q", index)], DLMM_PROGRAM_ID
            )[0]
            self.svm.set_account(key, Account(10**10, data, DLMM_PROGRAM_ID, False))
            arrays.append((index, key))
        return DlmmPoolKeys(
            lb_pair=address,
            mint_x=pair.token_x_mint,
            mint_y=pair.token_y_mint,
            reserve_x=pair.reserve_x,
            reserve_y=pair.reserve_y,
            oracle=pair.oracle,
            token_program_x=token_program_x,
            token_program_y=token_program_y,
            bin_arrays=tuple(sorted(arrays)),
        )

    def put_dlmm_preset_parameter(self, bin_step: int, fees: DlmmFees) -> Pubkey:
        """Write the `PresetParameter` a pair of this bin step and base factor is created from.

        On mainnet only Meteora's admin creates these (its key is compiled into the program), so
        the account is written directly, at the PDA and in the IDL's layout the admin
        instruction would leave.
        """
        key = _dlmm_pda(b"preset_parameter", struct.pack("<HH", bin_step, fees.base_factor))
        data = preset_parameter_data(bin_step, fees)
        self.svm.set_account(key, Account(10**9, data, DLMM_PROGRAM_ID, False))
        return key

    def create_dlmm_pair(
        self,
        mint_x: Pubkey,
        mint_y: Pubkey,
        *,
        active_id: int,
        bin_step: int,
        fees: DlmmFees,
        open_time: int | None = None,
        creator: Keypair | None = None,
    ) -> DlmmPoolKeys:
        """Create an empty DLMM pair with the program's own instruction; price y per x at
        `active_id` is (1 + bin_step / 10^4) ** active_id in base units.

        Without `open_time`: `initialize_lb_pair` from a preset parameter with `fees`; the pair
        trades at once. With it: a launch pair (`initialize_customizable_permissionless_lb_pair`)
        activated by unix time, closed to swaps before `open_time` (PoolDisabled 6042, raised
        as `PoolNotOpenError`) and, until then, open only to one-sided deposits (x or y, not
        both in one instruction; two-sided ones fail the same way). The program fixes a launch
        pair's variable-fee parameters itself (only `fees.base_factor` is used), and the
        creator must hold some of both tokens, as proof it is the launcher.
        The creator (the VM's payer unless given) pays the rent.
        """
        signer = creator or self.payer
        if open_time is None:
            preset = self.put_dlmm_preset_parameter(bin_step, fees)
            lo, hi = sorted((mint_x, mint_y), key=bytes)
            lb_pair = _dlmm_pda(
                bytes(lo),
                bytes(hi),
                struct.pack("<H", bin_step),
                struct.pack("<H", fees.base_factor),
            )
            keys = dlmm_pair_keys(lb_pair, mint_x, mint_y)
            ix = dlmm_initialize_lb_pair_ix(signer.pubkey(), keys, preset, active_id, bin_step)
        else:
            keys = dlmm_launch_pair_keys(mint_x, mint_y)
            ix = dlmm_launch_pair_ix(
                signer.pubkey(),
                keys,
                active_id=active_id,
                bin_step=bin_step,
                base_factor=fees.base_factor,
                open_time=open_time,
            )
        self.send([ix], signer)
        return keys

    def ensure_dlmm_bin_arrays(
        self, keys: DlmmPoolKeys, indices: list[int], funder: Keypair | None = None
    ) -> DlmmPoolKeys:
        """`initialize_bin_array` for each index not yet created; the keys, with them listed."""
        signer = funder or self.payer
        known = dict(keys.bin_arrays)
        missing = sorted({i for i in indices if i not in known})
        for index in missing:
            if not -DLMM_BIN_ARRAY_BITMAP_RANGE <= index < DLMM_BIN_ARRAY_BITMAP_RANGE:
                # Such arrays need the bitmap extension account, which nothing here passes.
                msg = f"bin array {index} is outside the pair's own bitmap"
                raise ValueError(msg)
            address = dlmm_bin_array_address(keys.lb_pair, index)
            if self.svm.get_account(address) is None:
                ix = dlmm_initialize_bin_array_ix(keys.lb_pair, index, signer.pubkey())
                self.send([ix], signer)
            known[index] = address
        return replace(keys, bin_arrays=tuple(sorted(known.items())))

    def add_dlmm_liquidity(
        self,
        keys: DlmmPoolKeys,
        provider: Keypair,
        weights: Mapping[int, int],
        amount_x: int,
        amount_y: int,
        *,
        position_seed: bytes = b"",
    ) -> DlmmPoolKeys:
        """Deposit `amount_x` and `amount_y` from the provider's accounts over the bins in
        `weights` (bin id -> u16 weight, contiguous), shaped by the weights.

        One position holds at most 70 bins, so the range is cut into positions of up to 70
        (`initialize_position`), each filled with `add_liquidity_by_weight`; the amounts are
        split between them so the shape runs on across the cut (`split_by_weight`). Position
        keys derive from the provider, the pair, their first bin and `position_seed`, so the
        same call builds the same accounts. Missing bin arrays are created first.
        """
        pair = decode_lb_pair(self.account_data(keys.lb_pair))
        deposits = plan_dlmm_deposit(weights, pair.active_id, pair.bin_step, amount_x, amount_y)
        indices = [i for d in deposits for i in d.bin_arrays]
        keys = self.ensure_dlmm_bin_arrays(keys, indices, provider)
        owner = provider.pubkey()
        for deposit in deposits:
            position = dlmm_position_keypair(owner, keys.lb_pair, deposit.first, position_seed)
            ix = dlmm_initialize_position_ix(
                owner, position.pubkey(), keys.lb_pair, deposit.first, deposit.width
            )
            blockhash = self.svm.latest_blockhash()
            message = Message.new_with_blockhash(
                [set_compute_unit_limit(DEFAULT_COMPUTE_UNITS), ix], owner, blockhash
            )
            self.submit(Transaction([provider, position], message, blockhash))
            ix = dlmm_add_liquidity_by_weight_ix(
                owner,
                position.pubkey(),
                keys,
                deposit.weights,
                deposit.amount_x,
                deposit.amount_y,
                pair.active_id,
            )
            self.send([ix], provider)
        return keys

    def dlmm_swap_ix(self, owner: Pubkey, leg: DlmmSwap) -> Instruction:
        """DLMM `swap` from the owner's associated accounts, bin arrays in the walk's order."""
        keys = leg.pool
        swap_for_y = leg.mint_in == keys.mint_x
        if not swap_for_y and leg.mint_in != keys.mint_y:
            msg = f"{leg.mint_in} is not in DLMM pair {keys.lb_pair}"
            raise ValueError(msg)
        mint_out = keys.mint_y if swap_for_y else keys.mint_x
        event_authority = Pubkey.find_program_address([b"__event_authority"], DLMM_PROGRAM_ID)[0]
        w, r = True, False
        none = (DLMM_PROGRAM_ID, False, r)  # Anchor's "no account" for an optional slot
        metas = [
            (keys.lb_pair, False, w),
            none,  # bin array bitmap extension
            (keys.reserve_x, False, w),
            (keys.reserve_y, False, w),
            (self.token_account(owner, leg.mint_in), False, w),
            (self.token_account(owner, mint_out), False, w),
            (keys.mint_x, False, r),
            (keys.mint_y, False, r),
            (keys.oracle, False, w),
            none,  # host fee account
            (owner, True, r),
            (keys.token_program_x, False, r),
            (keys.token_program_y, False, r),
            (event_authority, False, r),
            (DLMM_PROGRAM_ID, False, r),
        ]
        # Selling x walks the price down, through lower bin arrays first.
        arrays = sorted(keys.bin_arrays, reverse=swap_for_y)
        metas += [(key, False, w) for _, key in arrays]
        data = _DLMM_SWAP + struct.pack("<QQ", leg.amount_in, leg.min_out)
        return Instruction(DLMM_PROGRAM_ID, data, [AccountMeta(k, s, wr) for k, s, wr in metas])

    # --- both -------------------------------------------------------------------------

    def swap_ix(self, owner: Pubkey, leg: SwapLeg) -> Instruction:
        """The swap instruction for one leg, whichever venue it is on."""
        if isinstance(leg, CpmmSwap):
            return self.cpmm_swap_ix(owner, leg)
        return self.dlmm_swap_ix(owner, leg)

    def ensure_token_accounts(self, owner: Pubkey, legs: list[SwapLeg]) -> None:
        """Create the owner's empty associated accounts a swap pays into, as a router would."""
        for leg in legs:
            keys = leg.pool
            mints = (
                (keys.mint0, keys.mint1)
                if isinstance(keys, CpmmPoolKeys)
                else (keys.mint_x, keys.mint_y)
            )
            for mint in mints:
                if self.svm.get_account(self.token_account(owner, mint)) is None:
                    self.fund(owner, mint, 0)

    def execute_swaps(
        self, wallet: Keypair, legs: list[SwapLeg], *, compute_units: int = DEFAULT_COMPUTE_UNITS
    ) -> Executed:
        """Run every leg in one transaction (a split, or hops in order): all land or none."""
        self.ensure_token_accounts(wallet.pubkey(), legs)
        ixs = [self.swap_ix(wallet.pubkey(), leg) for leg in legs]
        return self.send(ixs, wallet, compute_units=compute_units)
