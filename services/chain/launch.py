"""Token launches on the chain: a real SPL mint and the program's own pool, with an open time.

A launch is ordinary signed transactions from a launcher wallet, so the chain node lands,
persists and replays them like any swap (nothing is written behind the programs' backs):

1. the mint: `create_account` + SPL `InitializeMint2` (the launcher as mint and freeze
   authority), the launcher's token account, `MintTo` the whole supply, then `SetAuthority` to
   none for each authority the launch renounces;
2. the pool, either venue's program's own creation with the open time:
   - raydium: CPMM `initialize` with the launch's `open_time` (the program refuses swaps before
     it with 6000 NotApproved, mapped to `PoolNotOpenError` / `POOL_NOT_OPEN`), then, for
     `--lp burn`, SPL `Burn` of every LP token the launcher received;
   - meteora: DLMM `initialize_customizable_permissionless_lb_pair` activated by unix time
     (6042 before it, also `POOL_NOT_OPEN`), `initialize_bin_array`s, then per side a position
     and an `add_liquidity_by_weight`: the supply one-sided above the opening bin, the quote
     below. A DLMM pair has positions, not LP tokens, so it cannot be LP-burned.

`LaunchPlan.transactions` is the one list of transactions both `launch_over_rpc` (the node) and
`launch_on_vm` (tests, tools) send; the instructions are packed into as few as fit Solana's
1,232-byte limit (`pack_steps`), the builders being `services.chain.svm.vm`'s own.
"""

from __future__ import annotations

import asyncio
import base64
import struct
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from math import isqrt

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.models import TxOpts
from solders.compute_budget import set_compute_unit_limit
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import CreateAccountParams, create_account
from solders.sysvar import CLOCK
from solders.transaction import Transaction

from schemas.chain import ChainEvent, PoolCreated, TokenAuthorities, encode_chain
from schemas.events import LaunchTarget
from services.chain.genesis import wallet_keypair
from services.chain.landing import OpenSender, SubmissionKey
from services.chain.rpc_venues import RpcPoolSource, SnapshotVenue
from services.chain.solana_client import RPC_DOWN, unreachable
from services.chain.svm.constants import (
    ATA_PROGRAM_ID,
    MINT_RENT,
    SYSTEM_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
)
from services.chain.svm.vm import (
    DEFAULT_COMPUTE_UNITS,
    CpmmPoolKeys,
    DlmmDeposit,
    DlmmPoolKeys,
    SolanaVm,
    associated_token_address,
    cpmm_initialize_ix,
    dlmm_add_liquidity_by_weight_ix,
    dlmm_bin_array_address,
    dlmm_initialize_bin_array_ix,
    dlmm_initialize_position_ix,
    dlmm_launch_pair_ix,
    dlmm_launch_pair_keys,
    dlmm_position_keypair,
    plan_dlmm_deposit,
)
from services.common.kafka import durable_producer, ensure_topics, start_producer, topic_specs
from services.common.settings import Settings
from services.domain.launch import LaunchFacts, LaunchSpec, LaunchVenue
from services.domain.tokens import TOKENS, Token, register_launched
from services.pricing.accounts.cpmm import decode_pool_state
from services.pricing.accounts.dlmm import decode_lb_pair
from services.pricing.accounts.pools import decode_clock
from services.pricing.accounts.spl import MINT_LEN, decode_mint, decode_token_amount
from services.pricing.ports import PoolSnapshot, VenueAdapter
from services.venues.pool import Venue

CPMM_LOCKED_LP = 100  # LP base units the CPMM program keeps back from the first deposit
_INITIALIZE_MINT2, _MINT_TO, _SET_AUTHORITY, _BURN = 20, 7, 6, 8  # SPL Token instruction tags
_MINT_TOKENS, _FREEZE_ACCOUNT = 0, 1  # SPL AuthorityType
CONFIRM_POLL_SECONDS = 0.1
DLMM_LAUNCH_BIN_STEP = 100  # 1 % a bin: launch prices move fast
DLMM_LAUNCH_BINS = 69  # one position's worth of bins above the opening price
DLMM_LAUNCH_BASE_FACTOR = 10_000  # base fee = base factor x bin step x 1e-8: 1 % a swap
PACKET_DATA_SIZE = 1232  # Solana's limit on a serialized transaction, in bytes


