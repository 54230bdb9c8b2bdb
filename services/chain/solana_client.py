"""The router's `ChainClient` over Solana JSON-RPC: real, signed swap transactions.

- **Building.** One legacy transaction per attempt: a compute-budget instruction, then one swap
  instruction per leg, hops in order (a split is several instructions of one hop), then a memo
  naming the order, so no two orders ever sign the same bytes (the same signature). Pool keys are
  derived as the programs derive them (`CpmmPoolKeys.derive`); DLMM pairs are given by the
  caller until pairs are discoverable over RPC.
- **Min-outs.** Each leg's exact input and minimum out come from `pricing.guards.leg_guards`:
  the last hop's legs together pay at least the order's min-out; an earlier hop gets its share
  of the order's allowance and the next hop spends exactly that hop's minimum, so what it pays
  above its minimum stays in the wallet as the intermediate token (dust). An earlier hop that
  still misses its minimum lands failed and the order retries, re-quoted
  (`RetryableLandedFailure` below).
- **At most once.** The signed bytes are recorded (TransactionSubmitted) before they are sent.
  `send_and_confirm` re-sends those same bytes until a confirmed status appears, or until
  `isBlockhashValid` says their blockhash expired and a last status look finds nothing: only
  then is the attempt provably dead (`BlockhashExpired`) and the router builds a new one. RPC
  failures meanwhile are `ChainUnreachable`: the order waits and re-sends the same bytes.
- **Receipts.** The fill is the wallet's token balance changes in the transaction's meta
  (pre/post token balances), the fee the quoted fee of the first hop (exact for CPMM, whose fee
  depends on the input alone); program errors map to failure codes through `svm.errors`. An
  earlier hop's slippage error is not the order's slippage (the last hop's is): it is
  `RetryableLandedFailure`, and the order retries with a fresh quote; the failed transaction
  has landed, so it can never land again beside the new one.
- **Dry run.** `simulateTransaction` instead of sending; the order then fails with `DRY_RUN`
  (or with the code of the error the simulation hit), so a dry run never looks like a fill.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from base64 import b64encode
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, TypeVar, cast, get_args

import aiohttp
import base58
import httpx
import orjson
from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.core import RPCException
from solders.commitment_config import CommitmentLevel
from solders.compute_budget import ID as COMPUTE_BUDGET_PROGRAM_ID
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.rpc.config import RpcContextConfig
from solders.rpc.requests import IsBlockhashValid
from solders.rpc.responses import IsBlockhashValidResp, RPCError
from solders.signature import Signature
from solders.transaction import Transaction as SignedTransaction
from solders.transaction import VersionedTransaction
from solders.transaction_status import (
    TransactionErrorInstructionError,
    TransactionErrorType,
    TransactionStatus,
)

from services.chain.client import (
    RetryableLandedFailure,
    TransientChainError,
    UnsignableTransaction,
)
from services.chain.rpc_venues import cpmm_keys, dlmm_keys
from services.chain.svm.constants import CPMM_PROGRAM_ID, DLMM_PROGRAM_ID
from services.chain.svm.errors import (
    InsufficientFundsError,
    InsufficientLiquidityError,
    PoolNotOpenError,
    SlippageExceededError,
    SvmTransactionError,
    map_error,
)
from services.chain.svm.vm import CpmmPoolKeys, CpmmSwap, DlmmSwap, SolanaVm
from services.chain.transactions import Receipt, SwapInstruction, Transaction
from services.domain.tokens import get_token
from services.pricing.accounts.pools import PoolRegistry
from services.pricing.guards import LegGuard, leg_guards
from services.pricing.ports import ChainUnreachable
from services.venues.pool import Venue

SWAP_COMPUTE_UNITS = 400_000  # per swap instruction; CPMM uses ~40k, DLMM up to ~150k
MEMO_PROGRAM_ID = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")  # SPL Memo v3


def order_memo(order_id: uuid.UUID) -> Instruction:
    """A memo naming the order (its 16 bytes in base58). Without it two orders of the same
    pair, amount and minimum signed against the same blockhash are the same bytes, hence the same
    signature: the chain lands it once, and both orders would see that one landing as theirs."""
    return Instruction(MEMO_PROGRAM_ID, base58.b58encode(order_id.bytes), [])


PROGRAMS = {Venue.RAYDIUM: CPMM_PROGRAM_ID, Venue.METEORA: DLMM_PROGRAM_ID}


class BlockhashExpired(TransientChainError):
    """The attempt's blockhash expired and it never landed: provably dead, safe to rebuild."""

    code = "VENUE_TIMEOUT"


