"""The engine's `Pool` values from the programs' own accounts, and the registry that finds them.

An aggregator knows no pool in advance: it lists the programs' pool accounts (Solana's
`getProgramAccounts`, filtered by size and discriminator), keeps those whose mints it trades,
and from then on fetches only the accounts a quote reads. This module is the pure half of
that: what to filter on, how a listed account becomes a `CpmmListing` or `DlmmListing`, which
addresses a snapshot needs, and how the fetched bytes become a `PoolBook`.

- CPMM: the engine's `CpmmPool` over the vault balances less the protocol and fund fees
  (`cpmm.to_cpmm_pool`), at the `AmmConfig`'s fee; it quotes what `swap_base_input` pays.
- DLMM: `DlmmBinPool`, the program's own walk (`dlmm.quote_exact_in`) over the decoded
  `LbPair` and bin arrays at the chain's clock.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from solders.pubkey import Pubkey

from services.domain.tokens import TOKENS, get_token, launched_by_mint
from services.pricing.accounts.cpmm import (
    POOL_STATE_LEN,
    PoolState,
    decode_amm_config,
    decode_pool_state,
    to_cpmm_pool,
)
from services.pricing.accounts.dlmm import (
    BIN_ARRAY_DISCRIMINATOR,
    BIN_ARRAY_HEADER,
    BIN_SIZE,
    BINS_PER_ARRAY,
    LB_PAIR_DISCRIMINATOR,
    ONE,
    BinArray,
    DlmmQuoteError,
    LbPair,
    decode_bin_array,
    decode_lb_pair,
    price_from_id,
    quote_exact_in,
    swap_exact_in,
)
from services.pricing.accounts.spl import decode_token_amount
from services.venues.cpmm import CpmmPool
from services.venues.pool import (
    InsufficientLiquidityError,
    JsonValue,
    Pair,
    Pool,
    PoolBook,
    SwapError,
    SwapResult,
    Timestamp,
    Venue,
    check_amount,
    other_token,
    price_impact,
)

CLOCK_SYSVAR = Pubkey.from_string("SysvarC1ock11111111111111111111111111111111")
CPMM_POOL_STATE_DISCRIMINATOR = hashlib.sha256(b"account:PoolState").digest()[:8]
LB_PAIR_LEN = 904
BIN_ARRAY_LEN = BIN_ARRAY_HEADER + BINS_PER_ARRAY * BIN_SIZE
BIN_ARRAY_LB_PAIR_OFFSET = 24  # discriminator, index (i64), version and padding
ACTIVATION_BY_SLOT = 0  # LbPair.activation_type: 0 slot, 1 unix time

SYMBOL_BY_MINT: Mapping[Pubkey, str] = MappingProxyType(
    {Pubkey.from_string(t.mint): t.symbol for t in TOKENS.values()}
)


def symbol_of(mint: Pubkey) -> str | None:
    """The symbol of a seeded token's mint, or of a launched one registered in this process."""
    symbol = SYMBOL_BY_MINT.get(mint)
    if symbol is None:
        launched = launched_by_mint(str(mint))
        symbol = None if launched is None else launched.symbol
    return symbol


# Which token of a pair is its quote: the first of these it holds (SOL/USDC, USDT/USDC, JUP/SOL).
QUOTE_PRIORITY = ("USDC", "USDT", "SOL")


def orient(a: str, b: str) -> Pair:
    """(base, quote) as the engine names pairs, whatever order a program stores the mints in."""
    for quote in QUOTE_PRIORITY:
        if quote in (a, b):
            return (b, a) if a == quote else (a, b)
    return (a, b)


@dataclass(frozen=True, slots=True)
class Clock:
    """The fields of the Clock sysvar a quote needs."""

    slot: int
    unix_timestamp: int


def decode_clock(data: bytes) -> Clock:
    """Decode the Clock sysvar: slot, epoch start time, epoch, leader epoch, unix time."""
    slot, _, _, _, unix_timestamp = struct.unpack_from("<QqQQq", data)
    return Clock(slot, unix_timestamp)


