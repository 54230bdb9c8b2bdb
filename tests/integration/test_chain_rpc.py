"""The chain node over Solana JSON-RPC, driven by the ordinary `solana` client library.

Each test gets a database of its own (the node's `svm` schema is the whole chain) and a node on
a free port with short slots, so blockhash expiry (150 slots) takes seconds, not a minute.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.compute_budget import set_compute_unit_limit
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction
from solders.transaction_status import (
    InstructionErrorCustom,
    TransactionErrorInstructionError,
    UiRawMessage,
    UiTransaction,
)

from infra.kafka.launcher import free_port
from services.chain.genesis import Genesis, wallet_keypair
from services.chain.history import replay
from services.chain.node import MAX_PROCESSING_AGE, ChainNode
from services.chain.rpc import serve
from services.chain.solana_client import AsyncClientRpc, TokenBalance
from services.chain.store import Block, ChainStore
from services.chain.svm.vm import CpmmPoolKeys, CpmmSwap, SolanaVm
from services.common.db import migrate
from services.pricing.accounts.cpmm import decode_amm_config, decode_pool_state, quote_base_input
from services.pricing.accounts.spl import decode_token_amount
from services.pricing.ports import ChainUnreachable

SEED = 7
WALLETS = 4
SLOT_MS = 20
GENESIS = Genesis(seed=SEED, wallets=WALLETS)
ROOT = Path(__file__).resolve().parents[2]

# Instruction builders only: a local VM derives the same token accounts the node's does.
BUILDER = SolanaVm()
SOL, USDC = BUILDER.mint_of("SOL"), BUILDER.mint_of("USDC")
SOL_USDC = CpmmPoolKeys.derive(SOL, USDC)


@pytest.fixture
def chain_db(database_url: str) -> Iterator[str]:
    """A database of this test's own, migrated: a fresh chain."""
    with fresh_chain_database(database_url) as url:
        yield url


@contextlib.contextmanager
def fresh_chain_database(server_url: str) -> Iterator[str]:
    """A new migrated database on the session's server, dropped afterwards: a fresh chain."""
    name = f"chain_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = make_conninfo(server_url, dbname=name)
    migrate(url)
    try:
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@dataclass
class Running:
    node: ChainNode
    store: ChainStore
    client: AsyncClient
    url: str  # the JSON-RPC endpoint
    db_url: str

    async def wait_slots(self, n: int) -> None:
        target = self.node.slot + n
        while self.node.slot < target:  # noqa: ASYNC110 - watching another task's progress
            await asyncio.sleep(SLOT_MS / 1000)


@contextlib.asynccontextmanager
async def running_node(
    url: str,
    store: ChainStore | None = None,
    *,
    genesis: Genesis = GENESIS,
    slot_ms: int = SLOT_MS,
) -> AsyncIterator[Running]:
    """A node with its RPC on a free port and its slot loop running, stopped afterwards."""
    store = store or await ChainStore.open(url)
    node = ChainNode(store, genesis, slot_ms=slot_ms)
    await node.start()
    port = free_port()
    runner = await serve(node, "127.0.0.1", port)
    loop = asyncio.create_task(node.run())
    client = AsyncClient(f"http://127.0.0.1:{port}", commitment=Confirmed)
    try:
        yield Running(node, store, client, f"http://127.0.0.1:{port}", url)
    finally:
        node.stop()
        with contextlib.suppress(Exception):
            await loop
        await client.close()
        await runner.cleanup()
        await store.close()


@pytest.fixture
async def chain(chain_db: str) -> AsyncIterator[Running]:
    async with running_node(chain_db) as running:
        yield running


def swap_tx(
    wallet: Keypair, mint_in: Pubkey, amount_in: int, min_out: int, blockhash: Hash
) -> bytes:
    """A signed legacy transaction: compute budget, then one CPMM `swap_base_input`."""
    ix = BUILDER.cpmm_swap_ix(wallet.pubkey(), CpmmSwap(SOL_USDC, mint_in, amount_in, min_out))
    message = Message.new_with_blockhash(
        [set_compute_unit_limit(200_000), ix], wallet.pubkey(), blockhash
    )
    return bytes(Transaction([wallet], message, blockhash))