# --- the RPC the client needs, as plain values ------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenBalance:
    """One token account's balance in a transaction's meta."""

    mint: str
    owner: str
    amount: int


@dataclass(frozen=True, slots=True)
class Status:
    slot: int
    err: TransactionErrorType | None


@dataclass(frozen=True, slots=True)
class Landed:
    """What `getTransaction` says about a landed transaction."""

    slot: int
    err: TransactionErrorType | None
    logs: list[str]
    pre_token_balances: list[TokenBalance] | None
    post_token_balances: list[TokenBalance] | None


@dataclass(frozen=True, slots=True)
class Simulated:
    err: TransactionErrorType | None
    logs: list[str]
    units: int


class SolanaRpc(Protocol):
    """The JSON-RPC calls the client makes; `AsyncClientRpc` is the real one, tests fake it.

    Every method raises `ChainUnreachable` when the RPC cannot be reached or answers an error.
    """

    async def latest_blockhash(self) -> tuple[Hash, int]: ...

    async def send(self, wire: bytes) -> None: ...

    async def status(self, signature: Signature) -> Status | None:
        """The confirmed (or finalized) status, searching history; None if none yet."""
        ...

    async def statuses(self, signatures: Sequence[Signature]) -> list[Status | None]:
        """`status` of each, in one request."""
        ...

    async def blockhash_valid(self, blockhash: Hash) -> bool: ...

    async def transaction(self, signature: Signature) -> Landed | None: ...

    async def transactions(self, signatures: Sequence[Signature]) -> list[Landed | None]:
        """`transaction` of each, in one request."""
        ...

    async def simulate(self, wire: bytes) -> Simulated: ...


RPC_DOWN = (
    SolanaRpcException,
    RPCException,
    httpx.HTTPError,
    aiohttp.ClientError,
    TimeoutError,
    OSError,
)


class _RpcRequest(Protocol):
    def to_json(self) -> str: ...


_Parsed = TypeVar("_Parsed")


class AiohttpProvider:
    """The `solana` client's transport over one aiohttp session instead of httpx.

    The client builds each request and parses each answer (solders' types); only the POST
    is ours. Why: at 150 orders/s the router's event loop is busy all the time (py-spy:
    runnable in every sample) and 40 % of it was the httpx stack (anyio streams, h11, the
    connection pool's scan per request) carrying one `sendTransaction`, one
    `getTransaction` and a share of `getLatestBlockhash` per order. aiohttp parses HTTP
    in C and keeps every connection alive (httpx kept 20, so bursts reconnected); the
    node's side and the pool snapshots already use it.
    """

    def __init__(self, url: str, *, timeout: float) -> None:
        self.endpoint_uri = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def make_request(self, body: _RpcRequest, parser: type[_Parsed]) -> _Parsed:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        async with self._session.post(
            self.endpoint_uri,
            data=body.to_json(),
            headers={"Content-Type": "application/json"},
        ) as response:
            response.raise_for_status()
            raw = await response.text()
        parsed = parser.from_json(raw)  # type: ignore[attr-defined]
        if isinstance(parsed, get_args(RPCError)):
            raise RPCException(parsed)
        return cast(_Parsed, parsed)

    async def post(self, body: bytes) -> bytes:
        """POST a JSON body as it is; the answer's bytes."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        async with self._session.post(
            self.endpoint_uri, data=body, headers={"Content-Type": "application/json"}
        ) as response:
            response.raise_for_status()
            return await response.read()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def unreachable(exc: BaseException) -> ChainUnreachable:
    return ChainUnreachable(f"Solana RPC: {type(exc).__name__}: {exc}".splitlines()[0])


def transaction_error(raw: object) -> TransactionErrorType | None:
    """Solana's JSON for a TransactionError ("BlockhashNotFound", {"InstructionError": ...}) as
    solders' type, which `svm.errors.map_error` reads; None for success."""
    if raw is None:
        return None
    status = {
        "slot": 0,
        "confirmations": None,
        "err": raw,
        "status": {"Err": raw},
        "confirmationStatus": None,
    }
    return TransactionStatus.from_json(orjson.dumps(status).decode()).err