# --- DLMM as a Pool ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DlmmBinPool:
    """A Meteora DLMM pair as the program sees it: quotes are the program's `swap`, to the unit.

    `base` is the pair's token x, `quote` its token y. `clock` is the chain's unix time when the
    accounts were read: the dynamic fee depends on the time since the pair's last swap, and the
    `now` routing passes is the engine's wall clock, which is not the chain's; it is ignored.
    Only the loaded `bin_arrays` are walked: a swap that would leave them fails as
    insufficient liquidity, as does one the output vault cannot pay.
    """

    base: str
    quote: str
    pair: LbPair
    bin_arrays: Mapping[int, BinArray]
    reserve_x: int
    reserve_y: int
    clock: int

    @property
    def venue(self) -> Venue:
        """Meteora runs the DLMM pairs."""
        return Venue.METEORA

    @property
    def tokens(self) -> Pair:
        """The pair's (x, y) symbols."""
        return (self.base, self.quote)

    def _direction(self, token_in: str) -> tuple[bool, int]:
        other_token(self.tokens, token_in)
        swap_for_y = token_in == self.base
        return swap_for_y, self.reserve_y if swap_for_y else self.reserve_x

    def amount_out(self, token_in: str, amount_in: int, now: Timestamp = 0) -> int:
        """What the program's `swap` pays for `amount_in` at the snapshot's clock."""
        del now
        check_amount(amount_in)
        swap_for_y, reserve_out = self._direction(token_in)
        try:
            quote = quote_exact_in(
                self.pair,
                self.bin_arrays,
                amount_in,
                swap_for_y=swap_for_y,
                now=self.clock,
                reserve_out=reserve_out,
            )
        except DlmmQuoteError as exc:
            raise InsufficientLiquidityError(str(exc)) from None
        return quote.amount_out

    def swap(self, token_in: str, amount_in: int, now: Timestamp = 0) -> SwapResult:
        """The program's `swap`, with the pair, bins and vaults it leaves behind."""
        del now
        check_amount(amount_in)
        swap_for_y, reserve_out = self._direction(token_in)
        spot = self._spot(swap_for_y)
        try:
            quote, pair, arrays = swap_exact_in(
                self.pair,
                self.bin_arrays,
                amount_in,
                swap_for_y=swap_for_y,
                now=self.clock,
                reserve_out=reserve_out,
            )
        except DlmmQuoteError as exc:
            raise InsufficientLiquidityError(str(exc)) from None
        fee = quote.fee
        if self.pair.collect_fee_mode != 0 and swap_for_y:  # the fee was taken in y: value it in x
            fee = -(-fee * ONE // self._price(self.pair.active_id))
        x_in = amount_in if swap_for_y else -quote.amount_out
        y_in = -quote.amount_out if swap_for_y else amount_in
        after = DlmmBinPool(
            self.base,
            self.quote,
            pair,
            MappingProxyType(arrays),
            self.reserve_x + x_in,
            self.reserve_y + y_in,
            self.clock,
        )
        impact = price_impact(amount_in, quote.amount_out, spot)
        return SwapResult(amount_in, quote.amount_out, fee, impact, after)

    def _price(self, bin_id: int) -> int:
        """A bin's Q64.64 price (y per x, base units): the one stored in it, else computed."""
        array = self.bin_arrays.get(bin_id // BINS_PER_ARRAY)
        stored = array.bins[bin_id - array.lower_bin_id].price if array is not None else 0
        return stored or price_from_id(bin_id, self.pair.bin_step)

    def _spot(self, swap_for_y: bool) -> Decimal:
        """The active bin's price, output base units per input base unit."""
        price = Decimal(self._price(self.pair.active_id))
        return price / ONE if swap_for_y else ONE / price

    def mid_price(self, token_in: str) -> Decimal:
        """The active bin's price in whole tokens out per whole token in, before fees."""
        swap_for_y, _ = self._direction(token_in)
        token_out = other_token(self.tokens, token_in)
        shift = get_token(token_in).decimals - get_token(token_out).decimals
        return self._spot(swap_for_y).scaleb(shift)

    def to_dict(self) -> dict[str, JsonValue]:
        """A JSON-safe summary (the accounts themselves are the durable form)."""
        active = self.pair.active_id
        array = self.bin_arrays.get(active // BINS_PER_ARRAY)
        bin_ = array.bins[active - array.lower_bin_id] if array is not None else None
        return {
            "venue": self.venue.value,
            "base": self.base,
            "quote": self.quote,
            "active_id": active,
            "bin_step": self.pair.bin_step,
            "active_bin": [bin_.amount_x, bin_.amount_y] if bin_ is not None else None,
            "reserve_x": self.reserve_x,
            "reserve_y": self.reserve_y,
            "bin_arrays": sorted(self.bin_arrays),
            "clock": self.clock,
        }


# --- the registry ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpmmListing:
    """A Raydium CPMM pool found on chain, between two of the engine's tokens."""

    address: Pubkey
    state: PoolState
    symbol_0: str
    symbol_1: str

    @property
    def accounts(self) -> tuple[Pubkey, ...]:
        """What a quote reads: the pool, its two vaults, its fee tier."""
        s = self.state
        return (self.address, s.token_0_vault, s.token_1_vault, s.amm_config)


@dataclass(frozen=True, slots=True)
class DlmmListing:
    """A Meteora DLMM pair found on chain, with the bin arrays it has."""

    address: Pubkey
    pair: LbPair
    symbol_x: str
    symbol_y: str
    bin_arrays: tuple[tuple[int, Pubkey], ...]  # (index, address), by index

    @property
    def accounts(self) -> tuple[Pubkey, ...]:
        """What a quote reads: the pair, its reserves, its bin arrays."""
        p = self.pair
        return (self.address, p.reserve_x, p.reserve_y, *(k for _, k in self.bin_arrays))


def cpmm_listing(address: Pubkey, data: bytes) -> CpmmListing | None:
    """A `PoolState` account as a listing; None if it is not one or trades a foreign mint."""
    if len(data) != POOL_STATE_LEN or data[:8] != CPMM_POOL_STATE_DISCRIMINATOR:
        return None
    state = decode_pool_state(data)
    s0, s1 = symbol_of(state.token_0_mint), symbol_of(state.token_1_mint)
    if s0 is None or s1 is None:
        return None
    return CpmmListing(address, state, s0, s1)


def bin_array_owner(data: bytes) -> tuple[int, Pubkey] | None:
    """(index, lb_pair) of a `BinArray` from its first 56 bytes (a `dataSlice` is enough)."""
    if len(data) < BIN_ARRAY_LB_PAIR_OFFSET + 32 or data[:8] != BIN_ARRAY_DISCRIMINATOR:
        return None
    (index,) = struct.unpack_from("<q", data, 8)
    offset = BIN_ARRAY_LB_PAIR_OFFSET
    return index, Pubkey.from_bytes(data[offset : offset + 32])


def dlmm_listing(
    address: Pubkey, data: bytes, bin_arrays: Iterable[tuple[int, Pubkey]]
) -> DlmmListing | None:
    """An `LbPair` account as a listing; None if it is not one or trades a foreign mint."""
    if data[:8] != LB_PAIR_DISCRIMINATOR:
        return None
    pair = decode_lb_pair(data)
    sx, sy = symbol_of(pair.token_x_mint), symbol_of(pair.token_y_mint)
    if sx is None or sy is None:
        return None
    return DlmmListing(address, pair, sx, sy, tuple(sorted(bin_arrays)))


@dataclass(frozen=True, slots=True)
class PoolRegistry:
    """The pools found, one per venue and pair, and how one read of their accounts becomes a
    `PoolBook`. Build it with `of`, which keeps the first listing (by address) of each pair."""

    cpmm: tuple[CpmmListing, ...]
    dlmm: tuple[DlmmListing, ...]

    @classmethod
    def of(cls, cpmm: Iterable[CpmmListing], dlmm: Iterable[DlmmListing]) -> PoolRegistry:
        """One listing per venue and pair: the book is keyed so, and a route names no more."""
        cpmm_by_pair: dict[Pair, CpmmListing] = {}
        for c in sorted(cpmm, key=lambda listing: bytes(listing.address)):
            cpmm_by_pair.setdefault(orient(c.symbol_0, c.symbol_1), c)
        dlmm_by_pair: dict[Pair, DlmmListing] = {}
        for d in sorted(dlmm, key=lambda listing: bytes(listing.address)):
            dlmm_by_pair.setdefault(orient(d.symbol_x, d.symbol_y), d)
        return cls(tuple(cpmm_by_pair.values()), tuple(dlmm_by_pair.values()))

    def cpmm_for(self, token_a: str, token_b: str) -> CpmmListing:
        """The CPMM pool between two tokens (KeyError if none was found)."""
        for c in self.cpmm:
            if {c.symbol_0, c.symbol_1} == {token_a, token_b}:
                return c
        raise KeyError((token_a, token_b))

    def dlmm_for(self, token_a: str, token_b: str) -> DlmmListing:
        """The DLMM pair between two tokens (KeyError if none was found)."""
        for d in self.dlmm:
            if {d.symbol_x, d.symbol_y} == {token_a, token_b}:
                return d
        raise KeyError((token_a, token_b))

    def addresses(self) -> list[Pubkey]:
        """Every account a snapshot reads, each once, the Clock sysvar first."""
        seen: dict[Pubkey, None] = {CLOCK_SYSVAR: None}
        for c in self.cpmm:
            seen.update(dict.fromkeys(c.accounts))
        for d in self.dlmm:
            seen.update(dict.fromkeys(d.accounts))
        return list(seen)

    def book(self, accounts: Mapping[Pubkey, bytes | None]) -> PoolBook:
        """The pools open at the snapshot's clock; one whose accounts are gone is left out."""
        clock_data = accounts.get(CLOCK_SYSVAR)
        if clock_data is None:
            msg = "the snapshot has no Clock sysvar"
            raise ValueError(msg)
        clock = decode_clock(clock_data)
        book: dict[tuple[Venue, Pair], Pool] = {}
        for c in self.cpmm:
            cpmm = _cpmm_pool(c, accounts, clock)
            if cpmm is not None:
                book[(Venue.RAYDIUM, cpmm.tokens)] = cpmm
        for d in self.dlmm:
            dlmm = _dlmm_pool(d, accounts, clock)
            if dlmm is not None:
                book[(Venue.METEORA, dlmm.tokens)] = dlmm
        return MappingProxyType(book)


def _cpmm_pool(
    listing: CpmmListing, accounts: Mapping[Pubkey, bytes | None], clock: Clock
) -> CpmmPool | None:
    pool_data, vault_0, vault_1, config = (accounts.get(k) for k in listing.accounts)
    if pool_data is None or vault_0 is None or vault_1 is None or config is None:
        return None
    state = decode_pool_state(pool_data)
    if not state.is_open(clock.unix_timestamp):
        return None
    try:
        pool = to_cpmm_pool(
            state,
            decode_amm_config(config),
            decode_token_amount(vault_0),
            decode_token_amount(vault_1),
            listing.symbol_0,
            listing.symbol_1,
        )
    except (ValueError, SwapError):  # an empty pool has no price
        return None
    if orient(pool.base, pool.quote) != pool.tokens:
        pool = CpmmPool(pool.quote, pool.base, pool.reserve_quote, pool.reserve_base, pool.fee_bps)
    return pool


@functools.lru_cache(maxsize=1024)
def _bin_array(data: bytes) -> BinArray:
    """A bin array decoded once per content: a snapshot is read each slot, and a slot's swaps
    change a few of the bin arrays, so decoding every one again was 4 % of the router's CPU
    (py-spy at 150 orders/s). `BinArray` is immutable, so pools may share one."""
    return decode_bin_array(data)


def _dlmm_pool(
    listing: DlmmListing, accounts: Mapping[Pubkey, bytes | None], clock: Clock
) -> DlmmBinPool | None:
    pair_data = accounts.get(listing.address)
    reserve_x = accounts.get(listing.pair.reserve_x)
    reserve_y = accounts.get(listing.pair.reserve_y)
    if pair_data is None or reserve_x is None or reserve_y is None:
        return None
    pair = decode_lb_pair(pair_data)
    now = clock.slot if pair.activation_type == ACTIVATION_BY_SLOT else clock.unix_timestamp
    if pair.status != 0 or now < pair.activation_point:
        return None
    arrays: dict[int, BinArray] = {}
    for index, key in listing.bin_arrays:
        data = accounts.get(key)
        if data is not None:
            arrays[index] = _bin_array(data)
    return DlmmBinPool(
        listing.symbol_x,
        listing.symbol_y,
        pair,
        MappingProxyType(arrays),
        decode_token_amount(reserve_x),
        decode_token_amount(reserve_y),
        clock.unix_timestamp,
    )