class LaunchFailedError(RuntimeError):
    """A launch transaction did not land, or landed failed; `cause` says why if known."""


def initial_lp(amount0: int, amount1: int) -> int:
    """LP tokens the CPMM program mints to a pool's creator: sqrt(a0 x a1) less the lock."""
    return isqrt(amount0 * amount1) - CPMM_LOCKED_LP


def _token_ix(tag_and_args: bytes, metas: list[tuple[Pubkey, bool, bool]]) -> Instruction:
    return Instruction(TOKEN_PROGRAM_ID, tag_and_args, [AccountMeta(*m) for m in metas])


def create_ata_idempotent_ix(payer: Pubkey, owner: Pubkey, mint: Pubkey) -> Instruction:
    """The associated-token program's `CreateIdempotent`: a no-op when the account exists."""
    metas = [
        AccountMeta(payer, True, True),
        AccountMeta(associated_token_address(owner, mint), False, True),
        AccountMeta(owner, False, False),
        AccountMeta(mint, False, False),
        AccountMeta(SYSTEM_PROGRAM_ID, False, False),
        AccountMeta(TOKEN_PROGRAM_ID, False, False),
    ]
    return Instruction(ATA_PROGRAM_ID, bytes([1]), metas)


@dataclass(frozen=True, slots=True)
class LaunchPlan:
    """The accounts and instructions of one launch, derived before anything is sent."""

    spec: LaunchSpec
    launcher: Pubkey
    mint: Keypair
    quote_mint: Pubkey
    open_time: int

    @property
    def cpmm(self) -> CpmmPoolKeys:
        return CpmmPoolKeys.derive(self.mint.pubkey(), self.quote_mint)

    def mint_instructions(self) -> list[Instruction]:
        """Create the mint, mint the supply to the launcher, renounce what the launch asks."""
        spec, mint, me = self.spec, self.mint.pubkey(), self.launcher
        params = CreateAccountParams(
            from_pubkey=me,
            to_pubkey=mint,
            lamports=MINT_RENT,
            space=MINT_LEN,
            owner=TOKEN_PROGRAM_ID,
        )
        init = (
            struct.pack("<BB", _INITIALIZE_MINT2, spec.decimals) + bytes(me) + b"\x01" + bytes(me)
        )
        ixs = [
            create_account(params),
            _token_ix(init, [(mint, False, True)]),
            create_ata_idempotent_ix(me, me, mint),
            _token_ix(
                struct.pack("<BQ", _MINT_TO, spec.supply_units),
                [
                    (mint, False, True),
                    (associated_token_address(me, mint), False, True),
                    (me, True, False),
                ],
            ),
        ]
        for renounce, kind in (
            (spec.renounce_mint_authority, _MINT_TOKENS),
            (spec.renounce_freeze_authority, _FREEZE_ACCOUNT),
        ):
            if renounce:
                data = struct.pack("<BBB", _SET_AUTHORITY, kind, 0)  # new authority: none
                ixs.append(_token_ix(data, [(mint, False, True), (me, True, False)]))
        return ixs

    def cpmm_instructions(self) -> list[Instruction]:
        """`initialize` with the open time, then burn the creator's LP tokens if asked."""
        keys, me, mint = self.cpmm, self.launcher, self.mint.pubkey()
        amounts = {mint: self.spec.supply_units, self.quote_mint: self.spec.quote_units}
        amount0, amount1 = amounts[keys.mint0], amounts[keys.mint1]
        ixs = [
            cpmm_initialize_ix(
                me,
                keys,
                amount0,
                amount1,
                self.open_time,
                associated_token_address(me, keys.mint0),
                associated_token_address(me, keys.mint1),
            )
        ]
        if self.spec.burn_lp:
            lp_account = associated_token_address(me, keys.lp_mint)
            data = struct.pack("<BQ", _BURN, initial_lp(amount0, amount1))
            ixs.append(
                _token_ix(
                    data,
                    [(lp_account, False, True), (keys.lp_mint, False, True), (me, True, False)],
                )
            )
        return ixs

    @property
    def dlmm_active_id(self) -> int:
        """The launch pair's opening bin: price (quote per token, in base units) = liquidity /
        supply, on the launch bin step."""
        price = Decimal(self.spec.quote_units) / Decimal(self.spec.supply_units)
        step = Decimal(1) + Decimal(DLMM_LAUNCH_BIN_STEP) / Decimal(10_000)
        return int((price.ln() / step.ln()).to_integral_value())

    def dlmm_deposits(self) -> list[DlmmDeposit]:
        """The whole supply one-sided in the bins above the opening one, the quote liquidity
        one-sided below it: before activation a launch pair takes only one-sided deposits, so
        buyers walk the price up through the token's bins."""
        active = self.dlmm_active_id
        above = shape_weights_side(active + 1, DLMM_LAUNCH_BINS)
        below = shape_weights_side(active - DLMM_LAUNCH_BINS, DLMM_LAUNCH_BINS)
        step = DLMM_LAUNCH_BIN_STEP
        return [
            *plan_dlmm_deposit(above, active, step, self.spec.supply_units, 0),
            *plan_dlmm_deposit(below, active, step, 0, self.spec.quote_units),
        ]

    @property
    def dlmm(self) -> DlmmPoolKeys:
        """The launch pair (x the new token, y the quote) with the bin arrays its deposits name."""
        keys = dlmm_launch_pair_keys(self.mint.pubkey(), self.quote_mint)
        indices = sorted({i for d in self.dlmm_deposits() for i in d.bin_arrays})
        arrays = tuple((i, dlmm_bin_array_address(keys.lb_pair, i)) for i in indices)
        return replace(keys, bin_arrays=arrays)

    def dlmm_steps(self) -> list[Step]:
        """The pair with its activation time, its bin arrays, then per position its account and
        its deposit: the program's own instructions, in the order they must land."""
        keys, me = self.dlmm, self.launcher
        steps = [
            Step(
                dlmm_launch_pair_ix(
                    me,
                    keys,
                    active_id=self.dlmm_active_id,
                    bin_step=DLMM_LAUNCH_BIN_STEP,
                    base_factor=DLMM_LAUNCH_BASE_FACTOR,
                    open_time=self.open_time,
                )
            ),
            *(Step(dlmm_initialize_bin_array_ix(keys.lb_pair, i, me)) for i, _ in keys.bin_arrays),
        ]
        for deposit in self.dlmm_deposits():
            position = dlmm_position_keypair(me, keys.lb_pair, deposit.first)
            steps += [
                Step(
                    dlmm_initialize_position_ix(
                        me, position.pubkey(), keys.lb_pair, deposit.first, deposit.width
                    ),
                    (position,),
                ),
                Step(
                    dlmm_add_liquidity_by_weight_ix(
                        me,
                        position.pubkey(),
                        keys,
                        deposit.weights,
                        deposit.amount_x,
                        deposit.amount_y,
                        self.dlmm_active_id,
                    )
                ),
            ]
        return steps

    def transactions(self) -> list[Batch]:
        """Every instruction of the launch, packed into as few transactions as fit.

        The mint goes first on its own (the pool names its accounts); a DLMM launch's pair,
        bin arrays and positions then share transactions up to Solana's 1,232-byte limit,
        each with the compute budget of the heaviest (a 69-bin deposit)."""
        first = Batch(tuple(self.mint_instructions()), (self.mint,))
        if self.spec.venue is LaunchVenue.RAYDIUM:
            return [first, Batch(tuple(self.cpmm_instructions()), ())]
        return [first, *pack_steps(self.dlmm_steps(), self.launcher)]

    def fact_accounts(self) -> list[Pubkey]:
        """The accounts the rug checks read once the launch landed, in `launched`'s order."""
        if self.spec.venue is LaunchVenue.RAYDIUM:
            keys = self.cpmm
            quote_vault = keys.vault0 if keys.mint0 == self.quote_mint else keys.vault1
            return [self.mint.pubkey(), keys.pool, keys.lp_mint, quote_vault]
        pair = self.dlmm
        return [self.mint.pubkey(), pair.lb_pair, pair.reserve_y]

    def launched(self, accounts: list[bytes], signatures: tuple[str, ...]) -> Launched:
        """The landed launch, from the raw `fact_accounts` and its transactions' signatures."""
        spec = self.spec
        if spec.venue is LaunchVenue.RAYDIUM:
            mint, pool_state, lp_mint, quote_vault = accounts
            facts = cpmm_launch_facts(mint, pool_state, lp_mint, quote_vault, spec.quote)
            pool, lp = self.cpmm.pool, str(self.cpmm.lp_mint)
        else:
            mint, lb_pair, quote_reserve = accounts
            facts = dlmm_launch_facts(mint, lb_pair, quote_reserve, spec.quote)
            pool, lp = self.dlmm.lb_pair, None
        return Launched(
            symbol=spec.symbol,
            decimals=spec.decimals,
            mint=str(self.mint.pubkey()),
            quote=spec.quote,
            venue=spec.venue,
            pool=str(pool),
            lp_mint=lp,
            open_time=facts.open_time,
            token_amount=spec.supply_units,
            quote_amount=spec.quote_units,
            facts=facts,
            signatures=signatures,
        )


