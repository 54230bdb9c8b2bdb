"""Meteora DLMM accounts (LbPair, BinArray, Oracle) and the program's exact-in swap math.

Layouts are the Anchor IDL's (`services/chain/svm/idl/meteora_dlmm.json`), zero-copy and little
endian after the 8-byte discriminator. The quote is written here rather than mapped onto
`services.venues.dlmm.DlmmPool` because that model cannot match the program to the base unit:
the program prices bins with its own Q64.64 `pow` (or the price stored in the bin), takes the
whole bin only when the input strictly exceeds it, and scales the base fee by a power factor.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, replace

from solders.pubkey import Pubkey

DISCRIMINATOR = 8
BINS_PER_ARRAY = 70
BIN_SIZE = 144
BIN_ARRAY_HEADER = DISCRIMINATOR + 8 + 8 + 32  # index, version + padding, lb_pair
BASIS_POINT_MAX = 10_000
FEE_PRECISION = 1_000_000_000
MAX_FEE_RATE = 100_000_000
SCALE_OFFSET = 64
ONE = 1 << SCALE_OFFSET
U128_MAX = (1 << 128) - 1
MAX_EXPONENTIAL = 0x80000

LB_PAIR_DISCRIMINATOR = bytes([33, 11, 49, 98, 181, 101, 177, 13])
BIN_ARRAY_DISCRIMINATOR = bytes([92, 142, 92, 220, 5, 148, 70, 181])
ORACLE_DISCRIMINATOR = bytes([139, 194, 131, 179, 140, 179, 229, 244])


class DlmmQuoteError(ValueError):
    """The pool cannot be quoted: disabled, unsupported mode, or not enough loaded liquidity."""


def _check(data: bytes, discriminator: bytes, name: str) -> None:
    if data[:DISCRIMINATOR] != discriminator:
        msg = f"not a DLMM {name} account"
        raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class LbPair:
    """The fields of a DLMM pair that swaps read or write."""

    base_factor: int
    filter_period: int
    decay_period: int
    reduction_factor: int
    variable_fee_control: int
    max_volatility_accumulator: int
    min_bin_id: int
    max_bin_id: int
    protocol_share: int
    base_fee_power_factor: int
    function_type: int
    collect_fee_mode: int
    volatility_accumulator: int
    volatility_reference: int
    index_reference: int
    last_update_timestamp: int
    pair_type: int
    active_id: int
    bin_step: int
    status: int
    activation_type: int
    token_x_mint: Pubkey
    token_y_mint: Pubkey
    reserve_x: Pubkey
    reserve_y: Pubkey
    oracle: Pubkey
    activation_point: int
    token_mint_x_program_flag: int
    token_mint_y_program_flag: int


def decode_lb_pair(data: bytes) -> LbPair:
    """Decode an `LbPair` account."""
    _check(data, LB_PAIR_DISCRIMINATOR, "LbPair")
    o = DISCRIMINATOR
    (bf, fp, dp, rf, vfc, mva, lo, hi, share, power, function, collect) = struct.unpack_from(
        "<HHHHIIiiHBBB", data, o
    )
    va, vr, index_ref, last = struct.unpack_from("<IIi4xq", data, o + 32)
    active_id, bin_step, status = struct.unpack_from("<iHB", data, o + 68)

    def key(offset: int) -> Pubkey:
        return Pubkey.from_bytes(data[o + offset : o + offset + 32])

    return LbPair(
        base_factor=bf,
        filter_period=fp,
        decay_period=dp,
        reduction_factor=rf,
        variable_fee_control=vfc,
        max_volatility_accumulator=mva,
        min_bin_id=lo,
        max_bin_id=hi,
        protocol_share=share,
        base_fee_power_factor=power,
        function_type=function,
        collect_fee_mode=collect,
        volatility_accumulator=va,
        volatility_reference=vr,
        index_reference=index_ref,
        last_update_timestamp=last,
        pair_type=data[o + 67],
        active_id=active_id,
        bin_step=bin_step,
        status=status,
        activation_type=data[o + 78],
        token_x_mint=key(80),
        token_y_mint=key(112),
        reserve_x=key(144),
        reserve_y=key(176),
        oracle=key(544),
        activation_point=struct.unpack_from("<Q", data, o + 808)[0],
        token_mint_x_program_flag=data[o + 872],
        token_mint_y_program_flag=data[o + 873],
    )


@dataclass(frozen=True, slots=True)
class Bin:
    """A bin's market-making reserves, stored Q64.64 price (0 until touched) and limit orders."""

    amount_x: int
    amount_y: int
    price: int
    open_order_amount: int = 0
    processed_order_remaining_amount: int = 0
    limit_order_ask_side: bool = False

    def limit_orders(self, swap_for_y: bool) -> tuple[int, int]:
        """(processed remaining, open) order amounts a swap this way fills: selling x fills bids."""
        if swap_for_y != self.limit_order_ask_side:
            return self.processed_order_remaining_amount, self.open_order_amount
        return 0, 0