async def quote(client: AsyncClient, mint_in: Pubkey, amount_in: int) -> int:
    """What the program will pay, from the accounts as the node serves them."""
    keys = [SOL_USDC.pool, SOL_USDC.vault0, SOL_USDC.vault1]
    pool_info, vault0, vault1 = (await client.get_multiple_accounts(keys)).value
    assert pool_info
    assert vault0
    assert vault1
    state = decode_pool_state(bytes(pool_info.data))
    config_info = (await client.get_account_info(state.amm_config)).value
    assert config_info is not None
    config = decode_amm_config(bytes(config_info.data))
    r0, r1 = state.reserves(
        decode_token_amount(bytes(vault0.data)), decode_token_amount(bytes(vault1.data))
    )
    reserves = (r0, r1) if mint_in == SOL_USDC.mint0 else (r1, r0)
    return quote_base_input(amount_in, *reserves, config.trade_fee_rate)


async def token_balance(client: AsyncClient, owner: Pubkey, mint: Pubkey) -> int:
    value = (await client.get_token_account_balance(BUILDER.token_account(owner, mint))).value
    return int(value.amount)


async def wait_landed(client: AsyncClient, signature: str, timeout: float = 10) -> Any:
    """Poll signature statuses until the transaction is confirmed; its status."""
    deadline = time.monotonic() + timeout
    sig = Signature.from_string(signature)
    while time.monotonic() < deadline:
        status = (await client.get_signature_statuses([sig])).value[0]
        if status is not None:
            return status
        await asyncio.sleep(SLOT_MS / 1000)
    raise AssertionError(f"{signature} did not land within {timeout}s")