@dataclass(frozen=True, slots=True)
class Step:
    """One instruction of a launch and the keys besides the launcher's that must sign it."""

    instruction: Instruction
    signers: tuple[Keypair, ...] = ()


@dataclass(frozen=True, slots=True)
class Batch:
    """The instructions of one launch transaction and its signers besides the launcher."""

    instructions: tuple[Instruction, ...]
    signers: tuple[Keypair, ...]

    def sign(self, launcher: Keypair, blockhash: Hash) -> Transaction:
        message = Message.new_with_blockhash(list(self.instructions), launcher.pubkey(), blockhash)
        return Transaction([launcher, *self.signers], message, blockhash)


def pack_steps(steps: list[Step], payer: Pubkey) -> list[Batch]:
    """Consecutive steps packed greedily into transactions of at most `PACKET_DATA_SIZE`
    bytes, each led by a compute-budget instruction; the order of the steps is kept."""
    budget = set_compute_unit_limit(DEFAULT_COMPUTE_UNITS)
    batches: list[Batch] = []
    current: list[Step] = []

    def batch(of: list[Step]) -> Batch:
        signers = tuple(dict.fromkeys(k for s in of for k in s.signers))
        return Batch((budget, *(s.instruction for s in of)), signers)

    for step in steps:
        if current and _size(batch([*current, step]), payer) > PACKET_DATA_SIZE:
            batches.append(batch(current))
            current = []
        if _size(batch([step]), payer) > PACKET_DATA_SIZE:
            msg = "a launch instruction does not fit in one transaction"
            raise ValueError(msg)
        current.append(step)
    if current:
        batches.append(batch(current))
    return batches


