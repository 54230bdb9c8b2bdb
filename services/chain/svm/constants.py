"""Mainnet addresses the VM hosts the programs and accounts at, so instructions match mainnet's."""

from __future__ import annotations

from pathlib import Path

from solders.pubkey import Pubkey

ASSETS = Path(__file__).resolve().parent
PROGRAMS = ASSETS / "programs"
ACCOUNTS = ASSETS / "accounts"

CPMM_PROGRAM_ID = Pubkey.from_string("CPMMoo8L3F4NbTegBCKVNunggL7H1ZpdTHKxQB5qKP1C")
DLMM_PROGRAM_ID = Pubkey.from_string("LBUZKhRxPF3XUpBCjp4YzTKgLccjZhTSDM9YuVaPwxo")
TOKEN_PROGRAM_ID = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM_ID = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
ATA_PROGRAM_ID = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
SYSTEM_PROGRAM_ID = Pubkey.from_string("11111111111111111111111111111111")
RENT_SYSVAR_ID = Pubkey.from_string("SysvarRent111111111111111111111111111111111")
NATIVE_MINT = Pubkey.from_string("So11111111111111111111111111111111111111112")

# Mainnet CPMM AmmConfig index 0 (25 bps) and its pool-creation fee receiver (a wSOL account).
CPMM_AMM_CONFIG = Pubkey.from_string("D4FPEruKEHrG5TenZ2mpDGEfu1iUvTiqBxvpU8HLBvC2")
CPMM_CREATE_POOL_FEE = Pubkey.from_string("DNXgeM9EiiaAbaWvwjHj9fQQLAX5ZsfHyvmYUNRAdNC8")

MINT_RENT = 1_461_600  # rent-exempt lamports of an 82-byte SPL mint
TOKEN_ACCOUNT_RENT = 2_039_280  # rent-exempt lamports of a 165-byte SPL token account

# DLMM: the base key of launch ("customizable permissionless") pairs' addresses, the widest bin
# range a preset allows per bin step (the program's MAX_BIN_ID_PER_BIN_STEP / bin_step), and how
# many bins one position can hold when it is created.
DLMM_ILM_BASE_KEY = Pubkey.from_string("MFGQxwAmB91SwuYX36okv2Qmdc9aMuHTwWGUrp4AtB1")
DLMM_MAX_BIN_ID_PER_BIN_STEP = 351_639
DLMM_BINS_PER_POSITION = 70
DLMM_BIN_ARRAY_BITMAP_RANGE = 512  # bin array indices in [-512, 512) need no bitmap extension
