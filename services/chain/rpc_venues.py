"""Venue adapters over Solana JSON-RPC: pools found and read from the programs' own accounts.

As an aggregator does, `RpcPoolSource` knows no pool in advance. At start it lists the pool
accounts of both programs with `getProgramAccounts` (CPMM `PoolState`s and DLMM `LbPair`s by
size and discriminator, DLMM `BinArray`s by their first 56 bytes only) and keeps those between
the engine's tokens (`services.pricing.accounts.pools`). From then on one `getMultipleAccounts`
(the Clock sysvar, every pool, vault, fee tier and bin array) is a snapshot of both venues at
one slot, decoded into `Pool` values; it is cached for `max_age` seconds and reloaded once for
every quote waiting on it. `RpcVenue` is the `VenueAdapter` of one venue over that snapshot.

Pools or bin arrays created after discovery are not seen until `discover()` runs again.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import base58
import orjson
from solders.pubkey import Pubkey

from services.chain.svm.constants import (
    CPMM_PROGRAM_ID,
    DLMM_PROGRAM_ID,
    TOKEN_2022_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
)
from services.chain.svm.vm import CpmmPoolKeys, CpmmSwap, DlmmPoolKeys, DlmmSwap, SwapLeg
from services.domain.tokens import get_token
from services.pricing.accounts.cpmm import POOL_STATE_LEN
from services.pricing.accounts.dlmm import BIN_ARRAY_DISCRIMINATOR, LB_PAIR_DISCRIMINATOR
from services.pricing.accounts.pools import (
    BIN_ARRAY_LB_PAIR_OFFSET,
    BIN_ARRAY_LEN,
    CPMM_POOL_STATE_DISCRIMINATOR,
    LB_PAIR_LEN,
    CpmmListing,
    DlmmListing,
    PoolRegistry,
    bin_array_owner,
    cpmm_listing,
    dlmm_listing,
)
from services.pricing.ports import ChainUnreachable, PoolSnapshot
from services.pricing.routing import Route
from services.venues.pool import PoolBook, Venue

MAX_ACCOUNTS_PER_CALL = 100  # getMultipleAccounts' limit
SNAPSHOT_ATTEMPTS = 3  # reads split over several calls must agree on the slot


class RpcFailure(Exception):
    """The node answered, with a JSON-RPC error: not a connection problem."""


def _memcmp(offset: int, raw: bytes) -> dict[str, object]:
    return {"memcmp": {"offset": offset, "bytes": base58.b58encode(raw).decode()}}


class RpcPoolSource:
    """Discovers the pools once, then serves snapshots no older than `max_age` seconds."""

    def __init__(self, url: str, *, max_age: float = 0.1, timeout: float = 5.0) -> None:
        self._url = url
        self._max_age = max_age
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)
        self._registry: PoolRegistry | None = None
        self._snapshot: PoolSnapshot | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()
        self.reloads = 0  # snapshots read from the node, for tests and metrics

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- JSON-RPC ----------------------------------------------------------------------------

    async def call(self, calls: Sequence[tuple[str, list[object]]]) -> list[Any]:
        """A batch of JSON-RPC calls in one POST (for other readers of the same node)."""
        return await self._call(calls)

    async def _call(self, calls: Sequence[tuple[str, list[object]]]) -> list[Any]:
        """One HTTP POST carrying a batch of calls; their results in order."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        body = [
            {"jsonrpc": "2.0", "id": next(self._ids), "method": m, "params": p} for m, p in calls
        ]
        try:
            async with self._session.post(
                self._url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
            ) as response:
                if response.status >= 500:
                    msg = f"chain RPC answered HTTP {response.status}"
                    raise ChainUnreachable(msg)
                answers = orjson.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ChainUnreachable(
                f"chain RPC at {self._url}: {exc or type(exc).__name__}"
            ) from None
        except orjson.JSONDecodeError as exc:
            raise RpcFailure(f"chain RPC answered no JSON: {exc}") from None
        results = []
        for answer in answers:
            if "error" in answer:
                raise RpcFailure(f"chain RPC error: {answer['error']}")
            results.append(answer["result"])
        return results

    async def slot(self) -> int:
        """The node's current slot (`getSlot`): a cheap probe of the chain."""
        (found,) = await self._call([("getSlot", [])])
        return int(found)

    # --- discovery ---------------------------------------------------------------------------

    async def discover(self) -> PoolRegistry:
        """List both programs' pools between the engine's tokens (`getProgramAccounts`)."""
        base64_ = {"encoding": "base64"}
        cpmm, pairs, arrays = await self._call(
            [
                (
                    "getProgramAccounts",
                    [
                        str(CPMM_PROGRAM_ID),
                        base64_
                        | {
                            "filters": [
                                {"dataSize": POOL_STATE_LEN},
                                _memcmp(0, CPMM_POOL_STATE_DISCRIMINATOR),
                            ]
                        },
                    ],
                ),
                (
                    "getProgramAccounts",
                    [
                        str(DLMM_PROGRAM_ID),
                        base64_
                        | {
                            "filters": [
                                {"dataSize": LB_PAIR_LEN},
                                _memcmp(0, LB_PAIR_DISCRIMINATOR),
                            ]
                        },
                    ],
                ),
                (
                    "getProgramAccounts",
                    [
                        str(DLMM_PROGRAM_ID),
                        base64_
                        | {
                            "filters": [
                                {"dataSize": BIN_ARRAY_LEN},
                                _memcmp(0, BIN_ARRAY_DISCRIMINATOR),
                            ],
                            # index and lb_pair are all discovery needs of a 10 KB account
                            "dataSlice": {"offset": 0, "length": BIN_ARRAY_LB_PAIR_OFFSET + 32},
                        },
                    ],
                ),
            ]
        )
        by_pair: dict[Pubkey, list[tuple[int, Pubkey]]] = {}
        for item in arrays:
            owner = bin_array_owner(_data(item["account"]))
            if owner is not None:
                by_pair.setdefault(owner[1], []).append(
                    (owner[0], Pubkey.from_string(item["pubkey"]))
                )
        cpmm_found: list[CpmmListing] = []
        for item in cpmm:
            c = cpmm_listing(Pubkey.from_string(item["pubkey"]), _data(item["account"]))
            if c is not None:
                cpmm_found.append(c)
        dlmm_found: list[DlmmListing] = []
        for item in pairs:
            address = Pubkey.from_string(item["pubkey"])
            d = dlmm_listing(address, _data(item["account"]), by_pair.get(address, []))
            if d is not None:
                dlmm_found.append(d)
        self._registry = PoolRegistry.of(cpmm_found, dlmm_found)
        return self._registry

    async def registry(self) -> PoolRegistry:
        """The pools found at start (discovering them on first use)."""
        if self._registry is None:
            async with self._lock:
                if self._registry is None:
                    await self.discover()
        assert self._registry is not None
        return self._registry

    # --- snapshots ---------------------------------------------------------------------------

    async def snapshot(self) -> PoolSnapshot:
        """Both venues' pools at one slot; reloaded at most every `max_age`, once for all."""
        registry = await self.registry()
        if self._snapshot is None or time.monotonic() - self._loaded_at > self._max_age:
            async with self._lock:  # one reload for all waiting quotes
                if self._snapshot is None or time.monotonic() - self._loaded_at > self._max_age:
                    await self._reload(registry)
        assert self._snapshot is not None
        return self._snapshot

    async def _reload(self, registry: PoolRegistry) -> None:
        """Read the pools again, unless the chain has not left the snapshot's slot.

        Accounts change only when a block lands, and blocks come every 400 ms while
        snapshots expire every 100 ms: three reads in four were the same accounts,
        each decoded again (py-spy at 150 orders/s: 12 % of the router in decoding
        bin arrays). A `getSlot` tells first, for a fraction of the node's work.
        """
        if self._snapshot is not None and await self.slot() == self._snapshot.slot:
            self._loaded_at = time.monotonic()
            return
        self._snapshot = await self._read(registry)
        self._loaded_at = time.monotonic()
        self.reloads += 1

    async def _read(self, registry: PoolRegistry) -> PoolSnapshot:
        addresses = registry.addresses()
        chunks = [
            addresses[i : i + MAX_ACCOUNTS_PER_CALL]
            for i in range(0, len(addresses), MAX_ACCOUNTS_PER_CALL)
        ]
        for _ in range(SNAPSHOT_ATTEMPTS):
            answers = await self._call(
                [
                    ("getMultipleAccounts", [[str(k) for k in chunk], {"encoding": "base64"}])
                    for chunk in chunks
                ]
            )
            slots = {answer["context"]["slot"] for answer in answers}
            if len(slots) == 1:
                values = [value for answer in answers for value in answer["value"]]
                accounts = {
                    key: None if value is None else _data(value)
                    for key, value in zip(addresses, values, strict=True)
                }
                return PoolSnapshot(slots.pop(), registry.book(accounts))
        msg = f"no consistent snapshot of {len(addresses)} accounts in {SNAPSHOT_ATTEMPTS} reads"
        raise RpcFailure(msg)