def _size(batch: Batch, payer: Pubkey) -> int:
    """The serialized size, signatures included (unsigned ones take the same 64 bytes)."""
    message = Message.new_with_blockhash(list(batch.instructions), payer, Hash.default())
    return len(bytes(Transaction.new_unsigned(message)))


def plan_launch(
    spec: LaunchSpec, launcher: Pubkey, now: int, *, mint: Keypair | None = None
) -> LaunchPlan:
    """The plan of a launch opening `spec.open_in_seconds` after the chain's time `now`."""
    return LaunchPlan(
        spec=spec,
        launcher=launcher,
        mint=mint or Keypair(),
        quote_mint=Pubkey.from_string(TOKENS[spec.quote].mint),
        open_time=now + spec.open_in_seconds,
    )


@dataclass(frozen=True, slots=True)
class Launched:
    """A launch that landed: what `PoolCreated` and the token's authorities report."""

    symbol: str
    decimals: int
    mint: str
    quote: str
    venue: LaunchVenue
    pool: str
    lp_mint: str | None  # None for a DLMM pair (positions, no LP token)
    open_time: int
    token_amount: int  # base units of the new token deposited
    quote_amount: int  # base units of the quote token deposited
    facts: LaunchFacts
    signatures: tuple[str, ...]


def cpmm_launch_facts(
    mint: bytes, pool_state: bytes, lp_mint: bytes, quote_vault: bytes, quote: str
) -> LaunchFacts:
    """What the rug checks read of a CPMM launch, from the raw accounts."""
    token = decode_mint(mint)
    pool = decode_pool_state(pool_state)
    return LaunchFacts(
        mint_authority=None if token.mint_authority is None else str(token.mint_authority),
        freeze_authority=None if token.freeze_authority is None else str(token.freeze_authority),
        lp_supply=decode_mint(lp_mint).supply,
        quote_liquidity=Decimal(decode_token_amount(quote_vault)).scaleb(-TOKENS[quote].decimals),
        open_time=pool.open_time,
    )


