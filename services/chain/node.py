"""The chain node: a `SolanaVm` that advances in slots and persists each block before it is seen.

- Slots follow the wall clock from the genesis row's origin (`OEE_SLOT_MS`, 400 ms); every slot
  is a block (an empty one lands nothing), so block height equals slot.
- Received transactions queue; at each slot boundary the queue lands as that slot's block, with
  the VM clock at the slot's time, ordered as a leader's scheduler orders it: by compute-unit
  price (the priority fee), highest first, ties (every transaction without one) in arrival
  order. Its landed transactions and the post-state of every account they could write are
  committed to PostgreSQL in one transaction, and only then do statuses, balances and accounts
  show them (reads wait for the commit).
- Blockhashes are a function of (seed, slot); one is valid for `MAX_PROCESSING_AGE` (150) slots,
  so `lastValidBlockHeight` is its slot + 150, as on Solana. A transaction whose blockhash has
  expired by its block is dropped, never landed; preflight refuses it with BlockhashNotFound.
- A signature lands at most once: one already landed (or queued) is not queued again, and
  sending it answers with the same signature, whose status is the first result.
- A block whose commit fails because PostgreSQL is unreachable is committed again until it
  is: the node stalls (nothing new confirmed, reads wait), it does not stop.
- On start the node rebuilds genesis from the seed and lays every persisted account state over
  it, so a node killed at any point restarts exactly at its last committed block.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import psycopg
import structlog
from psycopg_pool import PoolTimeout
from solders.account import Account
from solders.compute_budget import ID as COMPUTE_BUDGET_PROGRAM_ID
from solders.hash import Hash
from solders.litesvm import LiteSVM
from solders.message import MessageHeader, MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata, SimulatedTransactionInfo
from solders.transaction_status import (
    TransactionErrorInstructionError,
    TransactionErrorType,
    TransactionStatus,
)

from services.chain.genesis import Genesis, build_genesis
from services.chain.store import (
    Block,
    ChainStore,
    ErrJson,
    LandedTransaction,
    StoredTransaction,
    TokenBalance,
)
from services.chain.svm.constants import (
    SYSTEM_PROGRAM_ID,
    TOKEN_2022_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
)
from services.chain.svm.vm import SolanaVm
from services.pricing.accounts.spl import decode_token_amount

log = structlog.get_logger("chain.node")

MAX_PROCESSING_AGE = 150  # slots a blockhash stays valid for, as on Solana
FINALIZED_DEPTH = 32  # a block this deep is reported finalized rather than confirmed
TOKEN_ACCOUNT_LEN = 165  # an SPL token account's base layout
_TOKEN_PROGRAMS = (TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID)
SET_COMPUTE_UNIT_PRICE = 3  # the ComputeBudget instruction's tag; a u64 (micro-lamports) follows
STATUS_CACHE_SLOTS = 2 * MAX_PROCESSING_AGE  # recent statuses kept in memory for dedupe
PERSIST_RETRY_SECONDS = 0.5  # a block's commit is retried this often while PostgreSQL is down
SAMPLE_SECONDS = 60  # Solana's performance sample period
MAX_SAMPLES = 720  # getRecentPerformanceSamples' largest limit, as on Solana


class ChainMismatchError(RuntimeError):
    """The database holds another chain (another seed or wallet count) than the one asked for."""


class RpcError(Exception):
    """A JSON-RPC error as a Solana node answers it: code, message, optional data."""

    def __init__(self, code: int, message: str, data: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def err_json(err: TransactionErrorType | None) -> ErrJson:
    """Solana's JSON for a TransactionError: "BlockhashNotFound", {"InstructionError": [...]}."""
    if err is None:
        return None
    status = TransactionStatus(0, None, None, err, None)
    value: ErrJson = json.loads(status.to_json())["err"]
    return value


