"""The chain as a Solana VM: LiteSVM running the real Raydium CPMM and Meteora DLMM programs.

Mints sit at their mainnet addresses with their decimals, pools are created with the programs'
own instructions (CPMM `initialize`) or loaded from mainnet snapshots (DLMM), and swaps are real
transactions: one or more swap instructions after a compute-budget instruction, each with its
own minimum out. Nothing here prices anything; quotes come from `services.pricing.accounts`,
which decodes the same accounts the programs read.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
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
from services.pricing.accounts.dlmm import LbPair, decode_bin_array, decode_lb_pair
from services.pricing.accounts.spl import decode_token_amount

DEFAULT_COMPUTE_UNITS = 1_400_000  # the per-transaction maximum: splits and hops share it
_SWAP_BASE_INPUT = hashlib.sha256(b"global:swap_base_input").digest()[:8]
_INITIALIZE = hashlib.sha256(b"global:initialize").digest()[:8]
_DLMM_SWAP = hashlib.sha256(b"global:swap").digest()[:8]


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


def associated_token_address(
    owner: Pubkey, mint: Pubkey, token_program: Pubkey = TOKEN_PROGRAM_ID
) -> Pubkey:
    """The wallet's canonical token account for `mint`, as wallets and routers derive it."""
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

    def __init__(self, *, unix_timestamp: int = 1_750_000_000) -> None:
        """Boot the VM: programs, the CPMM config accounts, the mints; the clock at a fixed time."""
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
        self.mint_authority = Keypair()
        self.payer = Keypair()
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

    def new_wallet(self, lamports: int = 100 * 10**9) -> Keypair:
        """A fresh keypair with SOL for fees and rent."""
        wallet = Keypair()
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
        self, mint_a: Pubkey, mint_b: Pubkey, amount_a: int, amount_b: int, *, open_time: int = 0
    ) -> CpmmPoolKeys:
        """Create and seed a pool with the program's `initialize`, as a launch on mainnet does.

        The program opens the pool at `max(open_time, now + 1)`; swaps before then fail with
        NotApproved (6000).
        """
        keys = CpmmPoolKeys.derive(mint_a, mint_b)
        amount0, amount1 = (amount_a, amount_b) if keys.mint0 == mint_a else (amount_b, amount_a)
        creator = self.payer.pubkey()
        c0 = self.fund(creator, keys.mint0, amount0)
        c1 = self.fund(creator, keys.mint1, amount1)
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
            (c0, False, w),
            (c1, False, w),
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
        ix = Instruction(CPMM_PROGRAM_ID, data, [AccountMeta(k, s, wr) for k, s, wr in metas])
        self.send([ix], self.payer)
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