def dlmm_launch_facts(mint: bytes, lb_pair: bytes, quote_reserve: bytes, quote: str) -> LaunchFacts:
    """What the rug checks read of a DLMM launch pair: no LP token, so `lp_supply` is None."""
    token = decode_mint(mint)
    pair = decode_lb_pair(lb_pair)
    return LaunchFacts(
        mint_authority=None if token.mint_authority is None else str(token.mint_authority),
        freeze_authority=None if token.freeze_authority is None else str(token.freeze_authority),
        lp_supply=None,
        quote_liquidity=Decimal(decode_token_amount(quote_reserve)).scaleb(-TOKENS[quote].decimals),
        open_time=pair.activation_point,
    )


def launch_on_vm(
    vm: SolanaVm, launcher: Keypair, spec: LaunchSpec, *, mint: Keypair | None = None
) -> Launched:
    """Launch on an in-process VM (tests, tools): the same transactions the node would land."""
    plan = plan_launch(spec, launcher.pubkey(), vm.now, mint=mint)
    signatures = []
    for batch in plan.transactions():
        signatures.append(vm.submit(batch.sign(launcher, vm.latest_blockhash())).signature)
    wanted = plan.fact_accounts()
    return plan.launched([vm.account_data(key) for key in wanted], tuple(signatures))


def shape_weights_side(first: int, count: int) -> dict[int, int]:
    """Equal weights over `count` bins from `first` up (a flat, spot-shaped side)."""
    return dict.fromkeys(range(first, first + count), 1)


async def chain_time(client: AsyncClient) -> int:
    """The chain's unix time, from its Clock sysvar (the open time is on the chain's clock)."""
    info = (await client.get_account_info(CLOCK, Confirmed)).value
    if info is None:
        msg = "the chain has no Clock sysvar"
        raise LaunchFailedError(msg)
    return decode_clock(bytes(info.data)).unix_timestamp


async def _send_and_confirm(client: AsyncClient, tx: Transaction, timeout: float) -> str:
    signature: Signature = tx.signatures[0]
    await client.send_raw_transaction(bytes(tx), TxOpts(skip_preflight=False))
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        status = (await client.get_signature_statuses([signature])).value[0]
        if status is not None:
            if status.err is not None:
                msg = f"launch transaction {signature} failed: {status.err}"
                raise LaunchFailedError(msg)
            return str(signature)
        await asyncio.sleep(CONFIRM_POLL_SECONDS)
    msg = f"launch transaction {signature} not confirmed within {timeout} s"
    raise LaunchFailedError(msg)


