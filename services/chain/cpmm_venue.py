"""Raydium quotes from the CPMM pools' accounts over Solana RPC, for `OEE_CHAIN=svm`.

Temporary and deliberately small: until the RPC venue adapters for both programs land, the
router quotes the seeded market's CPMM pools (the ones `oee chain`'s genesis creates) from
`getMultipleAccounts` of each pool, its vaults and its fee tier, decoded by
`services.pricing.accounts.cpmm`, which quotes exactly what the program pays.
"""

from __future__ import annotations

from collections.abc import Sequence

from solders.pubkey import Pubkey

from services.chain.solana_client import RPC_DOWN, AsyncClientRpc, unreachable
from services.chain.svm.vm import CpmmPoolKeys
from services.domain.tokens import TOKENS
from services.pricing.accounts.cpmm import decode_amm_config, decode_pool_state
from services.pricing.accounts.spl import decode_token_amount
from services.venues.cpmm import CpmmPool
from services.venues.market import DEFAULT_PAIRS
from services.venues.pool import Pair, Pool, PoolBook, Venue

SEEDED_PAIRS: tuple[Pair, ...] = tuple(spec.pair for spec in DEFAULT_PAIRS)


class CpmmAccountsVenue:
    """`VenueAdapter` for Raydium: each known pair's pool decoded from the chain's accounts."""

    def __init__(self, rpc: AsyncClientRpc, pairs: Sequence[Pair] = SEEDED_PAIRS) -> None:
        self._rpc = rpc
        self._pairs = [
            (
                pair,
                CpmmPoolKeys.derive(
                    Pubkey.from_string(TOKENS[pair[0]].mint),
                    Pubkey.from_string(TOKENS[pair[1]].mint),
                ),
            )
            for pair in pairs
        ]

    @property
    def venue(self) -> Venue:
        return Venue.RAYDIUM

    async def load_pools(self) -> tuple[int, PoolBook]:
        keys = [k for _, p in self._pairs for k in (p.pool, p.vault0, p.vault1, p.amm_config)]
        try:
            resp = await self._rpc.client.get_multiple_accounts(keys)
        except RPC_DOWN as exc:
            raise unreachable(exc) from None
        accounts = resp.value
        book: dict[tuple[Venue, Pair], Pool] = {}
        for n, (pair, pool_keys) in enumerate(self._pairs):
            pool_info, vault0, vault1, config_info = accounts[4 * n : 4 * n + 4]
            if pool_info is None or vault0 is None or vault1 is None or config_info is None:
                continue  # no such pool on this chain
            state = decode_pool_state(bytes(pool_info.data))
            config = decode_amm_config(bytes(config_info.data))
            r0, r1 = state.reserves(
                decode_token_amount(bytes(vault0.data)), decode_token_amount(bytes(vault1.data))
            )
            base_is_0 = pool_keys.mint0 == Pubkey.from_string(TOKENS[pair[0]].mint)
            reserve_base, reserve_quote = (r0, r1) if base_is_0 else (r1, r0)
            book[(Venue.RAYDIUM, pair)] = CpmmPool(
                pair[0], pair[1], reserve_base, reserve_quote, config.trade_fee_rate // 100
            )
        if not book:
            msg = "no CPMM pool of the known pairs exists on this chain"
            raise LookupError(msg)
        return resp.context.slot, book