@dataclass(frozen=True, slots=True)
class BinArray:
    """70 consecutive bins, from bin id `index * 70`."""

    index: int
    version: int
    lb_pair: Pubkey
    bins: tuple[Bin, ...]

    @property
    def lower_bin_id(self) -> int:
        """The first bin id this array holds."""
        return self.index * BINS_PER_ARRAY


def decode_bin_array(data: bytes) -> BinArray:
    """Decode a `BinArray` account."""
    _check(data, BIN_ARRAY_DISCRIMINATOR, "BinArray")
    index, version = struct.unpack_from("<qB", data, DISCRIMINATOR)
    bins = []
    for i in range(BINS_PER_ARRAY):
        at = BIN_ARRAY_HEADER + i * BIN_SIZE
        x, y, lo, hi = struct.unpack_from("<QQQQ", data, at)
        open_orders, _, processed, _, ask = struct.unpack_from("<QQQIB", data, at + 112)
        bins.append(Bin(x, y, lo | hi << 64, open_orders, processed, bool(ask)))
    return BinArray(index, version, Pubkey.from_bytes(data[24:56]), tuple(bins))


@dataclass(frozen=True, slots=True)
class Oracle:
    """The oracle header: the latest observation's index and how many are active."""

    idx: int
    active_size: int
    length: int


def decode_oracle(data: bytes) -> Oracle:
    """Decode an `Oracle` account's header (the observations follow it)."""
    _check(data, ORACLE_DISCRIMINATOR, "Oracle")
    return Oracle(*struct.unpack_from("<QQQ", data, DISCRIMINATOR))


def bin_array_index(bin_id: int) -> int:
    """The bin array holding `bin_id` (floor division, as the program rounds negative ids)."""
    return bin_id // BINS_PER_ARRAY


# --- the program's math --------------------------------------------------------------


def pow_q64(base: int, exp: int) -> int:
    """The program's Q64.64 power by squaring, with its truncations, so prices match bit for bit."""
    if exp == 0:
        return ONE
    invert = exp < 0
    e = -exp if invert else exp
    if e >= MAX_EXPONENTIAL:
        msg = f"exponent {exp} out of range"
        raise DlmmQuoteError(msg)
    squared = base
    result = ONE
    if squared >= result:
        squared = U128_MAX // squared
        invert = not invert
    bit = 1
    while bit < MAX_EXPONENTIAL:
        if e & bit:
            result = (result * squared) >> SCALE_OFFSET
        squared = (squared * squared) >> SCALE_OFFSET
        bit <<= 1
    if result == 0:
        msg = f"price underflow at exponent {exp}"
        raise DlmmQuoteError(msg)
    return U128_MAX // result if invert else result