async def landed_count(url: str, signature: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM svm.transactions WHERE signature = %s", (signature,)
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


# --- the tests ----------------------------------------------------------------------------


async def test_cpmm_swap_over_json_rpc(chain: Running) -> None:
    """Blockhash, a signed swap, statuses to confirmed, the program's logs, the exact quote."""
    client, wallet = chain.client, wallet_keypair(SEED, 0)
    owner = wallet.pubkey()
    latest = (await client.get_latest_blockhash()).value
    height = (await client.get_block_height()).value  # 20 ms slots: it may have moved on since
    assert height - 2 <= latest.last_valid_block_height - 150 <= height
    amount_in = 2 * 10**9  # 2 SOL
    expected = await quote(client, SOL, amount_in)
    usdc_before = await token_balance(client, owner, USDC)
    sol_before = await token_balance(client, owner, SOL)
    lamports_before = (await client.get_balance(owner)).value

    raw = swap_tx(wallet, SOL, amount_in, expected, latest.blockhash)
    sent = await client.send_raw_transaction(raw, TxOpts(preflight_commitment=Confirmed))
    status = await wait_landed(client, str(sent.value))
    assert status.err is None
    assert status.confirmation_status is not None

    got = (await client.get_transaction(sent.value, encoding="json")).value
    assert got is not None
    meta = got.transaction.meta
    assert meta is not None
    assert meta.err is None
    logs = meta.log_messages or []
    assert "Program log: Instruction: SwapBaseInput" in logs
    assert any(
        line.startswith("Program CPMMoo8L3F4NbTegBCKVNunggL7H1ZpdTHKxQB5qKP1C success")
        for line in logs
    )
    assert got.slot == status.slot

    assert await token_balance(client, owner, USDC) - usdc_before == expected
    assert sol_before - await token_balance(client, owner, SOL) == amount_in
    assert lamports_before - (await client.get_balance(owner)).value == meta.fee == 5000

    # The token balances a real node reports, as the engine reads its fills from them.
    def wallet_amounts(balances: Any) -> dict[str, int]:
        assert balances is not None
        return {str(b.mint): int(b.ui_token_amount.amount) for b in balances if b.owner == owner}

    pre, post = wallet_amounts(meta.pre_token_balances), wallet_amounts(meta.post_token_balances)
    assert post[str(USDC)] - pre[str(USDC)] == expected
    assert pre[str(SOL)] - post[str(SOL)] == amount_in

    # getBlock: the block holds the swap, as the solana client parses it; an empty slot is a
    # block without transactions; a slot not yet committed is not available.
    block = (await client.get_block(status.slot, max_supported_transaction_version=0)).value
    assert block.block_height == status.slot
    assert block.parent_slot == status.slot - 1
    assert block.transactions is not None
    [in_block] = [t for t in block.transactions if t.transaction.signatures[0] == sent.value]
    assert in_block.meta is not None
    assert in_block.meta.post_token_balances == meta.post_token_balances
    signed = in_block.transaction
    assert isinstance(signed, UiTransaction)
    assert isinstance(signed.message, UiRawMessage)
    assert signed.message.account_keys[0] == owner  # the signer
    empty = (await client.get_block(status.slot - 1)).value  # nothing was sent before it
    assert empty.transactions == []
    with pytest.raises(RPCException):
        await client.get_block(chain.node.slot + 1000)


async def test_resent_transaction_lands_once(chain: Running) -> None:
    """The same signed bytes, re-sent before and after landing, land once; same signature."""
    client, wallet = chain.client, wallet_keypair(SEED, 1)
    blockhash = (await client.get_latest_blockhash()).value.blockhash
    before = await token_balance(client, wallet.pubkey(), USDC)
    raw = swap_tx(wallet, SOL, 10**8, 0, blockhash)
    first = (await client.send_raw_transaction(raw)).value
    again = (await client.send_raw_transaction(raw)).value
    status = await wait_landed(client, str(first))
    await chain.wait_slots(3)
    after = (await client.send_raw_transaction(raw)).value
    await chain.wait_slots(3)
    assert first == again == after
    assert (await wait_landed(client, str(first))).slot == status.slot
    assert await landed_count(chain.db_url, str(first)) == 1
    gained = await token_balance(client, wallet.pubkey(), USDC) - before
    assert gained > 0
    # A second identical swap would have paid again; the balance moved by one swap's output.
    got = (await client.get_transaction(first)).value
    assert got is not None
    assert got.slot == status.slot


async def test_expired_blockhash_is_refused(chain: Running) -> None:
    """Preflight answers BlockhashNotFound, as Solana does; skipping it, it never lands."""
    client, wallet = chain.client, wallet_keypair(SEED, 2)
    latest = (await client.get_latest_blockhash()).value
    await chain.wait_slots(MAX_PROCESSING_AGE + 2)
    assert (await client.get_block_height()).value > latest.last_valid_block_height
    raw = swap_tx(wallet, SOL, 10**8, 0, latest.blockhash)
    with pytest.raises(RPCException) as refused:
        await client.send_raw_transaction(raw)
    error = refused.value.args[0]
    assert error.message == "Transaction simulation failed: Blockhash not found"
    assert "BlockhashNotFound" in str(error.data.err)

    # Never seen by the node, a random blockhash is just as unknown.
    with pytest.raises(RPCException, match="Blockhash not found"):
        await client.send_raw_transaction(swap_tx(wallet, SOL, 10**8, 0, Hash.new_unique()))

    # Sent without preflight it is queued, then dropped at its block: no status, ever.
    sent = (await client.send_raw_transaction(raw, TxOpts(skip_preflight=True))).value
    await chain.wait_slots(5)
    assert (await client.get_signature_statuses([sent], search_transaction_history=True)).value == [
        None
    ]
    assert chain.node.stats.dropped >= 1


async def test_program_errors_have_solanas_shape(chain: Running) -> None:
    """Slippage fails preflight with InstructionError [1, {Custom: 6005}] and the logs; sent
    without preflight it lands failed, pays its fee, and its status carries the same error."""
    client, wallet = chain.client, wallet_keypair(SEED, 3)
    latest = (await client.get_latest_blockhash()).value
    expected = await quote(client, SOL, 10**8)
    raw = swap_tx(wallet, SOL, 10**8, expected + 1, latest.blockhash)
    with pytest.raises(RPCException) as refused:
        await client.send_raw_transaction(raw)
    error = refused.value.args[0]
    assert error.message == (
        "Transaction simulation failed: "
        "Error processing Instruction 1: custom program error: 0x1775"
    )
    assert any("ExceededSlippage" in line for line in error.data.logs or [])

    async with httpx.AsyncClient() as http:
        answer = (
            await http.post(
                chain.url,
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "sendTransaction",
                    "params": [base64.b64encode(raw).decode(), {"encoding": "base64"}],
                },
            )
        ).json()
    assert answer["error"]["code"] == -32002
    assert answer["error"]["data"]["err"] == {"InstructionError": [1, {"Custom": 6005}]}

    lamports = (await client.get_balance(wallet.pubkey())).value
    sent = (await client.send_raw_transaction(raw, TxOpts(skip_preflight=True))).value
    status = await wait_landed(client, str(sent))
    assert str(status.err) == str(refused.value.args[0].data.err)
    assert lamports - (await client.get_balance(wallet.pubkey())).value == 5000


