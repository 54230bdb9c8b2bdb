"""Solana JSON-RPC over HTTP in front of a `ChainNode`: the subset the engine uses.

aiohttp rather than FastAPI: JSON-RPC is one POST route whose body names the method, so
FastAPI's routing, validation and OpenAPI would do nothing here but cost time per request, and
aiohttp is already installed (faust-streaming depends on it). Answers follow a Solana node's
shapes closely enough that the `solana` client library parses them unchanged; errors carry
Solana's codes (-32002 preflight failure with the TransactionError and logs, -32602 invalid
params, -32601 unknown method).
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import base58
import orjson
from aiohttp import web
from solders.account import Account
from solders.hash import Hash
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from services.chain.node import ChainNode, RpcError, blockhash_of
from services.chain.store import LandedTransaction, TokenBalance
from services.chain.svm.constants import TOKEN_2022_PROGRAM_ID, TOKEN_PROGRAM_ID
from services.pricing.accounts.spl import decode_token_amount

API_VERSION = "2.2.0"  # the Solana RPC version whose answers these follow

Params = list[Any]
Handler = Callable[[ChainNode, Params], Awaitable[object]]


def _param(params: Params, index: int, default: object = None) -> Any:
    return params[index] if len(params) > index else default


def _config(params: Params, index: int) -> dict[str, Any]:
    value = _param(params, index, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RpcError(-32602, "Invalid params: the configuration must be an object")
    return value


def _pubkey(value: object) -> Pubkey:
    try:
        return Pubkey.from_string(str(value))
    except ValueError:
        raise RpcError(-32602, f"Invalid param: {value!r} is not a public key") from None


def _tx_bytes(value: object, encoding: str) -> bytes:
    if not isinstance(value, str):
        raise RpcError(-32602, "Invalid params: the transaction must be a string")
    try:
        if encoding == "base64":
            return base64.b64decode(value, validate=True)
        if encoding == "base58":
            return base58.b58decode(value)
    except ValueError as exc:
        raise RpcError(-32602, f"invalid {encoding} encoding: {exc}") from None
    raise RpcError(-32602, f"Invalid params: unsupported encoding {encoding!r}")


def _context(node: ChainNode) -> dict[str, object]:
    return {"slot": node.slot, "apiVersion": API_VERSION}


def _with_context(node: ChainNode, value: object) -> dict[str, object]:
    return {"context": _context(node), "value": value}


def _account_json(account: Account | None, encoding: str) -> dict[str, object] | None:
    if account is None:
        return None
    data = bytes(account.data)
    if encoding == "base58":
        encoded = [base58.b58encode(data).decode(), "base58"]
    elif encoding in ("base64", "jsonParsed"):  # jsonParsed falls back to base64, as on Solana
        encoded = [base64.b64encode(data).decode(), "base64"]
    else:
        raise RpcError(-32602, f"Invalid params: unsupported encoding {encoding!r}")
    return {
        "data": encoded,
        "executable": account.executable,
        "lamports": account.lamports,
        "owner": str(account.owner),
        "rentEpoch": account.rent_epoch,
        "space": len(data),
    }


# --- methods ------------------------------------------------------------------------------


async def get_latest_blockhash(node: ChainNode, params: Params) -> object:
    blockhash, last_valid = node.latest_blockhash()
    return _with_context(node, {"blockhash": str(blockhash), "lastValidBlockHeight": last_valid})


async def is_blockhash_valid(node: ChainNode, params: Params) -> object:
    try:
        blockhash = Hash.from_string(str(_param(params, 0)))
    except ValueError:
        raise RpcError(-32602, "Invalid param: not a blockhash") from None
    return _with_context(node, node.blockhash_valid(blockhash, node.slot))


async def send_transaction(node: ChainNode, params: Params) -> object:
    config = _config(params, 1)
    raw = _tx_bytes(_param(params, 0), config.get("encoding", "base58"))
    return await node.send(raw, skip_preflight=bool(config.get("skipPreflight", False)))


async def simulate_transaction(node: ChainNode, params: Params) -> object:
    config = _config(params, 1)
    raw = _tx_bytes(_param(params, 0), config.get("encoding", "base58"))
    replace = bool(config.get("replaceRecentBlockhash", False))
    sig_verify = bool(config.get("sigVerify", False))
    if replace and sig_verify:
        raise RpcError(-32602, "sigVerify may not be used with replaceRecentBlockhash")
    simulated = await node.simulate(raw, sig_verify=sig_verify, replace_blockhash=replace)
    value = simulated.as_rpc()
    if replace:
        blockhash, last_valid = node.latest_blockhash()
        value["replacementBlockhash"] = {
            "blockhash": str(blockhash),
            "lastValidBlockHeight": last_valid,
        }
    return _with_context(node, value)


async def get_signature_statuses(node: ChainNode, params: Params) -> object:
    signatures = _param(params, 0, [])
    if not isinstance(signatures, list) or len(signatures) > 256:
        raise RpcError(-32602, "Invalid params: at most 256 signatures, as a list")
    search = bool(_config(params, 1).get("searchTransactionHistory", False))
    statuses = await node.statuses([str(s) for s in signatures], search_history=search)
    return _with_context(node, statuses)


async def get_account_info(node: ChainNode, params: Params) -> object:
    key = _pubkey(_param(params, 0))
    encoding = _config(params, 1).get("encoding", "base58")
    async with node.committed() as vm:
        account = vm.svm.get_account(key)
    return _with_context(node, _account_json(account, encoding))


async def get_multiple_accounts(node: ChainNode, params: Params) -> object:
    raw_keys = _param(params, 0, [])
    if not isinstance(raw_keys, list) or len(raw_keys) > 100:
        raise RpcError(-32602, "Invalid params: at most 100 public keys, as a list")
    keys = [_pubkey(k) for k in raw_keys]
    encoding = _config(params, 1).get("encoding", "base64")
    async with node.committed() as vm:
        accounts = [vm.svm.get_account(key) for key in keys]
    return _with_context(node, [_account_json(a, encoding) for a in accounts])


MAX_FILTERS = 4  # as a Solana node allows


def _filter(raw: object) -> Callable[[bytes], bool]:
    """One `getProgramAccounts` filter: `{"dataSize": n}` or `{"memcmp": {offset, bytes}}`."""
    if isinstance(raw, dict) and isinstance(raw.get("dataSize"), int):
        size = raw["dataSize"]
        return lambda data: len(data) == size
    memcmp = raw.get("memcmp") if isinstance(raw, dict) else None
    if isinstance(memcmp, dict) and isinstance(memcmp.get("offset"), int):
        offset, encoded = memcmp["offset"], memcmp.get("bytes")
        encoding = memcmp.get("encoding", "base58")
        if not isinstance(encoded, str) or encoding not in ("base58", "base64"):
            raise RpcError(-32602, "Invalid params: memcmp needs base58 or base64 bytes")
        try:
            wanted = (
                base64.b64decode(encoded, validate=True)
                if encoding == "base64"
                else base58.b58decode(encoded)
            )
        except ValueError as exc:
            raise RpcError(-32602, f"Invalid params: memcmp bytes: {exc}") from None
        return lambda data: data[offset : offset + len(wanted)] == wanted
    raise RpcError(-32602, f"Invalid params: unsupported filter {raw!r}")


async def get_program_accounts(node: ChainNode, params: Params) -> object:
    """Every account the program owns that passes all the filters (Solana's AND)."""
    program = _pubkey(_param(params, 0))
    config = _config(params, 1)
    raw_filters = config.get("filters") or []
    if not isinstance(raw_filters, list) or len(raw_filters) > MAX_FILTERS:
        raise RpcError(-32602, f"Invalid params: at most {MAX_FILTERS} filters, as a list")
    filters = [_filter(f) for f in raw_filters]
    encoding = config.get("encoding", "base58")
    data_slice = config.get("dataSlice")
    async with node.committed() as vm:
        owned = vm.svm.get_program_accounts(program)
    found = []
    for address, account in owned:
        data = bytes(account.data)
        if account.lamports == 0 or not all(f(data) for f in filters):
            continue
        if isinstance(data_slice, dict):
            start = int(data_slice.get("offset", 0))
            data = data[start : start + int(data_slice.get("length", 0))]
            account = Account(account.lamports, data, account.owner, account.executable)
        found.append({"pubkey": str(address), "account": _account_json(account, encoding)})
    found.sort(key=lambda item: str(item["pubkey"]))  # a stable order for a stable state
    return _with_context(node, found) if config.get("withContext") else found


async def get_balance(node: ChainNode, params: Params) -> object:
    key = _pubkey(_param(params, 0))
    async with node.committed() as vm:
        lamports = vm.svm.get_balance(key) or 0
    return _with_context(node, lamports)


async def get_token_account_balance(node: ChainNode, params: Params) -> object:
    key = _pubkey(_param(params, 0))
    async with node.committed() as vm:
        account = vm.svm.get_account(key)
        mint = (
            vm.svm.get_account(Pubkey.from_bytes(bytes(account.data)[:32]))
            if account is not None
            and account.owner in (TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID)
            and len(account.data) >= 165
            else None
        )
    if account is None or mint is None:
        raise RpcError(-32602, "Invalid param: not a Token account")
    amount = decode_token_amount(bytes(account.data))
    decimals = bytes(mint.data)[44]
    ui = amount / 10**decimals
    ui_string = f"{amount / 10**decimals:.{decimals}f}".rstrip("0").rstrip(".") or "0"
    return _with_context(
        node,
        {
            "amount": str(amount),
            "decimals": decimals,
            "uiAmount": ui,
            "uiAmountString": ui_string,
        },
    )


async def get_slot(node: ChainNode, params: Params) -> object:
    return node.slot


async def get_block_height(node: ChainNode, params: Params) -> object:
    return node.slot  # every slot is a block here


async def get_block_time(node: ChainNode, params: Params) -> object:
    """A committed block's clock (unix seconds): what its transactions saw as the Clock sysvar."""
    slot = _param(params, 0)
    if not isinstance(slot, int) or isinstance(slot, bool) or slot < 0:
        raise RpcError(-32602, "Invalid params: the slot must be a non-negative integer")
    if slot > node.slot:
        raise RpcError(-32004, f"Block not available for slot {slot}")
    return node.unix_time(slot)


async def get_recent_performance_samples(node: ChainNode, params: Params) -> object:
    """Solana's 60-second samples, newest first: how many slots and transactions each saw."""
    limit = _param(params, 0, 720)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= 720:
        raise RpcError(-32602, "Invalid params: the limit must be an integer from 0 to 720")
    return [
        {
            "slot": sample.slot,
            "numSlots": sample.num_slots,
            "numTransactions": sample.num_transactions,
            "numNonVoteTransactions": sample.num_transactions,  # the node has no votes
            "samplePeriodSecs": sample.period_seconds,
        }
        for sample in node.performance_samples(limit)
    ]


def _transaction_json(
    tx_row: LandedTransaction, config: dict[str, Any]
) -> tuple[object, dict[str, object], object]:
    """A landed transaction as getTransaction and getBlock show it: (transaction, meta, version)."""
    encoding = config.get("encoding") or "json"
    tx = VersionedTransaction.from_bytes(tx_row.raw)
    message = tx.message
    version: object = 0 if isinstance(message, MessageV0) else "legacy"
    max_version = config.get("maxSupportedTransactionVersion")
    if version == 0 and (max_version is None or max_version < 0):
        raise RpcError(
            -32015,
            "Transaction version (0) is not supported by the requesting client. Please try the"
            " request again with the following configuration parameter:"
            ' "maxSupportedTransactionVersion": 0',
        )
    if encoding == "base64":
        transaction: object = [base64.b64encode(tx_row.raw).decode(), "base64"]
    elif encoding == "base58":
        transaction = [base58.b58encode(tx_row.raw).decode(), "base58"]
    elif encoding in ("json", "jsonParsed"):
        header = message.header
        ui_message: dict[str, object] = {
            "accountKeys": [str(k) for k in message.account_keys],
            "header": {
                "numRequiredSignatures": header.num_required_signatures,
                "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
                "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts,
            },
            "recentBlockhash": str(message.recent_blockhash),
            "instructions": [
                {
                    "programIdIndex": ix.program_id_index,
                    "accounts": list(bytes(ix.accounts)),
                    "data": base58.b58encode(bytes(ix.data)).decode(),
                    "stackHeight": None,
                }
                for ix in message.instructions
            ],
        }
        if version == 0:
            ui_message["addressTableLookups"] = []
        transaction = {"signatures": [str(s) for s in tx.signatures], "message": ui_message}
    else:
        raise RpcError(-32602, f"Invalid params: unsupported encoding {encoding!r}")
    meta: dict[str, object] = {
        "err": tx_row.err,
        "status": {"Ok": None} if tx_row.err is None else {"Err": tx_row.err},
        "fee": tx_row.fee,
        "preBalances": tx_row.pre_balances,
        "postBalances": tx_row.post_balances,
        "innerInstructions": None,  # not recorded
        "logMessages": tx_row.logs,
        "preTokenBalances": _token_balances_json(tx_row.pre_token_balances),
        "postTokenBalances": _token_balances_json(tx_row.post_token_balances),
        "rewards": [],
        "computeUnitsConsumed": tx_row.compute_units,
    }
    return transaction, meta, version


async def get_transaction(node: ChainNode, params: Params) -> object:
    signature = str(_param(params, 0))
    config = _config(params, 1)
    stored = await node.transaction(signature)
    if stored is None:
        return None
    tx_row = stored.landed
    transaction, meta, version = _transaction_json(tx_row, config)
    return {
        "slot": tx_row.slot,
        "blockTime": stored.unix_time,
        "transaction": transaction,
        "meta": meta,
        "version": version,
    }


async def get_block(node: ChainNode, params: Params) -> object:
    """A block as Solana's `getBlock` answers it: every slot is a block here (an empty one has no
    transactions); a slot not yet committed is "not available" (-32004), as on a node."""
    slot = _param(params, 0)
    if not isinstance(slot, int) or isinstance(slot, bool) or slot < 0:
        raise RpcError(-32602, "Invalid params: the slot must be a non-negative integer")
    config = _config(params, 1)
    if slot > node.slot:
        raise RpcError(-32004, f"Block not available for slot {slot}")
    details = config.get("transactionDetails") or "full"  # the solana client sends nulls
    landed = await node.store.block_transactions(slot) if details != "none" else []
    block: dict[str, object] = {
        "blockhash": str(blockhash_of(node.genesis.seed, slot)),
        "previousBlockhash": str(blockhash_of(node.genesis.seed, max(slot - 1, 0))),
        "parentSlot": max(slot - 1, 0),
        "blockHeight": slot,
        "blockTime": node.unix_time(slot),
    }
    if details == "full":
        transactions = []
        for tx_row in landed:
            transaction, meta, version = _transaction_json(tx_row, config)
            transactions.append({"transaction": transaction, "meta": meta, "version": version})
        block["transactions"] = transactions
    elif details == "signatures":
        block["signatures"] = [tx_row.signature for tx_row in landed]
    elif details != "none":
        raise RpcError(-32602, f"Invalid params: unsupported transactionDetails {details!r}")
    if config.get("rewards") is not False:
        block["rewards"] = []
    return block


def _token_balances_json(balances: list[TokenBalance] | None) -> list[dict[str, object]] | None:
    """Solana's UiTransactionTokenBalance list (null for transactions landed before they were
    recorded)."""
    if balances is None:
        return None
    return [
        {
            "accountIndex": b["accountIndex"],
            "mint": b["mint"],
            "owner": b["owner"],
            "programId": b["programId"],
            "uiTokenAmount": _ui_amount(int(b["amount"]), int(b["decimals"])),
        }
        for b in balances
    ]


def _ui_amount(amount: int, decimals: int) -> dict[str, object]:
    ui_string = f"{amount / 10**decimals:.{decimals}f}".rstrip("0").rstrip(".") or "0"
    return {
        "amount": str(amount),
        "decimals": decimals,
        "uiAmount": amount / 10**decimals,
        "uiAmountString": ui_string,
    }


async def get_health(node: ChainNode, params: Params) -> object:
    return "ok"


async def get_version(node: ChainNode, params: Params) -> object:
    return {"solana-core": API_VERSION, "feature-set": 0}


METHODS: dict[str, Handler] = {
    "getLatestBlockhash": get_latest_blockhash,
    "isBlockhashValid": is_blockhash_valid,
    "sendTransaction": send_transaction,
    "simulateTransaction": simulate_transaction,
    "getSignatureStatuses": get_signature_statuses,
    "getAccountInfo": get_account_info,
    "getMultipleAccounts": get_multiple_accounts,
    "getProgramAccounts": get_program_accounts,
    "getBalance": get_balance,
    "getTokenAccountBalance": get_token_account_balance,
    "getSlot": get_slot,
    "getBlockHeight": get_block_height,
    "getBlockTime": get_block_time,
    "getRecentPerformanceSamples": get_recent_performance_samples,
    "getTransaction": get_transaction,
    "getBlock": get_block,
    "getHealth": get_health,
    "getVersion": get_version,
}


# --- transport ----------------------------------------------------------------------------


def _error(request_id: object, code: int, message: str, data: object = None) -> dict[str, object]:
    error: dict[str, object] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "error": error, "id": request_id}


