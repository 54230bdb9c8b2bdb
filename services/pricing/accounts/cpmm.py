"""Raydium CPMM accounts (PoolState, AmmConfig) and the program's `swap_base_input` quote.

Layouts are those of the deployed mainnet program (raydium-io/raydium-cp-swap
`states/pool.rs`, `states/config.rs`; checked against a pool its `initialize` wrote): Anchor
zero-copy, packed, little endian after the 8-byte discriminator. The pool's tradable reserves
are its vault balances less the protocol and fund fees the program has set aside, which is why
a quote needs the vault accounts as well as the pool.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from solders.pubkey import Pubkey

from services.venues.cpmm import CpmmPool

DISCRIMINATOR = 8
FEE_RATE_DENOMINATOR = 1_000_000  # AmmConfig rates are in hundredths of a basis point
SWAP_DISABLED_BIT = 1 << 2  # PoolState.status bit 2: swaps disabled

POOL_STATE_LEN = 637
AMM_CONFIG_LEN = 236


@dataclass(frozen=True, slots=True)
class PoolState:
    """The fields of a CPMM pool that swaps read."""

    amm_config: Pubkey
    pool_creator: Pubkey
    token_0_vault: Pubkey
    token_1_vault: Pubkey
    lp_mint: Pubkey
    token_0_mint: Pubkey
    token_1_mint: Pubkey
    token_0_program: Pubkey
    token_1_program: Pubkey
    observation_key: Pubkey
    auth_bump: int
    status: int
    lp_mint_decimals: int
    mint_0_decimals: int
    mint_1_decimals: int
    lp_supply: int
    protocol_fees_token_0: int
    protocol_fees_token_1: int
    fund_fees_token_0: int
    fund_fees_token_1: int
    open_time: int

    def is_open(self, now: int) -> bool:
        """Whether the program accepts a swap at unix time `now` (else 6000 NotApproved)."""
        return not self.status & SWAP_DISABLED_BIT and now >= self.open_time

    def reserves(self, vault_0_amount: int, vault_1_amount: int) -> tuple[int, int]:
        """Tradable reserves: vault balances less the fees set aside for protocol and fund."""
        return (
            vault_0_amount - self.protocol_fees_token_0 - self.fund_fees_token_0,
            vault_1_amount - self.protocol_fees_token_1 - self.fund_fees_token_1,
        )


def decode_pool_state(data: bytes) -> PoolState:
    """Decode a `PoolState` account."""
    if len(data) != POOL_STATE_LEN:
        msg = f"not a CPMM PoolState: {len(data)} bytes"
        raise ValueError(msg)
    k = [Pubkey.from_bytes(data[o : o + 32]) for o in range(DISCRIMINATOR, 328, 32)]
    bump, status, lp_decimals, decimals_0, decimals_1 = struct.unpack_from("<BBBBB", data, 328)
    lp_supply, protocol_0, protocol_1, fund_0, fund_1, open_time = struct.unpack_from(
        "<QQQQQQ", data, 333
    )
    return PoolState(
        amm_config=k[0],
        pool_creator=k[1],
        token_0_vault=k[2],
        token_1_vault=k[3],
        lp_mint=k[4],
        token_0_mint=k[5],
        token_1_mint=k[6],
        token_0_program=k[7],
        token_1_program=k[8],
        observation_key=k[9],
        auth_bump=bump,
        status=status,
        lp_mint_decimals=lp_decimals,
        mint_0_decimals=decimals_0,
        mint_1_decimals=decimals_1,
        lp_supply=lp_supply,
        protocol_fees_token_0=protocol_0,
        protocol_fees_token_1=protocol_1,
        fund_fees_token_0=fund_0,
        fund_fees_token_1=fund_1,
        open_time=open_time,
    )


@dataclass(frozen=True, slots=True)
class AmmConfig:
    """A CPMM fee tier: rates in hundredths of a basis point (2_500 = 25 bps)."""

    bump: int
    disable_create_pool: bool
    index: int
    trade_fee_rate: int
    protocol_fee_rate: int
    fund_fee_rate: int
    create_pool_fee: int
    protocol_owner: Pubkey
    fund_owner: Pubkey


def decode_amm_config(data: bytes) -> AmmConfig:
    """Decode an `AmmConfig` account."""
    if len(data) != AMM_CONFIG_LEN:
        msg = f"not a CPMM AmmConfig: {len(data)} bytes"
        raise ValueError(msg)
    bump, disabled, index, trade, protocol, fund, create = struct.unpack_from(
        "<B?HQQQQ", data, DISCRIMINATOR
    )
    owners = (Pubkey.from_bytes(data[44:76]), Pubkey.from_bytes(data[76:108]))
    return AmmConfig(bump, disabled, index, trade, protocol, fund, create, *owners)


def quote_base_input(amount_in: int, reserve_in: int, reserve_out: int, trade_fee_rate: int) -> int:
    """`swap_base_input`'s output: fee (rounded up) off the input, then x*y=k, floored."""
    if amount_in <= 0:
        msg = f"amount_in must be positive, got {amount_in}"
        raise ValueError(msg)
    fee = -(-amount_in * trade_fee_rate // FEE_RATE_DENOMINATOR)
    net = amount_in - fee
    return reserve_out * net // (reserve_in + net)


def to_cpmm_pool(
    pool: PoolState,
    config: AmmConfig,
    vault_0_amount: int,
    vault_1_amount: int,
    symbol_0: str,
    symbol_1: str,
) -> CpmmPool:
    """The engine's `CpmmPool` for this on-chain state, token 0 as base.

    `CpmmPool` charges whole basis points with the same rounding, so it quotes exactly what the
    program pays whenever the tier's rate is a whole number of basis points (all mainnet tiers).
    """
    if config.trade_fee_rate % 100:
        msg = f"trade fee rate {config.trade_fee_rate} is not whole basis points"
        raise ValueError(msg)
    reserve_0, reserve_1 = pool.reserves(vault_0_amount, vault_1_amount)
    return CpmmPool(symbol_0, symbol_1, reserve_0, reserve_1, config.trade_fee_rate // 100)