def _data(account: dict[str, Any]) -> bytes:
    encoded, encoding = account["data"]
    if encoding != "base64":
        msg = f"expected base64 account data, got {encoding}"
        raise RpcFailure(msg)
    return base64.b64decode(encoded)


class RpcVenue:
    """One venue's pools from the shared RPC snapshot: a `VenueAdapter`."""

    def __init__(self, venue: Venue, source: RpcPoolSource) -> None:
        self._venue = venue
        self._source = source

    @property
    def venue(self) -> Venue:
        return self._venue

    async def load_pools(self) -> tuple[int, PoolBook]:
        snapshot = await self._source.snapshot()
        return snapshot.slot, {
            key: pool for key, pool in snapshot.pools.items() if key[0] is self._venue
        }


def rpc_venues(source: RpcPoolSource) -> list[RpcVenue]:
    """An adapter per venue, all over the same snapshot."""
    return [RpcVenue(venue, source) for venue in Venue]


# --- from a route back to the programs' accounts ---------------------------------------------

_TOKEN_PROGRAMS = {0: TOKEN_PROGRAM_ID, 1: TOKEN_2022_PROGRAM_ID}


def cpmm_keys(listing: CpmmListing) -> CpmmPoolKeys:
    """The accounts a `swap_base_input` on a listed pool names, from its `PoolState`."""
    s = listing.state
    return CpmmPoolKeys(
        pool=listing.address,
        amm_config=s.amm_config,
        authority=CpmmPoolKeys.derive(s.token_0_mint, s.token_1_mint, s.amm_config).authority,
        mint0=s.token_0_mint,
        mint1=s.token_1_mint,
        vault0=s.token_0_vault,
        vault1=s.token_1_vault,
        lp_mint=s.lp_mint,
        observation=s.observation_key,
    )