async def dispatch(node: ChainNode, request: object) -> dict[str, object]:
    """One JSON-RPC request object to its response object."""
    if not isinstance(request, dict) or not isinstance(request.get("method"), str):
        return _error(None, -32600, "Invalid request")
    request_id = request.get("id")
    handler = METHODS.get(request["method"])
    if handler is None:
        return _error(request_id, -32601, "Method not found")
    params = request.get("params", [])
    if not isinstance(params, list):
        return _error(request_id, -32602, "Invalid params: expected an array")
    try:
        result = await handler(node, params)
    except RpcError as exc:
        return _error(request_id, exc.code, exc.message, exc.data)
    return {"jsonrpc": "2.0", "result": result, "id": request_id}


def make_app(node: ChainNode) -> web.Application:
    """The aiohttp app: POST / takes a request or a batch."""

    async def handle(request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            answer: object = _error(None, -32700, "Parse error")
        else:
            if body == []:  # JSON-RPC 2.0: an empty batch is one invalid request
                answer = _error(None, -32600, "Invalid request: an empty batch")
            elif isinstance(body, list):
                # A batch's calls in order, one answer each (the router's polls and sends).
                answer = [await dispatch(node, item) for item in body]
            else:
                answer = await dispatch(node, body)
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    # 4 MiB: a launch's snipers come as one batch of sends (1,000 signed swaps are about 1 MB of
    # JSON) so they arrive within the slot before the open; sent as 64 KiB batches one after the
    # other, only 343 of 1,000 made that slot (docs/benchmarks.md). Solana's RPC caps a body at
    # 50 KiB; its block compute limit would hold only ~400 such swaps anyway.
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post("/", handle)
    app.router.add_get("/health", health)
    return app


async def serve(node: ChainNode, host: str, port: int) -> web.AppRunner:
    """Start listening; the caller runs the node's slot loop and cleans the runner up."""
    runner = web.AppRunner(make_app(node), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
