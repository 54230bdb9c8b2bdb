"""Landed swaps as trades: a block's transactions decoded by their pools' vault balances.

Pure: the input is a transaction as `getBlock` answers it (json encoding: the account keys, the
first signature, `meta.err` and the pre/post token balances the node records), and the vaults of
the pools the engine knows (`PoolRegistry`). A swap changes its pool's two vaults in opposite
directions: base into the vault and quote out is a sale of the base (side "sell", from the
trader's side), the reverse a buy; what the vaults gained and lost is exactly what the trader paid
and received, fees included. A transaction touching several pools (a split, two hops) is several
trades with one signature; a failed transaction is none. The signer (the first account key, the
fee payer) decides `source`: "engine" for the engine's wallet, else "background".
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal
from typing import Any

from schemas.market import MarketTrade, pair_name
from services.domain.tokens import get_token
from services.pricing.accounts.pools import PoolRegistry, orient
from services.venues.pool import Pair, Venue

_PRICE = Context(prec=12)


@dataclass(frozen=True, slots=True)
class Vault:
    """One token vault of a pool: which pool, and which of its tokens it holds."""

    venue: Venue
    pair: Pair  # (base, quote)
    symbol: str


def vaults(registry: PoolRegistry) -> dict[str, Vault]:
    """Every pool vault the registry lists, by address (base58)."""
    found: dict[str, Vault] = {}
    for c in registry.cpmm:
        pair = orient(c.symbol_0, c.symbol_1)
        found[str(c.state.token_0_vault)] = Vault(Venue.RAYDIUM, pair, c.symbol_0)
        found[str(c.state.token_1_vault)] = Vault(Venue.RAYDIUM, pair, c.symbol_1)
    for d in registry.dlmm:
        pair = orient(d.symbol_x, d.symbol_y)
        found[str(d.pair.reserve_x)] = Vault(Venue.METEORA, pair, d.symbol_x)
        found[str(d.pair.reserve_y)] = Vault(Venue.METEORA, pair, d.symbol_y)
    return found


def _amounts(balances: object) -> dict[int, int]:
    if not isinstance(balances, list):
        return {}
    return {int(b["accountIndex"]): int(b["uiTokenAmount"]["amount"]) for b in balances}


def decode_trades(
    tx: Mapping[str, Any],
    *,
    slot: int,
    at: datetime,
    vaults: Mapping[str, Vault],
    engine: Collection[str],
) -> list[MarketTrade]:
    """The trades one landed transaction made on known pools, in pool order of appearance."""
    meta = tx.get("meta") or {}
    if meta.get("err") is not None:
        return []
    message = tx["transaction"]["message"]
    keys: list[str] = message["accountKeys"]
    signature: str = tx["transaction"]["signatures"][0]
    pre, post = _amounts(meta.get("preTokenBalances")), _amounts(meta.get("postTokenBalances"))
    changes: dict[tuple[Venue, Pair], dict[str, int]] = {}
    for index in sorted(pre.keys() | post.keys()):
        vault = vaults.get(keys[index]) if index < len(keys) else None
        if vault is None:
            continue
        delta = post.get(index, 0) - pre.get(index, 0)
        changes.setdefault((vault.venue, vault.pair), {})[vault.symbol] = delta
    source = "engine" if keys and keys[0] in engine else "background"
    trades = []
    for (venue, (base, quote)), deltas in changes.items():
        base_in, quote_in = deltas.get(base, 0), deltas.get(quote, 0)
        if base_in > 0 > quote_in:
            side, base_units, quote_units = "sell", base_in, -quote_in
        elif quote_in > 0 > base_in:
            side, base_units, quote_units = "buy", -base_in, quote_in
        else:
            continue  # not a swap (a deposit, a withdrawal)
        amount_base = Decimal(base_units).scaleb(-get_token(base).decimals)
        amount_quote = Decimal(quote_units).scaleb(-get_token(quote).decimals)
        trades.append(
            MarketTrade(
                pair=pair_name(base, quote),
                base=base,
                quote=quote,
                venue=venue.value,
                side=side,
                amount_base=amount_base,
                amount_quote=amount_quote,
                price=_PRICE.divide(amount_quote, amount_base),
                slot=slot,
                at=at,
                signature=signature,
                source=source,
            )
        )
    return trades
