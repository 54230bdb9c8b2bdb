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
import functools
import itertools
import struct
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
    CLOCK_SYSVAR,
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

CLOCK_UNIX_TIME_OFFSET = 32  # slot, epoch start, epoch, leader schedule epoch: 8 bytes each

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
        self._epoch = 0  # bumped by expire_snapshot: reads begun before it are not used
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
        # At most one read per call, unless an expiry during it made it unusable (a source with
        # max_age 0, the market process's, reads every time and must not read in a loop).
        registry = await self.registry()  # outside the lock: discovery takes it
        if self._stale():
            async with self._lock:  # one reload for all waiting quotes
                while self._stale():
                    epoch = self._epoch
                    # Accounts change only when a block lands: blocks come every 400 ms and
                    # snapshots expire every 100 ms, so three reads in four were the same
                    # accounts decoded again (py-spy at 150 orders/s: 12 % of the router in
                    # decoding bin arrays). A `getSlot` tells first, for a fraction of the work.
                    current = self._snapshot
                    if (
                        current is not None
                        and await self.slot() == current.slot
                        and epoch == self._epoch
                    ):
                        self._loaded_at = time.monotonic()
                        break
                    snapshot = await self._read(self._registry or registry)
                    self._loaded_at = time.monotonic()
                    self.reloads += 1
                    if epoch == self._epoch:
                        self._snapshot = snapshot
                        break
                    self._snapshot = None  # begun before an expiry: read again
        assert self._snapshot is not None
        return self._snapshot

    def _stale(self) -> bool:
        return self._snapshot is None or time.monotonic() - self._loaded_at > self._max_age

    def expire_snapshot(self) -> None:
        """Make the next quote read the pools afresh (a pool just opened: an older snapshot,
        taken before its open time, leaves it out). A read already under way when this is
        called is not used either: it may have been taken before the open."""
        self._snapshot = None
        self._epoch += 1

    async def snapshot_as_of(self, unix_time: int) -> PoolSnapshot:
        """The pools read now but decoded as if the chain's clock were at least `unix_time`:
        a pool that opens then is in the book, at the reserves it will open with (a sniper
        is quoted, built and signed before its pool opens)."""
        return await self._read(await self.registry(), clock_at_least=unix_time)

    async def _read(
        self, registry: PoolRegistry, *, clock_at_least: int | None = None
    ) -> PoolSnapshot:
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
                clock = accounts.get(CLOCK_SYSVAR)
                if clock_at_least is not None and clock is not None:
                    # Clock sysvar: slot, epoch start, epoch, leader epoch, then unix time.
                    (now,) = struct.unpack_from("<q", clock, CLOCK_UNIX_TIME_OFFSET)
                    later = struct.pack("<q", max(now, clock_at_least))
                    accounts[CLOCK_SYSVAR] = (
                        clock[:CLOCK_UNIX_TIME_OFFSET] + later + clock[CLOCK_UNIX_TIME_OFFSET + 8 :]
                    )
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


class SnapshotVenue:
    """One venue's pools from a snapshot taken once (a `VenueAdapter`)."""

    def __init__(self, venue: Venue, snapshot: PoolSnapshot) -> None:
        self._venue = venue
        self._snapshot = snapshot

    @property
    def venue(self) -> Venue:
        return self._venue

    async def load_pools(self) -> tuple[int, PoolBook]:
        pools = self._snapshot.pools
        return self._snapshot.slot, {key: p for key, p in pools.items() if key[0] is self._venue}


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
        authority=_cpmm_authority(s.token_0_mint, s.token_1_mint, s.amm_config),
        mint0=s.token_0_mint,
        mint1=s.token_1_mint,
        vault0=s.token_0_vault,
        vault1=s.token_1_vault,
        lp_mint=s.lp_mint,
        observation=s.observation_key,
    )


@functools.lru_cache(maxsize=1024)
def _cpmm_authority(mint0: Pubkey, mint1: Pubkey, amm_config: Pubkey) -> Pubkey:
    """Derived once per pool: each transaction the router builds names it."""
    return CpmmPoolKeys.derive(mint0, mint1, amm_config).authority


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