def err_message(err: ErrJson) -> str:
    """The message a Solana node puts after "Transaction simulation failed: "."""
    if err == "BlockhashNotFound":
        return "Blockhash not found"
    if isinstance(err, dict) and "InstructionError" in err:
        index, inner = err["InstructionError"]
        if isinstance(inner, dict) and "Custom" in inner:
            return (
                f"Error processing Instruction {index}: custom program error: {inner['Custom']:#x}"
            )
        return f"Error processing Instruction {index}: {inner}"
    return str(err)


def token_balances(
    svm: LiteSVM, keys: Sequence[Pubkey], decimals: dict[Pubkey, int] | None = None
) -> list[TokenBalance]:
    """Every SPL token account among `keys` with its mint, owner and amount: a node's
    `preTokenBalances`/`postTokenBalances`, read before and after a transaction runs.

    `decimals` caches each mint's decimals: a token account exists only for an initialized
    mint, whose decimals never change, and reading the mint again for every token account of
    every transaction, twice, was a share of the node's landing."""
    found: list[TokenBalance] = []
    for index, key in enumerate(keys):
        account = svm.get_account(key)
        if account is None or account.owner not in _TOKEN_PROGRAMS:
            continue
        data = bytes(account.data)
        if len(data) < TOKEN_ACCOUNT_LEN:
            continue  # a mint, not a token account
        mint = Pubkey.from_bytes(data[:32])
        known = None if decimals is None else decimals.get(mint)
        if known is None:
            mint_account = svm.get_account(mint)
            known = bytes(mint_account.data)[44] if mint_account is not None else 0
            if mint_account is not None and decimals is not None:
                decimals[mint] = known
        found.append(
            {
                "accountIndex": index,
                "mint": str(mint),
                "owner": str(Pubkey.from_bytes(data[32:64])),
                "programId": str(account.owner),
                "amount": str(decode_token_amount(data)),
                "decimals": known,
            }
        )
    return found


def blockhash_of(seed: int, slot: int) -> Hash:
    """The blockhash of a slot: a function of the seed, so a restart issues the same ones."""
    return Hash(hashlib.sha256(f"oee-chain:{seed}:blockhash:{slot}".encode()).digest())


def writable_indexes(header: MessageHeader, n_keys: int) -> list[int]:
    """Indexes of the account keys a message may write (static keys; no lookup tables)."""
    signed = header.num_required_signatures
    return [
        i
        for i in range(n_keys)
        if (i < signed - header.num_readonly_signed_accounts)
        or (signed <= i < n_keys - header.num_readonly_unsigned_accounts)
    ]


def compute_unit_price(tx: VersionedTransaction) -> int:
    """The transaction's priority: its `SetComputeUnitPrice` (micro-lamports per unit), else 0."""
    message = tx.message
    keys = message.account_keys
    for ix in message.instructions:
        data = bytes(ix.data)
        if (
            keys[ix.program_id_index] == COMPUTE_BUDGET_PROGRAM_ID
            and len(data) == 9
            and data[0] == SET_COMPUTE_UNIT_PRICE
        ):
            return int.from_bytes(data[1:], "little")
    return 0


@dataclass(slots=True)
class _Pending:
    signature: str
    tx: VersionedTransaction
    raw: bytes
    compute_unit_price: int = 0


class Priced(Protocol):
    @property
    def compute_unit_price(self) -> int: ...


P = TypeVar("P", bound=Priced)


def block_order(queued: Sequence[P]) -> list[P]:
    """A block's transactions (in arrival order) as a leader schedules them: highest
    compute-unit price first, equal prices (market orders have none) in arrival order."""
    return sorted(queued, key=lambda pending: -pending.compute_unit_price)  # a stable sort


@dataclass(frozen=True, slots=True)
class PerformanceSample:
    """`num_slots` slots ending at `slot`, which took `period_seconds`, and what they landed."""

    slot: int
    num_slots: int
    num_transactions: int
    period_seconds: int


