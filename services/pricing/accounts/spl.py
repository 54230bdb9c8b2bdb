"""SPL Token layouts: a token account's balance and a mint's decimals."""

from __future__ import annotations

import struct

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