def dlmm_keys(listing: DlmmListing) -> DlmmPoolKeys:
    """The accounts a DLMM `swap` on a listed pair names, from its `LbPair`."""
    p = listing.pair
    return DlmmPoolKeys(
        lb_pair=listing.address,
        mint_x=p.token_x_mint,
        mint_y=p.token_y_mint,
        reserve_x=p.reserve_x,
        reserve_y=p.reserve_y,
        oracle=p.oracle,
        token_program_x=_TOKEN_PROGRAMS[p.token_mint_x_program_flag],
        token_program_y=_TOKEN_PROGRAMS[p.token_mint_y_program_flag],
        bin_arrays=listing.bin_arrays,
    )


def swap_legs(route: Route, registry: PoolRegistry) -> list[SwapLeg]:
    """The route's legs as swaps on the listed pools, in order, each with its quoted amount
    out as its minimum: a leg that would pay less than quoted fails the whole transaction."""
    legs: list[SwapLeg] = []
    for leg in route.legs:
        mint_in = Pubkey.from_string(get_token(leg.token_in).mint)
        if leg.venue is Venue.RAYDIUM:
            cpmm = cpmm_keys(registry.cpmm_for(leg.token_in, leg.token_out))
            legs.append(CpmmSwap(cpmm, mint_in, leg.amount_in, leg.amount_out))
        else:
            dlmm = dlmm_keys(registry.dlmm_for(leg.token_in, leg.token_out))
            legs.append(DlmmSwap(dlmm, mint_in, leg.amount_in, leg.amount_out))
    return legs