async def launch_over_rpc(
    client: AsyncClient, launcher: Keypair, spec: LaunchSpec, *, timeout: float = 30.0
) -> Launched:
    """Launch on a running chain over JSON-RPC (`oee market launch`, the admin API route)."""
    plan = plan_launch(spec, launcher.pubkey(), await chain_time(client))
    signatures = []
    for batch in plan.transactions():
        blockhash: Hash = (await client.get_latest_blockhash(Confirmed)).value.blockhash
        signatures.append(await _send_and_confirm(client, batch.sign(launcher, blockhash), timeout))
    found = (await client.get_multiple_accounts(plan.fact_accounts(), Confirmed)).value
    if any(a is None for a in found):
        msg = "the launched accounts are not all on the chain"
        raise LaunchFailedError(msg)
    return plan.launched([bytes(a.data) for a in found if a is not None], tuple(signatures))


def launch_events(launched: Launched, slot: int, at: datetime) -> tuple[ChainEvent, ...]:
    """The chain events a landed launch publishes: the token's authorities, then its pool."""
    facts = launched.facts
    quote = TOKENS[launched.quote]
    return (
        TokenAuthorities(
            symbol=launched.symbol,
            mint=launched.mint,
            decimals=launched.decimals,
            supply=launched.token_amount,
            mint_authority=facts.mint_authority,
            freeze_authority=facts.freeze_authority,
            slot=slot,
            at=at,
        ),
        PoolCreated(
            symbol=launched.symbol,
            quote=launched.quote,
            venue="RAYDIUM" if launched.venue is LaunchVenue.RAYDIUM else "METEORA",
            pool=launched.pool,
            mint=launched.mint,
            quote_mint=quote.mint,
            decimals=launched.decimals,
            open_time=launched.open_time,
            token_amount=Decimal(launched.token_amount).scaleb(-launched.decimals),
            quote_liquidity=facts.quote_liquidity,
            lp_mint=launched.lp_mint,
            lp_supply=facts.lp_supply,
            slot=slot,
            at=at,
            signatures=launched.signatures,
        ),
    )


async def launch_and_publish(settings: Settings, spec: LaunchSpec) -> Launched:
    """Launch on the configured chain with the launcher wallet, then publish its events
    (acks=all) on `chain.events`: the launch is on the chain before anyone hears of it."""
    launcher = wallet_keypair(settings.chain_seed, settings.launcher_wallet)
    client = AsyncClient(settings.solana_rpc_url, commitment=Confirmed, timeout=10.0)
    try:
        launched = await launch_over_rpc(client, launcher, spec)
        slot = (await client.get_slot(Confirmed)).value
    except RPC_DOWN as exc:
        raise unreachable(exc) from None
    finally:
        await client.close()
    servers = settings.kafka_servers
    await ensure_topics(servers, topic_specs(settings))
    producer = durable_producer(servers, client_id="oee-launcher")
    await start_producer(producer, servers)
    try:
        for event in launch_events(launched, slot, datetime.now(UTC)):
            await producer.send_and_wait(
                settings.chain_events_topic, value=encode_chain(event), key=spec.symbol.encode()
            )
    finally:
        await producer.stop()
    return launched