def _token_balances(raw: object) -> list[TokenBalance] | None:
    if not isinstance(raw, list):
        return None
    return [
        TokenBalance(str(b["mint"]), str(b.get("owner")), int(b["uiTokenAmount"]["amount"]))
        for b in raw
    ]


def _landed(result: object) -> Landed | None:
    """A `getTransaction` result (any encoding: only its meta is read) as `Landed`."""
    if not isinstance(result, dict) or not isinstance(result.get("meta"), dict):
        return None
    meta = result["meta"]
    return Landed(
        int(result["slot"]),
        transaction_error(meta.get("err")),
        list(meta.get("logMessages") or []),
        _token_balances(meta.get("preTokenBalances")),
        _token_balances(meta.get("postTokenBalances")),
    )


class AsyncClientRpc:
    """`SolanaRpc` over the `solana` library's AsyncClient, at Confirmed commitment.

    The calls each order makes (its send, the statuses and fills every router polls) skip the
    library: they go as JSON-RPC 2.0 batches (one HTTP request carrying a JSON array of calls)
    read with orjson. Sends within `send_window_seconds` of each other share one request.
    """

    def __init__(
        self, url: str, *, timeout: float = 10.0, send_window_seconds: float = 0.002
    ) -> None:
        self.client = AsyncClient(url, commitment=Confirmed, timeout=timeout)
        self._provider = AiohttpProvider(url, timeout=timeout)
        self.client._provider = self._provider  # type: ignore[assignment]
        self._send_window = send_window_seconds
        self._sending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._send_flush: asyncio.Task[None] | None = None

    async def batch(self, calls: Sequence[tuple[str, list[object]]]) -> list[object]:
        """The results of `calls` ((method, params) each) made in one HTTP request, in order.

        Raises `ChainUnreachable` when the request fails or any call answers an error: the
        callers treat every RPC failure as the chain being unreachable."""
        results = []
        for answer in await self._answers(calls):
            if isinstance(answer, ChainUnreachable):
                raise answer
            results.append(answer)
        return results

    async def _answers(self, calls: Sequence[tuple[str, list[object]]]) -> list[object]:
        """Each call's result, or its error as a `ChainUnreachable`, from one HTTP request;
        raises `ChainUnreachable` when the request itself fails."""
        body = orjson.dumps(
            [
                {"jsonrpc": "2.0", "id": n, "method": method, "params": params}
                for n, (method, params) in enumerate(calls)
            ]
        )
        try:
            answers = orjson.loads(await self._provider.post(body))
        except (*RPC_DOWN, orjson.JSONDecodeError) as exc:
            raise unreachable(exc) from None
        if not isinstance(answers, list):  # one error object for the whole batch
            raise ChainUnreachable(f"Solana RPC: the batch was refused: {answers!r}"[:300])
        # A server may answer a batch in any order (JSON-RPC 2.0): match by id.
        by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
        results: list[object] = []
        for n, (method, _) in enumerate(calls):
            answer = by_id.get(n)
            if answer is None or "error" in answer:
                error = None if answer is None else answer["error"]
                message = f"Solana RPC: {method}: {error or 'no answer'}"[:300]
                results.append(ChainUnreachable(message))
            else:
                results.append(answer.get("result"))
        return results

    async def close(self) -> None:
        await self.client.close()

    async def latest_blockhash(self) -> tuple[Hash, int]:
        try:
            value = (await self.client.get_latest_blockhash(Confirmed)).value
        except RPC_DOWN as exc:
            raise unreachable(exc) from None
        return value.blockhash, value.last_valid_block_height

    async def send(self, wire: bytes) -> None:
        """Send without preflight, in one request with the sends of the same moment."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sending.append((wire, future))
        if self._send_flush is None or self._send_flush.done():
            self._send_flush = asyncio.create_task(self._send_after_window())
        await future

    async def _send_after_window(self) -> None:
        await asyncio.sleep(self._send_window)
        while self._sending:
            sending, self._sending = (
                self._sending[:MAX_CALLS_PER_BATCH],
                self._sending[MAX_CALLS_PER_BATCH:],
            )
            # No preflight: a simulation failing now proves nothing about bytes that may already
            # be in flight, and a program error lands as a failed transaction whose status says
            # why.
            config = {"encoding": "base64", "skipPreflight": True}
            calls: list[tuple[str, list[object]]] = [
                ("sendTransaction", [b64encode(wire).decode(), config]) for wire, _ in sending
            ]
            try:
                # One send's error is that send's alone: the others went through.
                answers = await self._answers(calls)
            except ChainUnreachable as exc:
                answers = [ChainUnreachable(str(exc)) for _ in sending]
            for (_, future), answer in zip(sending, answers, strict=True):
                if future.done():
                    continue
                if isinstance(answer, ChainUnreachable):
                    future.set_exception(answer)
                else:
                    future.set_result(None)

    async def status(self, signature: Signature) -> Status | None:
        return (await self.statuses([signature]))[0]

    async def statuses(self, signatures: Sequence[Signature]) -> list[Status | None]:
        names = [str(s) for s in signatures]
        chunks = [
            names[n : n + MAX_STATUSES_PER_REQUEST]
            for n in range(0, len(names), MAX_STATUSES_PER_REQUEST)
        ]
        config = {"searchTransactionHistory": True}
        results = await self.batch([("getSignatureStatuses", [chunk, config]) for chunk in chunks])
        found: list[object] = []
        for result in results:
            value = result.get("value") if isinstance(result, dict) else None
            if not isinstance(value, list):
                raise ChainUnreachable(
                    f"Solana RPC: getSignatureStatuses answered {result!r}"[:300]
                )
            found.extend(value)
        return [
            Status(int(status["slot"]), transaction_error(status.get("err")))
            if isinstance(status, dict)
            and status.get("confirmationStatus") in ("confirmed", "finalized")
            else None  # "processed" may still be rolled back
            for status in found
        ]

    async def blockhash_valid(self, blockhash: Hash) -> bool:
        request = IsBlockhashValid(blockhash, RpcContextConfig(CommitmentLevel.Confirmed))
        try:
            # solana-py has no method for it; its provider sends solders' request as it is.
            resp = await self.client._provider.make_request(request, IsBlockhashValidResp)
        except RPC_DOWN as exc:
            raise unreachable(exc) from None
        return bool(resp.value)

    async def transaction(self, signature: Signature) -> Landed | None:
        return (await self.transactions([signature]))[0]

    async def transactions(self, signatures: Sequence[Signature]) -> list[Landed | None]:
        # base64: only the meta is read, and the node need not decode the message into JSON.
        config = {
            "encoding": "base64",
            "commitment": "confirmed",
            "maxSupportedTransactionVersion": 0,
        }
        found: list[Landed | None] = []
        names = [str(s) for s in signatures]
        for n in range(0, len(names), MAX_CALLS_PER_BATCH):
            calls: list[tuple[str, list[object]]] = [
                ("getTransaction", [name, config]) for name in names[n : n + MAX_CALLS_PER_BATCH]
            ]
            found.extend(_landed(result) for result in await self.batch(calls))
        return found

    async def simulate(self, wire: bytes) -> Simulated:
        try:
            resp = await self.client.simulate_transaction(
                VersionedTransaction.from_bytes(wire), sig_verify=True, commitment=Confirmed
            )
        except RPC_DOWN as exc:
            raise unreachable(exc) from None
        value = resp.value
        return Simulated(value.err, list(value.logs or []), int(value.units_consumed or 0))


# --- building -----------------------------------------------------------------------------


def load_keypair(path: Path) -> Keypair:
    """A keypair file as `solana-keygen` writes it: a JSON array of the 64 secret-key bytes."""
    raw = json.loads(path.read_text())
    if not isinstance(raw, list) or len(raw) != 64:
        msg = f"{path} is not a Solana keypair file (a JSON array of 64 numbers)"
        raise ValueError(msg)
    return Keypair.from_bytes(bytes(raw))


def guarded_legs(tx: Transaction) -> list[tuple[SwapInstruction, LegGuard]]:
    """The transaction's legs, hops in order, each with its exact input and minimum out."""
    legs = sorted(tx.instructions, key=lambda i: i.hop)
    try:
        guards = leg_guards(legs, tx.min_amount_out)
    except ValueError as exc:
        raise UnsignableTransaction(str(exc)) from None
    return list(zip(legs, guards, strict=True))