async def test_the_routers_batched_calls_read_what_the_library_reads(chain: Running) -> None:
    """The router's JSON-RPC batches (sends, statuses, fills) against the node: each call
    answered in its batch; fills and errors as the `solana` library parses them; recent
    transactions served from the node's memory equal to what its store holds."""
    client, wallet = chain.client, wallet_keypair(SEED, 2)
    rpc = AsyncClientRpc(chain.url)
    try:
        blockhash, _ = await rpc.latest_blockhash()
        expected = await quote(client, SOL, 10**8)
        good = swap_tx(wallet, SOL, 10**8, 0, blockhash)
        slipped = swap_tx(wallet, SOL, 10**8 + 1, expected * 2, blockhash)
        await asyncio.gather(rpc.send(good), rpc.send(slipped))  # one request, two sends
        signatures = [Transaction.from_bytes(raw).signatures[0] for raw in (good, slipped)]
        unknown = Signature.new_unique()
        for signature in signatures:
            await wait_landed(client, str(signature))

        statuses = await rpc.statuses([*signatures, unknown])
        fills = await rpc.transactions([*signatures, unknown])

        assert statuses[2] is None
        assert fills[2] is None
        for signature, status, fill in zip(signatures, statuses, fills, strict=False):
            read = (await client.get_transaction(signature, "json")).value
            assert read is not None
            meta = read.transaction.meta
            assert meta is not None
            assert status is not None
            assert fill is not None
            assert status.slot == fill.slot == read.slot
            assert str(status.err) == str(fill.err) == str(meta.err)
            assert fill.logs == meta.log_messages
            assert fill.post_token_balances == [
                TokenBalance(str(b.mint), str(b.owner), int(b.ui_token_amount.amount))
                for b in meta.post_token_balances or []
            ]
            assert await chain.node.transaction(str(signature)) == await chain.store.transaction(
                str(signature)
            )
        assert fills[0] is not None
        assert fills[0].err is None
        assert fills[1] is not None
        assert fills[1].err == TransactionErrorInstructionError(1, InstructionErrorCustom(6005))

        # One bad call in a batch is that call's error; an empty batch is one invalid request.
        with pytest.raises(ChainUnreachable, match="Method not found"):
            await rpc.batch([("getSlot", []), ("getNothing", [])])
        slot, health = await rpc.batch([("getSlot", []), ("getHealth", [])])
        assert isinstance(slot, int)
        assert slot >= fills[0].slot
        assert health == "ok"
        async with httpx.AsyncClient() as http:
            empty = (await http.post(chain.url, json=[])).json()
        assert empty["error"]["code"] == -32600

        # Sends sharing a request: a refused one fails alone, the other lands.
        another = swap_tx(wallet, SOL, 10**8 + 2, 0, blockhash)
        refused, sent = await asyncio.gather(
            rpc.send(b"not a transaction"), rpc.send(another), return_exceptions=True
        )
        assert isinstance(refused, ChainUnreachable)
        assert "invalid transaction" in str(refused)
        assert sent is None
        await wait_landed(client, str(Transaction.from_bytes(another).signatures[0]))
    finally:
        await rpc.close()


