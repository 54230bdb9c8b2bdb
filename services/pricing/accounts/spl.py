"""SPL Token layouts: a token account's balance, a mint's decimals, supply and authorities."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from solders.pubkey import Pubkey

TOKEN_ACCOUNT_AMOUNT_OFFSET = 64  # mint (32) + owner (32), then amount: u64
MINT_DECIMALS_OFFSET = 44  # mint authority option (36) + supply (8), then decimals: u8


def decode_token_amount(data: bytes) -> int:
    """Base units held by an SPL (or Token-2022) token account."""
    if len(data) < TOKEN_ACCOUNT_AMOUNT_OFFSET + 8:
        msg = f"not a token account: {len(data)} bytes"
        raise ValueError(msg)
    return int(struct.unpack_from("<Q", data, TOKEN_ACCOUNT_AMOUNT_OFFSET)[0])


def decode_mint_decimals(data: bytes) -> int:
    """Decimals of an SPL (or Token-2022) mint."""
    if len(data) < MINT_DECIMALS_OFFSET + 1:
        msg = f"not a mint: {len(data)} bytes"
        raise ValueError(msg)
    return data[MINT_DECIMALS_OFFSET]


MINT_LEN = 82


@dataclass(frozen=True, slots=True)
class Mint:
    """An SPL mint: supply, decimals and its two authorities (None: renounced)."""

    supply: int
    decimals: int
    mint_authority: Pubkey | None
    freeze_authority: Pubkey | None


def decode_mint(data: bytes) -> Mint:
    """Decode an SPL (or Token-2022) mint's base layout: COption<Pubkey>, u64, u8, bool, COption."""
    if len(data) < MINT_LEN:
        msg = f"not a mint: {len(data)} bytes"
        raise ValueError(msg)

    def option(offset: int) -> Pubkey | None:
        (tag,) = struct.unpack_from("<I", data, offset)
        return Pubkey.from_bytes(data[offset + 4 : offset + 36]) if tag == 1 else None

    (supply,) = struct.unpack_from("<Q", data, 36)
    return Mint(supply, data[MINT_DECIMALS_OFFSET], option(0), option(46))
