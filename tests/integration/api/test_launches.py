"""`POST /api/markets/launches` on a chain node of the test's own and the real Kafka: a bad
request is a 400 with nothing launched or published, a key without the admin scope is refused,
and a launch lands on the chain and its events on `chain.events`, where the fold finds it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from solana.rpc.core import RPCException
from solders.compute_budget import set_compute_unit_limit
from solders.hash import Hash
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import Transaction

from schemas.chain import PoolCreated, TokenAuthorities, decode_chain
from services.api.auth.principal import ADMIN
from services.api.auth.store import create_key
from services.chain.genesis import wallet_keypair
from services.chain.launch import chain_time, create_ata_idempotent_ix
from services.chain.rpc_venues import RpcPoolSource, dlmm_keys
from services.chain.solana_client import failure_code
from services.chain.svm.constants import DLMM_PROGRAM_ID
from services.chain.svm.errors import map_error
from services.chain.svm.vm import DlmmSwap
from services.common.settings import Settings
from services.domain.launches import fold_all
from services.domain.tokens import Token, register_launched
from services.pricing.accounts.spl import decode_mint
from tests.fixtures.settings import MakeSettings, unique
from tests.integration.api.support import RunningApi, running_api
from tests.integration.test_chain_rpc import (
    BUILDER,
    GENESIS,
    SOL,
    Running,
    fresh_chain_database,
    running_node,
    wait_landed,
)


def make_key(database_url: str, *scopes: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        _, key = create_key(conn, f"test-{uuid.uuid4().hex[:8]}", *((scopes,) if scopes else ()))
    return key


@pytest.fixture
async def chain(database_url: str) -> AsyncIterator[Running]:
    with fresh_chain_database(database_url) as url:
        async with running_node(url) as node:
            yield node


@pytest.fixture
async def api(make_settings: MakeSettings, chain: Running) -> AsyncIterator[RunningApi]:
    settings = make_settings(
        auth="enabled",
        auth_cache_seconds=0,
        chain_events_topic=unique("chain.events"),
        solana_rpc_url=chain.url,
        chain_seed=GENESIS.seed,
        market_ticks_topic=unique("market.ticks"),
    )
    async with running_api(settings) as running:
        yield running


async def chain_events(settings: Settings) -> list[bytes]:
    """Every record on the test's `chain.events`, from the start to its end now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_servers, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        partition = TopicPartition(settings.chain_events_topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        end = (await consumer.end_offsets([partition]))[partition]
        values: list[bytes] = []
        while len(values) < end:
            batch = await consumer.getmany(partition, timeout_ms=1000)
            values += [r.value for r in batch.get(partition, []) if r.value is not None]
        return values
    finally:
        await consumer.stop()


def launch_body(**changes: Any) -> dict[str, Any]:
    return {"symbol": "MEME", "quote": "SOL", "liquidity": "200", "openIn": "30s"} | changes


BAD_LAUNCHES = [
    ({"symbol": "meme!"}, "not a token symbol"),
    ({"symbol": "USDC"}, "already a token"),
    ({"quote": "XYZ"}, "unknown quote token"),
    ({"liquidity": "-1"}, "positive"),
    ({"openIn": "tomorrow"}, "not a duration"),
    ({"venue": "meteora", "lp": "burn"}, "no LP tokens to burn"),
]


async def test_bad_launches_are_400s_and_nothing_is_published(
    api: RunningApi, database_url: str
) -> None:
    admin = {"Authorization": f"Bearer {make_key(database_url, ADMIN)}"}
    for changes, words in BAD_LAUNCHES:
        response = await api.http.post(
            "/api/markets/launches", json=launch_body(**changes), headers=admin
        )
        assert response.status_code == 400, (changes, response.text)
        assert response.json()["error"] == "INVALID_LAUNCH"
        assert words in response.json()["message"]
    assert await chain_events(api.settings) == []


async def test_launch_needs_the_admin_scope(api: RunningApi, database_url: str) -> None:
    trader = {"Authorization": f"Bearer {make_key(database_url)}"}
    response = await api.http.post("/api/markets/launches", json=launch_body(), headers=trader)
    assert response.status_code == 403
    assert await chain_events(api.settings) == []