BLOCKHASH_REUSE_SECONDS = 0.4  # one slot
MAX_STATUSES_PER_REQUEST = 256  # getSignatureStatuses' limit on Solana's nodes
MAX_CALLS_PER_BATCH = 100  # calls in one JSON-RPC batch (a sendTransaction is ~1 KB of JSON)


class LandingWatcher:
    """Every signature the router waits on, watched by one poller, which wakes each waiter with
    its transaction once it lands.

    Each order used to poll its own signature's status every 0.2 s and then read its fill with a
    `getTransaction` of its own: at 150 orders/s that was a quarter of the router's CPU (py-spy:
    the statuses, the reads and their HTTP), and a PostgreSQL query per read on the node. Now
    one round every `poll_seconds` asks the statuses of all of them (one request) and reads the
    fills of those that landed (one batched request). A poll that fails is every current
    waiter's failure (`ChainUnreachable`), as its own poll's would have been.
    """

    def __init__(self, rpc: SolanaRpc, poll_seconds: float) -> None:
        self._rpc = rpc
        self._poll_seconds = poll_seconds
        self._watched: dict[Signature, _Watch] = {}
        self._poller: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def watching(self, signature: Signature) -> AsyncIterator[asyncio.Future[Landed]]:
        """A future of the signature's landed transaction, polled for while the block lasts.
        Each watcher gets its own (a shield of the shared one): cancelling it leaves the others
        waiting."""
        watch = self._watched.get(signature)
        if watch is None:
            watch = self._watched[signature] = _Watch(asyncio.get_running_loop().create_future())
            watch.landed.add_done_callback(_retrieved)
        watch.watchers += 1
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())
        landing = asyncio.shield(watch.landed)
        landing.add_done_callback(_retrieved)
        try:
            yield landing
        finally:
            watch.watchers -= 1
            if watch.watchers == 0 and self._watched.get(signature) is watch:
                del self._watched[signature]

    async def _poll(self) -> None:
        while self._watched:
            await asyncio.sleep(self._poll_seconds)
            asked = list(self._watched)
            if not asked:
                return
            try:
                statuses = await self._rpc.statuses(asked)
                landed = [s for s, status in zip(asked, statuses, strict=True) if status]
                fills = await self._rpc.transactions(landed) if landed else []
            except Exception as exc:  # every waiter sees it, as its own poll's would have been
                for signature in asked:
                    watch = self._watched.pop(signature, None)
                    if watch is not None and not watch.landed.done():
                        unreachable = isinstance(exc, ChainUnreachable)
                        watch.landed.set_exception(
                            ChainUnreachable(str(exc)) if unreachable else exc
                        )
                continue
            for signature, fill in zip(landed, fills, strict=True):
                if fill is None:
                    continue  # a status whose transaction is not readable yet: the next round
                watch = self._watched.pop(signature, None)
                if watch is not None and not watch.landed.done():
                    watch.landed.set_result(fill)