@dataclass(slots=True)
class Stats:
    """CPU spent landing blocks (VM execution and reading back the accounts), and counts."""

    landing_cpu_seconds: float = 0.0
    landed: int = 0
    dropped: int = 0
    blocks: int = 0
    persist_seconds: list[float] = field(default_factory=list)

    @property
    def cpu_per_transaction(self) -> float:
        return self.landing_cpu_seconds / self.landed if self.landed else 0.0


class ChainNode:
    """LiteSVM advancing in slots, durable in PostgreSQL; `rpc.py` puts JSON-RPC in front."""

    def __init__(
        self,
        store: ChainStore,
        genesis: Genesis = Genesis(),  # noqa: B008 - frozen, immutable
        *,
        slot_ms: int = 400,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.store = store
        self.genesis = genesis
        self.slot_ms = slot_ms
        self._wall_ms = wall_ms
        self.stats = Stats()
        self.slot = 0  # the last committed block
        self._offset = 0  # slots added when the wall clock is behind the last block
        self._origin_ms = 0
        self._blockhashes: dict[Hash, int] = {}
        self._statuses: dict[str, LandedTransaction] = {}
        self._next_prune = 0
        self._pending: list[_Pending] = []
        self._pending_signatures: set[str] = set()
        self._landed_by_slot: deque[tuple[int, int]] = deque()  # (slot, landed) of recent blocks
        self._commit = asyncio.Lock()  # held from landing a block until it is committed
        self._stopping = asyncio.Event()
        self._vm: SolanaVm | None = None
        self._mint_decimals: dict[Pubkey, int] = {}  # `token_balances`' cache

    @property
    def vm(self) -> SolanaVm:
        if self._vm is None:
            msg = "the node has not started"
            raise RuntimeError(msg)
        return self._vm

    # --- start and the slot loop -------------------------------------------------------

    async def start(self) -> None:
        """Rebuild genesis, then every persisted account; resume at the last committed slot."""
        row = await self.store.genesis(self.genesis.seed, self.genesis.wallets, self._wall_ms())
        if (row.seed, row.wallets) != (self.genesis.seed, self.genesis.wallets):
            msg = (
                f"the database holds the chain of seed {row.seed} with {row.wallets} wallets,"
                f" not seed {self.genesis.seed} with {self.genesis.wallets}"
            )
            raise ChainMismatchError(msg)
        self._origin_ms = row.origin_ms
        vm = build_genesis(self.genesis).vm
        # The node checks blockhashes itself (LiteSVM knows only its latest one) and keeps its
        # own signature record; signatures are still verified.
        vm.svm.with_blockhash_check(False).with_transaction_history(0).with_sigverify(True)
        accounts = await self.store.accounts()
        for address, account in accounts:
            vm.svm.set_account(address, account)
        self._vm = vm
        last = await self.store.last_slot() or 0
        wall = self._wall_slot()
        self._offset = max(0, last - wall)
        self.slot = wall + self._offset
        for s in range(max(0, self.slot - MAX_PROCESSING_AGE), self.slot + 1):
            self._blockhashes[blockhash_of(self.genesis.seed, s)] = s
        recent = await self.store.landed_since(self.slot - STATUS_CACHE_SLOTS)
        self._statuses = {tx.signature: tx for tx in recent}
        self._set_clock(self.slot)
        log.info(
            "chain node started",
            slot=self.slot,
            last_block=last,
            accounts_restored=len(accounts),
            seed=self.genesis.seed,
        )

    def _wall_slot(self) -> int:
        return max(0, (self._wall_ms() - self._origin_ms) // self.slot_ms) + self._offset

    def unix_time(self, slot: int) -> int:
        return self.genesis.unix_timestamp + slot * self.slot_ms // 1000

    def _set_clock(self, slot: int) -> None:
        svm = self.vm.svm
        clock = svm.get_clock()
        clock.slot = slot
        clock.unix_timestamp = self.unix_time(slot)
        svm.set_clock(clock)

    async def run(self) -> None:
        """Land a block at every slot boundary until `stop()`; a failed commit ends the node."""
        while not self._stopping.is_set():
            boundary_ms = self._origin_ms + (self.slot + 1 - self._offset) * self.slot_ms
            delay = max(0.0, (boundary_ms - self._wall_ms()) / 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if not self._stopping.is_set():
                await self.tick()

    def stop(self) -> None:
        self._stopping.set()

    async def tick(self) -> None:
        """Close the current slot: land what is queued as its block, commit, then publish."""
        slot = max(self.slot + 1, self._wall_slot())
        async with self._commit:
            queued, self._pending = self._pending, []
            if queued:
                start = time.process_time()
                block = self._land(slot, block_order(queued))
                self.stats.landing_cpu_seconds += time.process_time() - start
                if block.transactions:
                    began = time.perf_counter()
                    await self._persist(block)
                    self.stats.persist_seconds.append(time.perf_counter() - began)
                    self.stats.blocks += 1
                for tx in block.transactions:
                    self._statuses[tx.signature] = tx
                self._count_landed(slot, len(block.transactions))
                for pending in queued:
                    self._pending_signatures.discard(pending.signature)
            self._advance(slot)

    def _count_landed(self, slot: int, landed: int) -> None:
        if landed:
            self._landed_by_slot.append((slot, landed))
        horizon = slot - MAX_SAMPLES * self._sample_slots()
        while self._landed_by_slot and self._landed_by_slot[0][0] <= horizon:
            self._landed_by_slot.popleft()

    def _sample_slots(self) -> int:
        # A sample spans whole seconds, so its slot length is exact: slots come in units that
        # last a whole number of seconds (5 slots = 2 s at 400 ms).
        unit = 1000 // math.gcd(1000, self.slot_ms)
        return max(unit, SAMPLE_SECONDS * 1000 // self.slot_ms // unit * unit)

    def performance_samples(self, limit: int) -> list[PerformanceSample]:
        """Solana's recent performance samples, newest first, each ending at a slot. Slots follow
        the wall clock, so a sample's duration is its slots x the slot length; a chain younger
        than one period gets one shorter sample (Solana's first sample takes a minute to come,
        but a client asking for the slot length should not have to wait for it)."""
        unit = 1000 // math.gcd(1000, self.slot_ms)
        samples: list[PerformanceSample] = []
        end = self.slot
        while len(samples) < limit:
            num_slots = min(self._sample_slots(), end // unit * unit)
            if num_slots == 0:
                break
            landed = sum(n for s, n in self._landed_by_slot if end - num_slots < s <= end)
            seconds = num_slots * self.slot_ms // 1000
            samples.append(PerformanceSample(end, num_slots, landed, seconds))
            end -= num_slots
        return samples

    async def _persist(self, block: Block) -> None:
        """Commit the block, waiting out a PostgreSQL outage: the block stays unreported (and
        reads wait) until it is committed, as a stalled validator confirms nothing. Any other
        failure ends the node, unreported; a restart resumes at the last committed block."""
        while True:
            try:
                await self.store.write_block(block)
                return
            except (psycopg.OperationalError, PoolTimeout) as exc:
                log.warning(
                    "block not committed; PostgreSQL unreachable",
                    slot=block.slot,
                    error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
            await asyncio.sleep(PERSIST_RETRY_SECONDS)
            # An error on commit leaves it unknown whether the commit happened: look first.
            with contextlib.suppress(psycopg.OperationalError, PoolTimeout):
                if await self.store.has_block(block.slot, block.blockhash):
                    return

    def _advance(self, slot: int) -> None:
        for s in range(max(self.slot + 1, slot - MAX_PROCESSING_AGE), slot + 1):
            self._blockhashes[blockhash_of(self.genesis.seed, s)] = s
        self.slot = slot
        oldest = slot - MAX_PROCESSING_AGE
        if len(self._blockhashes) > 2 * MAX_PROCESSING_AGE:
            self._blockhashes = {h: s for h, s in self._blockhashes.items() if s >= oldest}
        if slot >= self._next_prune:  # slots may be skipped: compare, not `slot % n == 0`
            horizon = slot - STATUS_CACHE_SLOTS
            self._statuses = {k: v for k, v in self._statuses.items() if v.slot >= horizon}
            self._next_prune = slot + MAX_PROCESSING_AGE
        self._set_clock(slot)

    def blockhash_valid(self, blockhash: Hash, slot: int) -> bool:
        """Whether a transaction carrying `blockhash` may still land in block `slot`."""
        made = self._blockhashes.get(blockhash)
        return made is not None and slot <= made + MAX_PROCESSING_AGE

    def _land(self, slot: int, queued: list[_Pending]) -> Block:
        """Run the queue in order; what ran (success or an instruction error) is the block."""
        svm = self.vm.svm
        self._set_clock(slot)
        landed: list[LandedTransaction] = []
        seen: set[str] = set()
        written: dict[Pubkey, None] = {}
        for pending in queued:
            signature = pending.signature
            if signature in self._statuses or signature in seen:
                continue
            message = pending.tx.message
            if not self.blockhash_valid(message.recent_blockhash, slot):
                self.stats.dropped += 1
                continue
            keys = message.account_keys
            pre = [svm.get_balance(key) or 0 for key in keys]
            pre_tokens = token_balances(svm, keys, self._mint_decimals)
            result = svm.send_transaction(pending.tx)
            if isinstance(result, FailedTransactionMetadata):
                err = result.err()
                # Only an execution failure is committed (with its fee); a transaction failing
                # to load (signature, fee payer, accounts) never makes it into a block.
                if not isinstance(err, TransactionErrorInstructionError):
                    self.stats.dropped += 1
                    continue
                meta = result.meta()
                error: ErrJson = err_json(err)
            else:
                meta, error = result, None
            landed.append(
                LandedTransaction(
                    signature=signature,
                    slot=slot,
                    position=len(landed),
                    err=error,
                    logs=list(meta.logs()),
                    compute_units=meta.compute_units_consumed(),
                    fee=meta.fee(),
                    pre_balances=pre,
                    post_balances=[svm.get_balance(key) or 0 for key in keys],
                    raw=pending.raw,
                    pre_token_balances=pre_tokens,
                    post_token_balances=token_balances(svm, keys, self._mint_decimals),
                )
            )
            seen.add(signature)
            for i in writable_indexes(message.header, len(keys)):
                written[keys[i]] = None
        self.stats.landed += len(landed)
        accounts = [(key, svm.get_account(key) or _closed()) for key in written]
        return Block(
            slot=slot,
            blockhash=str(blockhash_of(self.genesis.seed, slot)),
            unix_time=self.unix_time(slot),
            transactions=landed,
            accounts=accounts,
        )

    # --- what RPC calls -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def committed(self) -> AsyncIterator[SolanaVm]:
        """The VM at its last committed block: waits while a block is being committed."""
        async with self._commit:
            yield self.vm

    def latest_blockhash(self) -> tuple[Hash, int]:
        """The last block's hash and the last block height it is valid at."""
        return blockhash_of(self.genesis.seed, self.slot), self.slot + MAX_PROCESSING_AGE

    async def send(self, raw: bytes, *, skip_preflight: bool = False) -> str:
        """Queue a signed transaction for the next block; its signature either way."""
        tx = _decode(raw)
        signature = str(tx.signatures[0])
        if signature in self._statuses or signature in self._pending_signatures:
            return signature  # never twice: its status is the first result
        if not skip_preflight:
            if not all(tx.verify_with_results()):
                raise RpcError(-32003, "Transaction signature verification failure")
            simulated = await self.simulate(raw, sig_verify=True)
            if simulated.err is not None:
                raise RpcError(
                    -32002,
                    f"Transaction simulation failed: {err_message(simulated.err)}",
                    simulated.as_rpc(),
                )
        self._pending.append(_Pending(signature, tx, raw, compute_unit_price(tx)))
        self._pending_signatures.add(signature)
        return signature

    async def simulate(
        self, raw: bytes, *, sig_verify: bool = False, replace_blockhash: bool = False
    ) -> Simulation:
        """Run a transaction against the committed state without landing it."""
        tx = _decode(raw)
        if not replace_blockhash and not self.blockhash_valid(
            tx.message.recent_blockhash, self.slot + 1
        ):
            return Simulation("BlockhashNotFound", [], 0)
        async with self.committed() as vm:
            svm = vm.svm
            svm.with_sigverify(sig_verify)
            try:
                result = svm.simulate_transaction(tx)
            finally:
                svm.with_sigverify(True)
        if isinstance(result, FailedTransactionMetadata):
            meta = result.meta()
            return Simulation(
                err_json(result.err()), list(meta.logs()), meta.compute_units_consumed()
            )
        assert isinstance(result, SimulatedTransactionInfo)
        meta = result.meta()
        return Simulation(None, list(meta.logs()), meta.compute_units_consumed())

    async def statuses(
        self, signatures: list[str], *, search_history: bool = False
    ) -> list[dict[str, object] | None]:
        """Solana's signature statuses: confirmed once committed, finalized 32 slots deeper."""
        found = {s: self._statuses[s] for s in signatures if s in self._statuses}
        # A queued signature has not landed, so the store cannot hold it: asking it anyway
        # was a PostgreSQL query per poll of every router waiting on its transactions.
        missing = [s for s in signatures if s not in found and s not in self._pending_signatures]
        if search_history and missing:
            found |= await self.store.landed(missing)
        return [self._status(found[s]) if s in found else None for s in signatures]

    async def transaction(self, signature: str) -> StoredTransaction | None:
        """A landed transaction as `getTransaction` reads it: a recent one from memory (kept only
        once its block is committed), an older one from the store. Each router reads every
        fill back, and the store's query was the node's largest cost after running the VM
        (py-spy at 150 orders/s: 16 % of the node, and PostgreSQL's CPU besides)."""
        recent = self._statuses.get(signature)
        if recent is not None:
            return StoredTransaction(recent, self.unix_time(recent.slot))
        if signature in self._pending_signatures:
            return None  # queued, not landed
        return await self.store.transaction(signature)

    def _status(self, tx: LandedTransaction) -> dict[str, object]:
        depth = self.slot - tx.slot
        finalized = depth >= FINALIZED_DEPTH
        return {
            "slot": tx.slot,
            "confirmations": None if finalized else depth,
            "err": tx.err,
            "status": {"Ok": None} if tx.err is None else {"Err": tx.err},
            "confirmationStatus": "finalized" if finalized else "confirmed",
        }


@dataclass(frozen=True, slots=True)
class Simulation:
    err: ErrJson
    logs: list[str]
    units_consumed: int

    def as_rpc(self) -> dict[str, object]:
        return {
            "err": self.err,
            "logs": self.logs,
            "accounts": None,
            "unitsConsumed": self.units_consumed,
            "returnData": None,
            "innerInstructions": None,
        }


def _closed() -> Account:
    return Account(0, b"", SYSTEM_PROGRAM_ID, False)


def _decode(raw: bytes) -> VersionedTransaction:
    try:
        tx = VersionedTransaction.from_bytes(raw)
        tx.sanitize()
    except Exception as exc:  # solders raises its own error types for malformed bytes
        raise RpcError(-32602, f"invalid transaction: {exc}") from None
    if isinstance(tx.message, MessageV0) and tx.message.address_table_lookups:
        raise RpcError(-32602, "invalid transaction: address lookup tables are not supported")
    return tx