async def test_launch_lands_on_the_chain_and_its_events_fold(
    api: RunningApi, chain: Running, database_url: str
) -> None:
    admin = {"Authorization": f"Bearer {make_key(database_url, ADMIN)}"}
    body = launch_body(mintAuthority="keep", lp="keep")
    response = await api.http.post("/api/markets/launches", json=body, headers=admin)
    assert response.status_code == 201, response.text
    launched = response.json()
    async with chain.node.committed() as vm:
        mint = decode_mint(vm.account_data(Pubkey.from_string(launched["mint"])))
        now = vm.now
    assert mint.mint_authority is not None
    assert mint.freeze_authority is None
    assert str(mint.mint_authority) == launched["mintAuthority"]
    assert now < launched["openTime"] <= now + 30

    events = [decode_chain(v) for v in await chain_events(api.settings)]
    assert [type(e) for e in events] == [TokenAuthorities, PoolCreated]
    token = fold_all(events)["MEME"]
    assert (token.pool, token.open_time, token.opened_slot) == (
        launched["pool"],
        launched["openTime"],
        None,
    )
    facts = token.facts()
    assert facts is not None
    assert facts.mint_authority == launched["mintAuthority"]
    assert facts.freeze_authority is None
    assert facts.lp_supply == launched["lpSupply"] > 0
    assert facts.quote_liquidity == Decimal(200)
    assert fold_all(events + events) == fold_all(events)  # replaying folds to the same launches

    # The API's own fold serves it to the dashboard: GET /api/launches.
    reader = {"Authorization": f"Bearer {make_key(database_url)}"}
    deadline = time.monotonic() + 10
    while True:
        listed = (await api.http.get("/api/launches", headers=reader)).json()["launches"]
        if listed or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert listed == [
        {
            "symbol": "MEME",
            "pair": "MEME-SOL",
            "quote": "SOL",
            "venue": "RAYDIUM",
            "mint": launched["mint"],
            "decimals": launched["decimals"],
            "pool": launched["pool"],
            "openTime": launched["openTime"],
            "openAt": listed[0]["openAt"],
            "opened": False,
            "openedSlot": None,
            "mintAuthority": launched["mintAuthority"],
            "freezeAuthority": None,
            "mintRenounced": False,
            "freezeRenounced": True,
            "lpSupply": launched["lpSupply"],
            "lpBurned": False,
            "quoteLiquidity": "200",
        }
    ]
    assert listed[0]["openAt"].endswith("Z")
    assert (await api.http.get("/api/launches")).status_code == 401


async def test_meteora_launch_lands_over_rpc_and_opens_at_its_activation(
    api: RunningApi, chain: Running, database_url: str
) -> None:
    """A DLMM launch pair created by ordinary transactions on the node: discoverable by the
    router's pool source, refusing a buy before its activation time with POOL_NOT_OPEN (6042),
    and selling the new token from then on."""
    admin = {"Authorization": f"Bearer {make_key(database_url, ADMIN)}"}
    body = launch_body(symbol="DLMMX", venue="meteora", openIn="4s", freezeAuthority="keep")
    response = await api.http.post("/api/markets/launches", json=body, headers=admin)
    assert response.status_code == 201, response.text
    launched = response.json()
    assert (launched["venue"], launched["lpMint"], launched["lpSupply"]) == ("meteora", None, None)
    assert len(launched["signatures"]) > 2  # the mint, then the pair split over several
    assert Decimal(199) < Decimal(launched["quoteLiquidity"]) <= Decimal(200)
    mint = Pubkey.from_string(launched["mint"])
    async with chain.node.committed() as vm:
        pair = vm.svm.get_account(Pubkey.from_string(launched["pool"]))
        assert pair is not None
        assert pair.owner == DLMM_PROGRAM_ID
        assert decode_mint(vm.account_data(mint)).mint_authority is None

    events = [decode_chain(v) for v in await chain_events(api.settings)]
    assert [type(e) for e in events] == [TokenAuthorities, PoolCreated]
    created = events[1]
    assert isinstance(created, PoolCreated)
    assert (created.venue, created.pool, created.lp_mint, created.lp_supply) == (
        "METEORA",
        launched["pool"],
        None,
        None,
    )
    facts = fold_all(events)["DLMMX"].facts()
    assert facts is not None
    assert facts.freeze_authority == launched["freezeAuthority"] is not None
    assert facts.open_time == launched["openTime"]

    # The router's view: the pair and its bin arrays found by getProgramAccounts.
    register_launched(Token("DLMMX", launched["decimals"], launched["mint"]))
    source = RpcPoolSource(chain.url)
    try:
        registry = await source.discover()
    finally:
        await source.close()
    (listing,) = [d for d in registry.dlmm if str(d.address) == launched["pool"]]
    keys = dlmm_keys(listing)
    assert keys.bin_arrays

    client, wallet = chain.client, wallet_keypair(GENESIS.seed, 0)
    owner = wallet.pubkey()
    buy = [
        set_compute_unit_limit(400_000),
        create_ata_idempotent_ix(owner, owner, mint),
        BUILDER.dlmm_swap_ix(owner, DlmmSwap(keys, SOL, 10**8, 1)),
    ]
    programs = [ix.program_id for ix in buy]

    async def signed_buy() -> bytes:
        blockhash: Hash = (await client.get_latest_blockhash()).value.blockhash
        return bytes(
            Transaction([wallet], Message.new_with_blockhash(buy, owner, blockhash), blockhash)
        )

    assert await chain_time(client) < launched["openTime"]
    with pytest.raises(RPCException) as refused:
        await client.send_raw_transaction(await signed_buy())
    error = refused.value.args[0].data
    mapped = map_error(error.err, programs, list(error.logs or []))
    assert (mapped.code, failure_code(mapped)) == (6042, "POOL_NOT_OPEN")

    deadline = time.monotonic() + 10
    while await chain_time(client) < launched["openTime"]:
        assert time.monotonic() < deadline, "the chain's clock did not reach the open time"
        await asyncio.sleep(0.1)
    sent = (await client.send_raw_transaction(await signed_buy())).value
    status = await wait_landed(client, str(sent))
    assert status.err is None
    bought = await client.get_token_account_balance(BUILDER.token_account(owner, mint))
    assert int(bought.value.amount) > 0