def price_from_id(bin_id: int, bin_step: int) -> int:
    """A bin's Q64.64 price, y base units per x base unit: (1 + step / 10^4) ** id."""
    base = ONE + (bin_step << SCALE_OFFSET) // BASIS_POINT_MAX
    return pow_q64(base, bin_id)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _amount_in(amount_out: int, price: int, swap_for_y: bool) -> int:
    """Input that buys `amount_out` at `price`, rounded up."""
    if swap_for_y:
        return _ceil_div(amount_out << SCALE_OFFSET, price)
    return _ceil_div(amount_out * price, ONE)


def _amount_out(amount_in: int, price: int, swap_for_y: bool) -> int:
    """Output `amount_in` buys at `price`, rounded down."""
    return (
        (price * amount_in) >> SCALE_OFFSET if swap_for_y else (amount_in << SCALE_OFFSET) // price
    )


def _fill_bin(
    b: Bin, price: int, amount: int, swap_for_y: bool
) -> tuple[int, int, tuple[int, int, int]]:
    """(input used, output, output taken from each layer) filling a bin's layers in the
    program's order: the market-making reserves, then processed limit orders, then open ones."""
    processed, open_orders = b.limit_orders(swap_for_y)
    layers = (b.amount_y if swap_for_y else b.amount_x, processed, open_orders)
    used = out = 0
    taken = [0, 0, 0]
    for layer, available in enumerate(layers):
        if amount == 0:
            break
        if available == 0:
            continue
        max_in = _amount_in(available, price, swap_for_y)
        if amount >= max_in:
            used, out, amount = used + max_in, out + available, amount - max_in
            taken[layer] = available
        else:
            got = _amount_out(amount, price, swap_for_y)
            used, out, amount = used + amount, out + got, 0
            taken[layer] = got
    return used, out, (taken[0], taken[1], taken[2])


@dataclass(frozen=True, slots=True)
class DlmmQuote:
    """What an exact-in swap pays, its fee (input units), and where the active bin ends."""

    amount_out: int
    fee: int
    end_bin_id: int


@dataclass(frozen=True, slots=True)
class _Fill:
    """What a swap did to one bin: input added (fee excluded), output taken per layer."""

    bin_id: int
    used: int
    taken: tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class _Walk:
    quote: DlmmQuote
    fills: tuple[_Fill, ...]
    volatility_reference: int
    index_reference: int
    volatility_accumulator: int


def quote_exact_in(
    pair: LbPair,
    bin_arrays: Mapping[int, BinArray],
    amount_in: int,
    *,
    swap_for_y: bool,
    now: int,
    reserve_out: int | None = None,
) -> DlmmQuote:
    """The program's `swap` on this state at unix time `now`, walking only the given arrays.

    `reserve_out` is the balance of the pair's output vault: the bins' bookkeeping can promise
    more than it holds (old snapshots' bins carry legacy fields the program reads as limit
    orders), and then the program's transfer fails; so does the quote.
    """
    return _walk(pair, bin_arrays, amount_in, swap_for_y, now, reserve_out).quote


def swap_exact_in(
    pair: LbPair,
    bin_arrays: Mapping[int, BinArray],
    amount_in: int,
    *,
    swap_for_y: bool,
    now: int,
    reserve_out: int | None = None,
) -> tuple[DlmmQuote, LbPair, dict[int, BinArray]]:
    """`quote_exact_in`, and the pair and bin arrays the program leaves behind.

    Each bin it crossed gains the input net of the fee (fees are booked outside the bins) and
    loses what it paid out; the pair's active bin, fee references, volatility accumulator and
    last update time move as the program moves them. Exact for bins without limit orders (all
    the pairs this engine creates); for limit-order layers only the amounts taken are modelled.
    """
    walk = _walk(pair, bin_arrays, amount_in, swap_for_y, now, reserve_out)
    arrays = dict(bin_arrays)
    for fill in walk.fills:
        index = bin_array_index(fill.bin_id)
        array = arrays[index]
        at = fill.bin_id - array.lower_bin_id
        b = array.bins[at]
        market, processed, open_orders = fill.taken
        if swap_for_y:
            b = replace(b, amount_x=b.amount_x + fill.used, amount_y=b.amount_y - market)
        else:
            b = replace(b, amount_y=b.amount_y + fill.used, amount_x=b.amount_x - market)
        if processed or open_orders:
            b = replace(
                b,
                processed_order_remaining_amount=b.processed_order_remaining_amount - processed,
                open_order_amount=b.open_order_amount - open_orders,
            )
        arrays[index] = replace(array, bins=(*array.bins[:at], b, *array.bins[at + 1 :]))
    after = replace(
        pair,
        active_id=walk.quote.end_bin_id,
        volatility_reference=walk.volatility_reference,
        index_reference=walk.index_reference,
        volatility_accumulator=walk.volatility_accumulator,
        last_update_timestamp=now,
    )
    return walk.quote, after, arrays


