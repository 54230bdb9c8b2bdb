"""The pools of an in-process `SolanaVm`, decoded as the RPC adapter decodes a node's.

`registry_of` lists the programs' accounts as `RpcPoolSource.discover` does over
`getProgramAccounts`, filtered to the engine's tokens; `book_of` reads every account the
registry names, as one `getMultipleAccounts` would. For tests and in-process simulations
(`bench.best_venue`) that want the genesis pools without a node.
"""

from __future__ import annotations

from solders.pubkey import Pubkey

from services.chain.svm.constants import CPMM_PROGRAM_ID, DLMM_PROGRAM_ID
from services.chain.svm.vm import SolanaVm
from services.pricing.accounts.pools import (
    LB_PAIR_LEN,
    PoolRegistry,
    bin_array_owner,
    cpmm_listing,
    dlmm_listing,
)
from services.venues.pool import PoolBook


def registry_of(vm: SolanaVm) -> PoolRegistry:
    """What `RpcPoolSource.discover` finds, listed from the VM directly."""
    cpmm = [
        listing
        for address, account in vm.svm.get_program_accounts(CPMM_PROGRAM_ID)
        if (listing := cpmm_listing(address, bytes(account.data))) is not None
    ]
    owned = vm.svm.get_program_accounts(DLMM_PROGRAM_ID)
    arrays: dict[Pubkey, list[tuple[int, Pubkey]]] = {}
    for address, account in owned:
        found = bin_array_owner(bytes(account.data)[:56])
        if found is not None:
            arrays.setdefault(found[1], []).append((found[0], address))
    dlmm = [
        pair
        for address, account in owned
        if len(account.data) == LB_PAIR_LEN
        and (pair := dlmm_listing(address, bytes(account.data), arrays.get(address, [])))
        is not None
    ]
    return PoolRegistry.of(cpmm, dlmm)


def book_of(vm: SolanaVm, registry: PoolRegistry) -> PoolBook:
    """One read of every account the registry names, as getMultipleAccounts would give it."""
    accounts = {}
    for key in registry.addresses():
        account = vm.svm.get_account(key)
        accounts[key] = None if account is None else bytes(account.data)
    return registry.book(accounts)