def _retrieved(future: asyncio.Future[Landed]) -> None:
    """Mark a failure as seen: the waiter may have left (an expired blockhash) before it came."""
    if not future.cancelled():
        future.exception()


@dataclass(slots=True)
class _Watch:
    landed: asyncio.Future[Landed]
    watchers: int = 0


class PoolDirectory(Protocol):
    """Where the pools a route names are listed (`rpc_venues.RpcPoolSource`)."""

    async def registry(self) -> PoolRegistry: ...


class SolanaChain:
    """`ChainClient` for a Solana chain (the local `oee chain`, devnet or mainnet)."""

    def __init__(
        self,
        rpc: SolanaRpc,
        wallet: Keypair,
        *,
        dry_run: bool = False,
        poll_seconds: float = 0.2,
        resend_seconds: float = 2.0,
        pools: PoolDirectory | None = None,
    ) -> None:
        self._rpc = rpc
        self._wallet = wallet
        self._dry_run = dry_run
        self._resend = resend_seconds
        self._landings = LandingWatcher(rpc, poll_seconds)
        # Blockhashes known valid, until when (monotonic): positive answers only, kept no
        # longer than the resend period, so a check still comes at least once per re-send.
        # A stale "valid" costs at most one send that cannot land; a "dead" is always asked.
        self._known_valid: dict[Hash, float] = {}
        self._valid_for = min(BLOCKHASH_REUSE_SECONDS, resend_seconds)
        # A blockhash stays valid for 150 slots; one fetched within the last slot serves
        # every order signed meanwhile (the memo keeps their bytes apart).
        self._latest: tuple[float, Hash, int] | None = None
        self._fetching_latest: asyncio.Future[tuple[float, Hash, int]] | None = None
        self._validity: dict[Hash, asyncio.Future[bool]] = {}
        self._pools = pools
        self._cpmm_keys: dict[frozenset[str], CpmmPoolKeys] = {}
        self._builder = SolanaVm()  # instruction builders only; nothing runs in it

    @property
    def wallet(self) -> Pubkey:
        return self._wallet.pubkey()

    # --- ChainClient -------------------------------------------------------------------

    async def _latest_blockhash(self) -> tuple[Hash, int]:
        """The last slot's blockhash, asked once for every order signing meanwhile.

        Without the shared question every order signing between the expiry and the answer
        asked again (py-spy at 150/s: 7 % of the router in `getLatestBlockhash`)."""
        latest = self._latest
        if latest is not None and time.monotonic() - latest[0] <= BLOCKHASH_REUSE_SECONDS:
            return latest[1], latest[2]
        if self._fetching_latest is None:
            self._fetching_latest = asyncio.ensure_future(self._fetch_latest_blockhash())
        _, blockhash, last_valid = await asyncio.shield(self._fetching_latest)
        return blockhash, last_valid

    async def _fetch_latest_blockhash(self) -> tuple[float, Hash, int]:
        try:
            asked_at = time.monotonic()
            self._latest = (asked_at, *await self._rpc.latest_blockhash())
            self._known_valid_until(self._latest[1], asked_at + self._valid_for)
            return self._latest
        finally:
            self._fetching_latest = None

    async def _blockhash_valid(self, blockhash: Hash) -> bool:
        """Orders signed in the same slot share a blockhash: one question asked at a time
        answers all who ask it meanwhile, and a "valid" answers those who ask soon after
        (without it, each order's first send asked: ~1 request per order)."""
        if self._known_valid.get(blockhash, 0.0) > time.monotonic():
            return True
        asking = self._validity.get(blockhash)
        if asking is None:
            asked_at = time.monotonic()
            asking = asyncio.ensure_future(self._rpc.blockhash_valid(blockhash))
            self._validity[blockhash] = asking

            def answered(done: asyncio.Future[bool]) -> None:
                self._validity.pop(blockhash, None)
                if not done.cancelled() and done.exception() is None and done.result():
                    self._known_valid_until(blockhash, asked_at + self._valid_for)

            asking.add_done_callback(answered)
        return await asyncio.shield(asking)

    def _known_valid_until(self, blockhash: Hash, until: float) -> None:
        if len(self._known_valid) > 64:
            now = time.monotonic()
            self._known_valid = {h: t for h, t in self._known_valid.items() if t > now}
        self._known_valid[blockhash] = max(until, self._known_valid.get(blockhash, 0.0))

    async def sign(self, tx: Transaction) -> Transaction:
        blockhash, last_valid = await self._latest_blockhash()
        registry = await self._pools.registry() if self._pools is not None else None
        signed = self.build(tx, blockhash, registry)
        return replace(
            tx,
            signature=str(signed.signatures[0]),
            wire=bytes(signed),
            blockhash=str(blockhash),
            last_valid_block_height=last_valid,
        )

    async def send_and_confirm(self, tx: Transaction, attempt: int) -> Receipt:
        if tx.wire is None or tx.blockhash is None:
            msg = f"transaction {tx.signature} was never signed for this chain"
            raise UnsignableTransaction(msg)
        if self._dry_run:
            return self._dry_run_receipt(tx, await self._rpc.simulate(tx.wire))
        signature = Signature.from_string(tx.signature)
        blockhash = Hash.from_string(tx.blockhash)
        async with self._landings.watching(signature) as landing:
            while True:
                if not await self._blockhash_valid(blockhash):
                    # It can no longer land; did it land before the hash expired?
                    if await self._rpc.status(signature) is not None:
                        return await self._read_receipt(tx, signature)
                    msg = (
                        f"blockhash {tx.blockhash} expired (last valid block height"
                        f" {tx.last_valid_block_height}) before the transaction landed"
                    )
                    raise BlockhashExpired(msg)
                # The same bytes every time (a signature lands once); already landed ones are
                # ignored by the node, and the watcher then finds them.
                await self._rpc.send(tx.wire)
                done, _ = await asyncio.wait((landing,), timeout=self._resend)
                if done:
                    return self._receipt(tx, landing.result())

    async def receipt(self, tx: Transaction) -> Receipt | None:
        if tx.wire is None:
            return None  # never signed, so never sent
        signature = Signature.from_string(tx.signature)
        status = await self._rpc.status(signature)
        return None if status is None else await self._read_receipt(tx, signature)

    # --- building ----------------------------------------------------------------------

    def build(
        self, tx: Transaction, blockhash: Hash, registry: PoolRegistry | None = None
    ) -> SignedTransaction:
        """The signed transaction: compute budget (the unit limit, and the unit price if it
        has a priority fee), each leg's swap (hops in order), the order's memo (which makes the
        bytes, so the signature, the order's alone)."""
        owner = self._wallet.pubkey()
        swaps = [
            self._swap_ix(owner, leg, guard.amount_in, guard.min_out, registry)
            for leg, guard in guarded_legs(tx)
        ]
        units = min(1_400_000, SWAP_COMPUTE_UNITS * len(swaps))
        budget = [set_compute_unit_limit(units)]
        if tx.compute_unit_price:
            budget.append(set_compute_unit_price(tx.compute_unit_price))
        message = Message.new_with_blockhash(
            [*budget, *swaps, order_memo(tx.order_id)], owner, blockhash
        )
        return SignedTransaction([self._wallet], message, blockhash)

    def _swap_ix(
        self,
        owner: Pubkey,
        leg: SwapInstruction,
        amount_in: int,
        min_out: int,
        registry: PoolRegistry | None,
    ) -> Instruction:
        """The leg's swap on the pool the registry lists (or, without one, the CPMM pool at its
        derived address: the local chain's seeded pools live there)."""
        mint_in = Pubkey.from_string(get_token(leg.token_in).mint)
        mint_out = Pubkey.from_string(get_token(leg.token_out).mint)
        pair = frozenset((leg.token_in, leg.token_out))
        if registry is not None:
            try:
                if leg.venue is Venue.RAYDIUM:
                    cpmm = cpmm_keys(registry.cpmm_for(leg.token_in, leg.token_out))
                    return self._builder.cpmm_swap_ix(
                        owner, CpmmSwap(cpmm, mint_in, amount_in, min_out)
                    )
                dlmm = dlmm_keys(registry.dlmm_for(leg.token_in, leg.token_out))
                return self._builder.dlmm_swap_ix(
                    owner, DlmmSwap(dlmm, mint_in, amount_in, min_out)
                )
            except KeyError:
                msg = f"no listed {leg.venue} pool for {leg.token_in}/{leg.token_out}"
                raise UnsignableTransaction(msg) from None
        if leg.venue is Venue.RAYDIUM:
            keys = self._cpmm_keys.get(pair)
            if keys is None:
                keys = self._cpmm_keys[pair] = CpmmPoolKeys.derive(mint_in, mint_out)
            return self._builder.cpmm_swap_ix(owner, CpmmSwap(keys, mint_in, amount_in, min_out))
        msg = f"no known {leg.venue} pool for {leg.token_in}/{leg.token_out} without a registry"
        raise UnsignableTransaction(msg)

    # --- reading the outcome -------------------------------------------------------------

    async def _read_receipt(self, tx: Transaction, signature: Signature) -> Receipt:
        landed = await self._rpc.transaction(signature)
        if landed is None:  # a status without its transaction: ask again shortly
            msg = f"{signature} has a status but getTransaction does not return it yet"
            raise ChainUnreachable(msg)
        return self._receipt(tx, landed)

    def _receipt(self, tx: Transaction, landed: Landed) -> Receipt:
        """The order's outcome from its landed transaction (module docstring: receipts)."""
        venues = tuple(sorted({i.venue.value for i in tx.instructions}))
        if landed.err is not None:
            error = map_error(landed.err, self._programs(tx), landed.logs)
            if isinstance(error, SlippageExceededError) and _on_an_earlier_hop(tx, landed.err):
                # Not the order's slippage: an earlier hop missed its share of the allowance
                # (module docstring), a move a re-quote can price in.
                msg = f"a first hop paid less than the minimum the next hop spends ({error})"
                raise RetryableLandedFailure(msg, "SLIPPAGE_EXCEEDED")
            return self._failed(tx, landed.slot, error)
        if landed.pre_token_balances is None or landed.post_token_balances is None:
            msg = f"the RPC reports no token balances for {tx.signature}: cannot read the fill"
            raise ChainUnreachable(msg)
        owner = str(self._wallet.pubkey())

        def change(symbol: str) -> int:
            mint = get_token(symbol).mint

            def total(balances: list[TokenBalance]) -> int:
                return sum(b.amount for b in balances if b.owner == owner and b.mint == mint)

            assert landed is not None
            assert landed.pre_token_balances is not None
            assert landed.post_token_balances is not None
            return total(landed.post_token_balances) - total(landed.pre_token_balances)

        fee = sum(i.fee for i in tx.instructions if i.hop == 0)
        return Receipt(
            tx.signature,
            tx.order_id,
            "confirmed",
            -change(tx.token_in),
            change(tx.token_out),
            fee,
            landed.slot,
            venues,
        )

    def _programs(self, tx: Transaction) -> list[Pubkey]:
        """The program of each instruction, in the order `build` put them."""
        legs = sorted(tx.instructions, key=lambda i: i.hop)
        budget = [COMPUTE_BUDGET_PROGRAM_ID] * _budget_instructions(tx)
        return [*budget, *(PROGRAMS[i.venue] for i in legs), MEMO_PROGRAM_ID]

    def _failed(
        self, tx: Transaction, slot: int, error: SvmTransactionError, prefix: str = ""
    ) -> Receipt:
        code = failure_code(error)
        return Receipt(
            tx.signature,
            tx.order_id,
            "failed",
            tx.amount_in,
            0,
            0,
            slot,
            tuple(sorted({i.venue.value for i in tx.instructions})),
            code,
            f"{prefix}{describe(error)}",
        )

    def _dry_run_receipt(self, tx: Transaction, simulated: Simulated) -> Receipt:
        if simulated.err is not None:
            error = map_error(simulated.err, self._programs(tx), simulated.logs)
            return self._failed(tx, 0, error, "dry run, not sent: ")
        return replace(
            self._failed(tx, 0, SvmTransactionError("")),
            error_code="DRY_RUN",
            error=(
                "dry run (OEE_CHAIN_DRY_RUN): the transaction simulated without error in"
                f" {simulated.units} compute units and was not sent"
            ),
        )


