"""Orders executed as real Solana transactions: `oee chain` + api, router, projector, each
system on a database of its own (the node's `svm` schema is its chain), so fills can be checked
against quotes to the base unit."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import psycopg
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.signature import Signature

from schemas.events import OrderCompleted, OrderFailed, TransactionSubmitted
from services.chain.genesis import wallet_keypair
from services.chain.svm.vm import CpmmPoolKeys, SolanaVm
from services.domain.tokens import from_base_units
from services.pricing.accounts.cpmm import decode_amm_config, decode_pool_state, quote_base_input
from services.pricing.accounts.spl import decode_token_amount
from tests.e2e.system import System, eventually, order_payload, read_log, wait_all_final

SEED = 42
BUILDER = SolanaVm()
SOL, USDC = BUILDER.mint_of("SOL"), BUILDER.mint_of("USDC")
SOL_USDC = CpmmPoolKeys.derive(SOL, USDC)
CPMM = "CPMMoo8L3F4NbTegBCKVNunggL7H1ZpdTHKxQB5qKP1C"


async def start_svm_system(start_system: Any, **overrides: Any) -> System:
    # The fixture starts the chain first and the router once the chain answers.
    system: System = await start_system(own_database=True, chain_seed=SEED, **overrides)
    return system


async def quote_sol_usdc(client: AsyncClient, amount_in: int) -> int:
    """What the CPMM program pays for SOL now, from the pool's accounts."""
    keys = [SOL_USDC.pool, SOL_USDC.vault0, SOL_USDC.vault1, SOL_USDC.amm_config]
    pool, vault0, vault1, config = (await client.get_multiple_accounts(keys)).value
    assert pool is not None
    assert vault0 is not None
    assert vault1 is not None
    assert config is not None
    state = decode_pool_state(bytes(pool.data))
    r0, r1 = state.reserves(
        decode_token_amount(bytes(vault0.data)), decode_token_amount(bytes(vault1.data))
    )
    reserves = (r0, r1) if SOL_USDC.mint0 == SOL else (r1, r0)
    return quote_base_input(
        amount_in, *reserves, decode_amm_config(bytes(config.data)).trade_fee_rate
    )


async def submit(client: httpx.AsyncClient, system: System, amount: str) -> str:
    response = await client.post(
        f"{system.base_url}/api/orders/execute", json=order_payload("SOL", "USDC", amount)
    )
    assert response.status_code == 202, response.text
    return str(response.json()["orderId"])


async def order_events(system: System, order_id: str) -> list[Any]:
    return [e for _, _, e in await read_log(system.settings) if str(e.order_id) == order_id]


async def landed(system: System, signature: str) -> int:
    async with await psycopg.AsyncConnection.connect(str(system.settings.database_url)) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM svm.transactions WHERE signature = %s", (signature,)
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_market_order_lands_as_a_signed_transaction_at_its_quote(
    start_system: Any,
) -> None:
    system = await start_svm_system(start_system)
    rpc = AsyncClient(system.settings.solana_rpc_url, commitment=Confirmed)
    try:
        expected = await quote_sol_usdc(rpc, 10**9)
        async with httpx.AsyncClient() as client:
            order_id = await submit(client, system, "1")
            await wait_all_final(system, {order_id}, timeout=60)

        found = await order_events(system, order_id)
        final = found[-1].payload
        assert isinstance(final, OrderCompleted), f"{final!r}\n{system.logs()}"
        submitted = [e.payload for e in found if isinstance(e.payload, TransactionSubmitted)]
        assert len(submitted) == 1
        assert submitted[0].transaction is not None
        assert submitted[0].last_valid_block_height is not None
        assert final.tx_hash == submitted[0].tx_hash
        assert final.selected_dex == "RAYDIUM"
        # Nothing traded in between: the fill is the quote, to the base unit.
        assert final.amount_out == from_base_units("USDC", expected)
        assert final.amount_in == 1

        got = (
            await rpc.get_transaction(Signature.from_string(final.tx_hash), "json", Confirmed, 0)
        ).value
        assert got is not None
        meta = got.transaction.meta
        assert meta is not None
        assert meta.err is None
        logs = meta.log_messages or []
        assert "Program log: Instruction: SwapBaseInput" in logs
        assert f"Program {CPMM} success" in logs
        signer = got.transaction.transaction.message.account_keys[0]  # type: ignore[union-attr]
        assert signer == wallet_keypair(SEED, 0).pubkey()
        assert await landed(system, final.tx_hash) == 1
    finally:
        await rpc.close()


async def test_a_router_killed_between_signing_and_confirming_lands_the_order_once(
    start_system: Any,
) -> None:
    # Long slots: the kill comes after the submission is recorded, before its block lands.
    system = await start_svm_system(start_system, slot_ms=2000)
    async with httpx.AsyncClient() as client:
        order_id = await submit(client, system, "0.5")

        async def recorded() -> bool:
            return any(
                isinstance(e.payload, TransactionSubmitted)
                for e in await order_events(system, order_id)
            )

        await eventually(
            recorded,
            timeout=60,
            what="the signed transaction recorded",
            system=system,
            interval=0.05,
        )
        system.kill("router")
        await asyncio.sleep(1)
        system.start("router")
        await wait_all_final(system, {order_id}, timeout=90)

    found = await order_events(system, order_id)
    finals = [e for e in found if isinstance(e.payload, (OrderCompleted, OrderFailed))]
    assert len(finals) == 1, [e.type for e in found]
    assert isinstance(finals[0].payload, OrderCompleted), f"{finals[0]!r}\n{system.logs()}"
    signatures = {e.payload.tx_hash for e in found if isinstance(e.payload, TransactionSubmitted)}
    assert len(signatures) == 1  # no rebuild: the takeover re-sent the recorded bytes
    assert sum([await landed(system, s) for s in signatures]) == 1