async def test_crash_between_landing_and_commit_loses_nothing_confirmed(chain_db: str) -> None:
    """A block that ran in the VM but was never committed is gone after the restart: never
    reported, it is simply re-sent and lands once; what was reported is still there."""
    wallet = wallet_keypair(SEED, 0)
    async with running_node(chain_db) as first:
        blockhash = (await first.client.get_latest_blockhash()).value.blockhash
        confirmed = (
            await first.client.send_raw_transaction(swap_tx(wallet, SOL, 10**8, 0, blockhash))
        ).value
        status = await wait_landed(first.client, str(confirmed))

        async def fail(block: Block) -> None:
            raise ConnectionError("PostgreSQL went away mid-commit")

        first.node.stop()
        await asyncio.sleep(SLOT_MS * 3 / 1000)
        raw = swap_tx(wallet, SOL, 2 * 10**8, 0, blockhash)
        lost = (await first.client.send_raw_transaction(raw)).value
        first.store.write_block = fail  # type: ignore[method-assign]
        with pytest.raises(ConnectionError):
            await first.node.tick()  # landed in the VM, then the commit failed: the node dies
        assert (await first.client.get_signature_statuses([lost])).value == [None]
        first.store.write_block = ChainStore.write_block.__get__(first.store)  # type: ignore[method-assign]

    async with running_node(chain_db) as second:
        again = await second.client.get_signature_statuses([confirmed, lost])
        assert again.value[0] is not None
        assert again.value[0].slot == status.slot
        assert again.value[1] is None
        assert (await second.client.send_raw_transaction(raw)).value == lost
        await wait_landed(second.client, str(lost))
        await second.wait_slots(2)
        assert await landed_count(chain_db, str(lost)) == 1
        await assert_accounts_equal_replay(second)


async def assert_accounts_equal_replay(running: Running) -> None:
    """Replaying every persisted transaction from genesis gives the same outcomes and the same
    accounts the node serves."""
    history = await running.store.all_transactions()
    vm, outcomes = replay(GENESIS, history)
    assert [o.signature for o in outcomes if not o.matches] == []
    async with await psycopg.AsyncConnection.connect(running.db_url) as conn:
        cur = await conn.execute("SELECT DISTINCT address FROM svm.account_states")
        addresses = [Pubkey.from_string(row[0]) for row in await cur.fetchall()]
    assert addresses
    for start in range(0, len(addresses), 100):
        chunk = addresses[start : start + 100]
        served = (await running.client.get_multiple_accounts(chunk)).value
        for address, account in zip(chunk, served, strict=True):
            local = vm.svm.get_account(address)
            if local is None or local.lamports == 0:
                assert account is None or account.lamports == 0, address
                continue
            assert account is not None, address
            assert (account.lamports, bytes(account.data), account.owner) == (
                local.lamports,
                bytes(local.data),
                local.owner,
            ), address


async def test_landing_cpu_per_swap(chain: Running) -> None:
    """CPU the node spends landing a swap: VM execution plus reading back its accounts."""
    client = chain.client
    blockhash = (await client.get_latest_blockhash()).value.blockhash
    wallets = [wallet_keypair(SEED, i) for i in range(WALLETS)]
    sent = []
    for i in range(200):
        mint_in, amount = (SOL, 10**7 + i) if i % 2 == 0 else (USDC, 10**6 + i)
        raw = swap_tx(wallets[i % WALLETS], mint_in, amount, 0, blockhash)
        sent.append((await client.send_raw_transaction(raw, TxOpts(skip_preflight=True))).value)
    for signature in sent:
        await wait_landed(client, str(signature))
    stats = chain.node.stats
    assert stats.landed == 200
    per_swap_ms = stats.cpu_per_transaction * 1000
    print(f"landing CPU per swap: {per_swap_ms:.3f} ms over {stats.landed} swaps")
    assert per_swap_ms < 1.0


