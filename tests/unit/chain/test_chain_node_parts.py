"""The chain node's pure parts: deterministic genesis and blockhashes, Solana's error JSON,
which keys a message may write, and JSON-RPC dispatch without a node behind it."""

from __future__ import annotations

from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction_status import (
    InstructionErrorCustom,
    TransactionErrorFieldless,
    TransactionErrorInstructionError,
)

from services.chain.genesis import (
    ENGINE_VALUE_USDC,
    MAKER_VALUE_USDC,
    WALLET_VALUE_USDC,
    Genesis,
    build_genesis,
    wallet_keypair,
)
from services.chain.node import blockhash_of, err_json, err_message, writable_indexes
from services.chain.rpc import dispatch
from services.domain.tokens import TOKENS
from services.pricing.accounts.cpmm import decode_pool_state
from services.pricing.accounts.dlmm import decode_lb_pair


def test_genesis_is_a_function_of_the_seed() -> None:
    """Two builds hold byte-identical pools, vaults, mints and wallets: a restart can lay
    persisted accounts over a rebuilt genesis."""
    first, second = (
        build_genesis(Genesis(seed=3, wallets=2)),
        build_genesis(Genesis(seed=3, wallets=2)),
    )
    assert first.pools.keys() == second.pools.keys()
    keys: list[Pubkey] = [w.pubkey() for w in first.wallets]
    for pool in first.pools.values():
        keys += [pool.pool, pool.vault0, pool.vault1, pool.lp_mint, pool.observation]
        keys += [pool.mint0, pool.mint1]
    assert first.pairs.keys() == second.pairs.keys() == first.pools.keys()
    for pair in first.pairs.values():
        keys += [pair.lb_pair, pair.reserve_x, pair.reserve_y, pair.oracle]
        keys += [address for _, address in pair.bin_arrays]
    for key in keys:
        assert first.vm.svm.get_account(key) == second.vm.svm.get_account(key), key
    other = build_genesis(Genesis(seed=4, wallets=2))
    assert wallet_keypair(3, 0) != wallet_keypair(4, 0)
    assert other.vm.mint_authority.pubkey() != first.vm.mint_authority.pubkey()


def test_genesis_pools_are_open_at_slot_zero() -> None:
    state = build_genesis(Genesis(seed=3, wallets=0))
    for pool in state.pools.values():
        assert decode_pool_state(state.vm.account_data(pool.pool)).is_open(state.vm.now)
    for pair in state.pairs.values():
        lb_pair = decode_lb_pair(state.vm.account_data(pair.lb_pair))
        assert lb_pair.status == 0
        assert lb_pair.activation_point <= state.vm.now


def test_genesis_funds_the_engine_and_the_maker_more_than_other_wallets() -> None:
    state = build_genesis(Genesis(seed=3, wallets=3, engine_wallet=0, maker_wallet=1))
    usdc = Pubkey.from_string(TOKENS["USDC"].mint)
    scale = 10 ** TOKENS["USDC"].decimals
    engine, maker, other = (state.vm.balance(w.pubkey(), usdc) for w in state.wallets)
    assert (engine, maker, other) == (
        int(ENGINE_VALUE_USDC) * scale,
        int(MAKER_VALUE_USDC) * scale,
        int(WALLET_VALUE_USDC) * scale,
    )
    sol = Pubkey.from_string(TOKENS["SOL"].mint)
    # The load bench's mix sells about $2.6M of SOL from the engine's wallet.
    assert state.vm.balance(state.wallets[0].pubkey(), sol) > 3 * state.vm.balance(
        state.wallets[2].pubkey(), sol
    )


def test_blockhashes_follow_seed_and_slot() -> None:
    assert blockhash_of(1, 10) == blockhash_of(1, 10)
    assert len({blockhash_of(1, 10), blockhash_of(1, 11), blockhash_of(2, 10)}) == 3


def test_errors_in_solanas_json() -> None:
    custom = TransactionErrorInstructionError(1, InstructionErrorCustom(6005))
    assert err_json(custom) == {"InstructionError": [1, {"Custom": 6005}]}
    assert err_json(TransactionErrorFieldless.BlockhashNotFound) == "BlockhashNotFound"
    assert err_json(None) is None
    assert err_message(err_json(custom)) == (
        "Error processing Instruction 1: custom program error: 0x1775"
    )
    assert err_message("BlockhashNotFound") == "Blockhash not found"


def test_writable_keys_follow_the_header() -> None:
    payer, to = Keypair(), Pubkey.new_unique()
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=1))
    message = Message.new_with_blockhash([ix], payer.pubkey(), Hash.default())
    keys = message.account_keys
    writable = {keys[i] for i in writable_indexes(message.header, len(keys))}
    assert writable == {payer.pubkey(), to}  # not the system program


async def test_dispatch_rejects_what_is_not_json_rpc() -> None:
    node = None  # never reached: these fail before a handler runs
    assert (await dispatch(node, [1]))["error"] == {  # type: ignore[arg-type]
        "code": -32600,
        "message": "Invalid request",
    }
    unknown = await dispatch(node, {"jsonrpc": "2.0", "id": 3, "method": "nope"})  # type: ignore[arg-type]
    assert unknown == {
        "jsonrpc": "2.0",
        "error": {"code": -32601, "message": "Method not found"},
        "id": 3,
    }