def _walk(
    pair: LbPair,
    bin_arrays: Mapping[int, BinArray],
    amount_in: int,
    swap_for_y: bool,
    now: int,
    reserve_out: int | None,
) -> _Walk:
    if amount_in <= 0:
        msg = f"amount_in must be positive, got {amount_in}"
        raise DlmmQuoteError(msg)
    if pair.status != 0:
        msg = "pair is disabled"
        raise DlmmQuoteError(msg)
    # Fee on the input, unless the pair collects only in y and y is what comes out.
    fee_on_input = pair.collect_fee_mode == 0 or not swap_for_y
    # References move only after a pause of filter_period; a burst keeps its reference.
    reference, index_ref = pair.volatility_reference, pair.index_reference
    elapsed = now - pair.last_update_timestamp
    if elapsed >= pair.filter_period:
        index_ref = pair.active_id
        if elapsed < pair.decay_period:
            reference = pair.volatility_accumulator * pair.reduction_factor // BASIS_POINT_MAX
        else:
            reference = 0
    base_rate = pair.base_factor * pair.bin_step * 10 * 10**pair.base_fee_power_factor
    active = pair.active_id
    accumulator = pair.volatility_accumulator
    left, out, fees = amount_in, 0, 0
    fills: list[_Fill] = []
    while left > 0:
        array = bin_arrays.get(bin_array_index(active))
        if array is None:
            msg = f"no bin array loaded for bin {active}: not enough liquidity in view"
            raise DlmmQuoteError(msg)
        b = array.bins[active - array.lower_bin_id]
        processed, open_orders = b.limit_orders(swap_for_y)
        if (b.amount_y if swap_for_y else b.amount_x) + processed + open_orders:
            accumulator = min(
                reference + abs(index_ref - active) * BASIS_POINT_MAX,
                pair.max_volatility_accumulator,
            )
            variable = 0
            if pair.variable_fee_control > 0:
                square = (accumulator * pair.bin_step) ** 2
                variable = (pair.variable_fee_control * square + 99_999_999_999) // 100_000_000_000
            rate = min(base_rate + variable, MAX_FEE_RATE)
            price = b.price or price_from_id(active, pair.bin_step)
            fee = _ceil_div(left * rate, FEE_PRECISION) if fee_on_input else 0
            net = left - fee
            used, got, taken = _fill_bin(b, price, net, swap_for_y)
            paid = left
            if used < net:  # the bin ran dry: the fee is recomputed on what it took
                if fee_on_input:
                    fee = _ceil_div(used * rate, FEE_PRECISION - rate)
                paid = used + fee
            if not fee_on_input:
                fee = _ceil_div(got * rate, FEE_PRECISION)
                got -= fee
            left -= paid
            out += got
            fees += fee
            fills.append(_Fill(active, used, taken))
        if left > 0:
            active += -1 if swap_for_y else 1
            if not pair.min_bin_id <= active <= pair.max_bin_id:
                msg = "swap walks out of the pair's bin range"
                raise DlmmQuoteError(msg)
    if reserve_out is not None and out > reserve_out:
        msg = f"the bins promise {out} but the output vault holds {reserve_out}"
        raise DlmmQuoteError(msg)
    return _Walk(DlmmQuote(out, fees, active), tuple(fills), reference, index_ref, accumulator)