class LaunchGate:
    """The router's side of a snipe: make the launched token and its pool known, and wait for
    the pool to open on the chain's clock.

    `prepare` registers the token in this process (so pricing, the pool listing and signing
    know its mint and decimals), creates the engine wallet's token account for it (a swap
    cannot create the account it pays into) and lists the pools again; `send_at_open` sends
    the signed buys for the first block whose clock reaches the open time, in submission
    order. Both are idempotent: a router taking an order over repeats them.
    """

    def __init__(self, pools: RpcPoolSource, wallet: Keypair) -> None:
        self._pools = pools
        self._wallet = wallet
        self._preparing: dict[str, asyncio.Task[None]] = {}  # pool -> its one preparation
        # One sender per launch, however many snipers wait on it: 1,000 snipers polling the
        # clock each would be 20,000 calls a second on the node.
        self._sender = OpenSender(pools.call, on_open=pools.expire_snapshot)
        self._at_open: dict[str, asyncio.Future[PoolSnapshot]] = {}  # pool -> its one read

    async def prepare(self, target: LaunchTarget) -> None:
        register_launched(Token(target.symbol, target.decimals, target.mint))
        # Once per pool for all its snipers (the first one's task; a failed one is retried).
        task = self._preparing.get(target.pool)
        if task is None or (task.done() and task.exception() is not None):
            task = asyncio.ensure_future(self._prepare(target))
            self._preparing[target.pool] = task
        await asyncio.shield(task)

    async def _prepare(self, target: LaunchTarget) -> None:
        await self._ensure_token_account(Pubkey.from_string(target.mint))
        await self._pools.discover()

    async def venues_at_open(self, target: LaunchTarget) -> list[VenueAdapter] | None:
        """Adapters over the pools as they will be at the open (the launched one included);
        None once the pool is open (then it trades, and the live pools are the ones to quote).

        One read per launch for all its snipers: until the open nobody can trade the new pool,
        so its reserves are those of its creation (the first short bench run had 100 snipers
        each reading every pool account at once, which slowed the node for everyone)."""
        if self._sender.opened(target.pool) or await self.chain_time() >= target.open_time:
            return None
        task = self._at_open.get(target.pool)
        if task is None or (task.done() and task.exception() is not None):
            task = asyncio.ensure_future(self._pools.snapshot_as_of(target.open_time))
            self._at_open[target.pool] = task
        snapshot = await asyncio.shield(task)
        return [SnapshotVenue(venue, snapshot) for venue in Venue]

    async def chain_time(self) -> int:
        (found,) = await self._pools.call(
            [("getAccountInfo", [str(CLOCK), {"encoding": "base64"}])]
        )
        return decode_clock(base64.b64decode(found["value"]["data"][0])).unix_timestamp

    async def wait_signable(self, target: LaunchTarget) -> None:
        """Return once a buy signed now is still valid (its blockhash) in the first open block."""
        await self._sender.wait_signable(target.pool, target.open_time)

    async def send_at_open(self, target: LaunchTarget, key: SubmissionKey, wire: bytes) -> None:
        """Send the signed buy for the first block the pool is open in, in submission order
        with this router's other snipers of the launch (`services.chain.landing`)."""
        await self._sender.send_at_open(target.pool, target.open_time, key, wire)

    async def _ensure_token_account(self, mint: Pubkey) -> None:
        owner = self._wallet.pubkey()
        (found,) = await self._pools.call(
            [
                (
                    "getAccountInfo",
                    [str(associated_token_address(owner, mint)), {"encoding": "base64"}],
                )
            ]
        )
        if found["value"] is not None:
            return
        (latest,) = await self._pools.call([("getLatestBlockhash", [])])
        blockhash = Hash.from_string(latest["value"]["blockhash"])
        ix = create_ata_idempotent_ix(owner, owner, mint)
        tx = Transaction(
            [self._wallet], Message.new_with_blockhash([ix], owner, blockhash), blockhash
        )
        encoded = base64.b64encode(bytes(tx)).decode()
        await self._pools.call([("sendTransaction", [encoded, {"encoding": "base64"}])])
        signature = str(tx.signatures[0])
        for _ in range(int(30 / CONFIRM_POLL_SECONDS)):
            (statuses,) = await self._pools.call([("getSignatureStatuses", [[signature]])])
            status = statuses["value"][0]
            if status is not None:
                if status.get("err") is not None:
                    msg = f"creating the token account for {mint} failed: {status['err']}"
                    raise LaunchFailedError(msg)
                return
            await asyncio.sleep(CONFIRM_POLL_SECONDS)
        msg = f"the token account for {mint} was not created within 30 s"
        raise LaunchFailedError(msg)
