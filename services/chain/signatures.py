"""Solana-style transaction signatures derived from the order.

One order, one signature: a retried or replayed execution carries the same
signature, which is what lets the chain answer it with the first result instead
of trading twice.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

import base58


def signature_for(order_id: uuid.UUID, seed: int) -> str:
    """64 bytes derived from (seed, order id), base58 like an ed25519 signature (87-88 chars)."""
    key = f"oee-chain:{seed}".encode()
    digest = hmac.new(key, order_id.bytes, hashlib.sha512).digest()
    # A 64-byte value with a leading zero byte would encode shorter; real signatures
    # are 87-88 characters, so keep the first byte non-zero.
    digest = bytes([digest[0] | 0x80]) + digest[1:]
    return str(base58.b58encode(digest).decode())