def _on_an_earlier_hop(tx: Transaction, err: TransactionErrorType) -> bool:
    """Whether the instruction that failed is a swap of a hop other than the last one."""
    if not isinstance(err, TransactionErrorInstructionError):
        return False
    index = err.index - _budget_instructions(tx)  # the legs come after the budget
    legs = sorted(tx.instructions, key=lambda i: i.hop)  # as `build` put them
    last = max(i.hop for i in tx.instructions)
    return 0 <= index < len(legs) and legs[index].hop != last


def _budget_instructions(tx: Transaction) -> int:
    """How many compute-budget instructions `build` puts first: the limit, and the price."""
    return 2 if tx.compute_unit_price else 1


def failure_code(error: SvmTransactionError) -> str:
    """The order's failure code for a program's (mapped) error."""
    if isinstance(error, SlippageExceededError):
        return "SLIPPAGE_EXCEEDED"
    if isinstance(error, PoolNotOpenError):
        return "POOL_NOT_OPEN"
    if isinstance(error, InsufficientFundsError):
        return "INSUFFICIENT_FUNDS"
    if isinstance(error, InsufficientLiquidityError):
        return "INSUFFICIENT_LIQUIDITY"
    return "INVALID_TRANSACTION"


def describe(error: SvmTransactionError) -> str:
    """A failure message a client can read: what the program said, in words."""
    words = {
        SlippageExceededError: "the program would pay less than the minimum out",
        PoolNotOpenError: "the pool does not accept swaps (not open yet, or disabled)",
        InsufficientFundsError: "the engine's wallet lacks the input tokens or the fee",
        InsufficientLiquidityError: "the pool has no liquidity left at this price",
    }
    for kind, text in words.items():
        if isinstance(error, kind):
            return f"{text} ({error})"
    return f"the transaction failed: {error}"