@pytest.mark.slow
def test_kill_9_mid_stream_loses_and_repeats_nothing(chain_db: str) -> None:
    """`oee chain` killed with SIGKILL while swaps stream in: after the restart every
    transaction reported confirmed is still confirmed in the same slot, re-sending everything
    lands each signature once, and the accounts equal a replay of the persisted history."""
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": chain_db,
        "OEE_CHAIN_PORT": str(port),
        "OEE_SLOT_MS": "100",  # blockhashes live 15 s: the restart fits within it
        "OEE_CHAIN_SEED": str(SEED),
        "OEE_CHAIN_WALLETS": str(WALLETS),
        "OEE_LOG_FORMAT": "json",
    }
    url = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen[bytes]:
        child = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "chain"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    return child
            assert child.poll() is None, "the chain node exited at start"
            time.sleep(0.1)
        child.kill()
        raise AssertionError("the chain node did not start")

    def rpc(method: str, *params: object) -> Any:
        answer = httpx.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        ).json()
        assert "error" not in answer, answer
        return answer["result"]

    def statuses(signatures: list[str]) -> list[Any]:
        found: list[Any] = []
        for start_at in range(0, len(signatures), 256):
            chunk = signatures[start_at : start_at + 256]
            found += rpc("getSignatureStatuses", chunk, {"searchTransactionHistory": True})["value"]
        return found

    child = start()
    raws: list[str] = []
    signatures: list[str] = []
    confirmed_before: dict[str, tuple[int, object]] = {}
    try:
        wallets = [wallet_keypair(SEED, i) for i in range(WALLETS)]

        def send(i: int, blockhash: Hash) -> None:
            mint_in, amount = (SOL, 10**7 + i) if i % 2 == 0 else (USDC, 10**6 + i)
            raw = base64.b64encode(
                swap_tx(wallets[i % WALLETS], mint_in, amount, 0, blockhash)
            ).decode()
            raws.append(raw)
            config = {"encoding": "base64", "skipPreflight": True}
            signatures.append(rpc("sendTransaction", raw, config))

        for i in range(80):
            if i % 20 == 0:
                blockhash = Hash.from_string(rpc("getLatestBlockhash")["value"]["blockhash"])
            send(i, blockhash)
            if i % 10 == 9:
                time.sleep(0.03)
        # What the client knows confirmed; then a burst, and the kill while it is in flight.
        for signature, status in zip(signatures, statuses(signatures), strict=True):
            if status is not None:
                confirmed_before[signature] = (status["slot"], status["err"])
        for i in range(80, 100):
            send(i, blockhash)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert confirmed_before, "nothing confirmed before the kill"

        child = start()
        after = statuses(list(confirmed_before))
        for signature, status in zip(confirmed_before, after, strict=True):
            assert status is not None, f"{signature} was confirmed, then lost"
            assert (status["slot"], status["err"]) == confirmed_before[signature]
        in_flight = [
            s for s, status in zip(signatures, statuses(signatures), strict=True) if not status
        ]
        assert in_flight, "nothing was in flight at the kill"
        # The client's rule: re-send the same signed bytes until they land or expire.
        for raw in raws:
            assert rpc("sendTransaction", raw, {"encoding": "base64"}) in signatures
        deadline = time.monotonic() + 20
        while None in statuses(signatures):
            assert time.monotonic() < deadline, "re-sent transactions did not land"
            time.sleep(0.1)
        with psycopg.connect(chain_db) as conn:
            rows = conn.execute(
                "SELECT signature, count(*) FROM svm.transactions GROUP BY signature"
            ).fetchall()
        assert sorted(row[0] for row in rows) == sorted(signatures)
        assert all(row[1] == 1 for row in rows)

        async def compare() -> None:
            store = await ChainStore.open(chain_db)
            client = AsyncClient(url, commitment=Confirmed)
            node = ChainNode(store, GENESIS)  # only for its store in the comparison
            try:
                await assert_accounts_equal_replay(Running(node, store, client, url, chain_db))
            finally:
                await client.close()
                await store.close()

        asyncio.run(compare())
    finally:
        if child.poll() is None:
            child.terminate()
            child.wait(10)


def test_oee_chain_without_postgresql_says_so_in_one_line() -> None:
    env = os.environ | {"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/none"}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "chain"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: PostgreSQL is not reachable at 127.0.0.1:")
