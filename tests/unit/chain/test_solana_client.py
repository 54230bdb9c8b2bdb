"""The Solana chain client against a scripted RPC: building, min-outs, re-sending, expiry, errors.

The RPC is a fake that records every send and answers statuses from a script, so the rules
(same bytes until landed or provably expired; fills from token balances; program errors as
failure codes; a dry run never sends) are checked without a node.
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from solders.compute_budget import ID as COMPUTE_BUDGET
from solders.compute_budget import set_compute_unit_price
from solders.hash import Hash
from solders.signature import Signature
from solders.transaction import Transaction as SolTransaction
from solders.transaction import VersionedTransaction
from solders.transaction_status import (
    InstructionErrorCustom,
    TransactionErrorInstructionError,
    TransactionErrorType,
)

from schemas import events
from schemas.events import OrderStatus
from services.chain.client import RetryableLandedFailure, UnsignableTransaction
from services.chain.genesis import wallet_keypair
from services.chain.node import compute_unit_price
from services.chain.solana_client import (
    MEMO_PROGRAM_ID,
    BlockhashExpired,
    Landed,
    Simulated,
    SolanaChain,
    Status,
    TokenBalance,
    describe,
    failure_code,
    guarded_legs,
    transaction_error,
)
from services.chain.svm.constants import CPMM_PROGRAM_ID, DLMM_PROGRAM_ID
from services.chain.svm.errors import map_error
from services.chain.transactions import SwapInstruction, Transaction
from services.domain.order import OrderState
from services.domain.tokens import TOKENS
from services.pricing.ports import ChainUnreachable, VenueAdapter
from services.router.execution import OrderExecution, next_step, transaction_for
from services.venues.pool import Venue
from tests.unit.router.test_execution import POLICY, Log, submitted, venues

WALLET = wallet_keypair(3, 0)
OWNER = str(WALLET.pubkey())
BLOCKHASH = Hash.new_unique()


def leg(
    token_in: str, token_out: str, amount_in: int, amount_out: int, hop: int = 0
) -> SwapInstruction:
    return SwapInstruction(Venue.RAYDIUM, token_in, token_out, amount_in, hop, amount_out, 25)


def tx(*legs: SwapInstruction, min_out: int, token_out: str = "USDC") -> Transaction:
    return Transaction(
        signature="",
        order_id=uuid.uuid4(),
        token_in=legs[0].token_in,
        token_out=token_out,
        amount_in=sum(i.amount_in for i in legs if i.hop == 0),
        min_amount_out=min_out,
        instructions=legs,
    )


def balances(sol: int, usdc: int) -> list[TokenBalance]:
    return [
        TokenBalance(TOKENS["SOL"].mint, OWNER, sol),
        TokenBalance(TOKENS["USDC"].mint, OWNER, usdc),
        TokenBalance(TOKENS["USDC"].mint, "someone else", 10**12),
    ]


@dataclass
class FakeRpc:
    """Statuses appear after `lands_after` sends; the blockhash dies after `valid_checks`."""

    lands_after: int | None = 1
    valid_checks: int | None = None
    err: TransactionErrorType | None = None
    logs: list[str] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)
    simulated: list[bytes] = field(default_factory=list)
    checks: int = 0
    landed_late: bool = False  # lands, unseen, just before the blockhash dies

    async def latest_blockhash(self) -> tuple[Hash, int]:
        return BLOCKHASH, 1150

    async def send(self, wire: bytes) -> None:
        self.sent.append(wire)

    def _landed(self) -> bool:
        if self.landed_late and self.valid_checks is not None:
            return self.checks > self.valid_checks
        return self.lands_after is not None and len(self.sent) >= self.lands_after

    async def status(self, signature: Signature) -> Status | None:
        return Status(1001, self.err) if self._landed() else None

    async def statuses(self, signatures: Sequence[Signature]) -> list[Status | None]:
        return [await self.status(signature) for signature in signatures]

    async def blockhash_valid(self, blockhash: Hash) -> bool:
        assert blockhash == BLOCKHASH
        self.checks += 1
        return self.valid_checks is None or self.checks <= self.valid_checks

    async def transaction(self, signature: Signature) -> Landed | None:
        if not self._landed():
            return None
        if self.err is not None:
            return Landed(1001, self.err, self.logs, None, None)
        return Landed(1001, None, self.logs, balances(10**10, 0), balances(9 * 10**9, 151_000_000))

    async def transactions(self, signatures: Sequence[Signature]) -> list[Landed | None]:
        return [await self.transaction(signature) for signature in signatures]

    async def simulate(self, wire: bytes) -> Simulated:
        self.simulated.append(wire)
        return Simulated(self.err, self.logs, 41_000)


def raydium() -> list[VenueAdapter]:
    """The venues the local chain has today: Raydium's CPMM pools."""
    return [v for v in venues() if v.venue is Venue.RAYDIUM]


def client(rpc: FakeRpc, *, dry_run: bool = False) -> SolanaChain:
    return SolanaChain(rpc, WALLET, dry_run=dry_run, poll_seconds=0, resend_seconds=0)


def swaps(signed: SolTransaction) -> list[tuple[int, int]]:
    """(amount_in, min_out) of each swap instruction, between the compute-budget one and the
    order's memo."""
    message = signed.message
    programs = [message.account_keys[ix.program_id_index] for ix in message.instructions]
    assert programs[0] == COMPUTE_BUDGET
    assert programs[-1] == MEMO_PROGRAM_ID
    assert all(p == CPMM_PROGRAM_ID for p in programs[1:-1])
    return [struct.unpack_from("<QQ", bytes(ix.data), 8) for ix in message.instructions[1:-1]]


# --- min-outs and building ------------------------------------------------------------------


def test_split_legs_share_the_orders_min_out_by_quote_rounded_up() -> None:
    split = tx(leg("SOL", "USDC", 6, 600), leg("SOL", "USDC", 4, 401), min_out=951)
    guards = [guard for _, guard in guarded_legs(split)]
    assert [g.min_out for g in guards] == [571, 381]  # ceil(600 * 951 / 1001), ceil(401 * ...)
    assert [g.amount_in for g in guards] == [6, 4]


def test_a_second_hop_spends_the_first_hops_minimum() -> None:
    # 1 % slippage: each hop keeps sqrt(0.99) of its quote; the second hop spends the first
    # hop's minimum, and the last hop still owes the order's whole min-out.
    two_hop = tx(
        leg("USDC", "JUP", 150_000_000, 166_000_000, hop=1),  # listed first, runs second
        leg("SOL", "USDC", 10**9, 150_000_000),
        min_out=164_340_000,
        token_out="JUP",
    )
    guarded = guarded_legs(two_hop)
    assert [leg.hop for leg, _ in guarded] == [0, 1]
    assert [(g.amount_in, g.min_out) for _, g in guarded] == [
        (10**9, 149_248_115),  # floor(150_000_000 x sqrt(0.99))
        (149_248_115, 164_340_000),
    ]


def test_a_route_whose_last_hop_quotes_nothing_is_unsignable() -> None:
    nothing = tx(leg("SOL", "USDC", 10**9, 0), min_out=0)
    with pytest.raises(UnsignableTransaction, match="no quoted output"):
        guarded_legs(nothing)


def test_the_built_transaction_has_compute_budget_then_hops_in_order() -> None:
    chain = client(FakeRpc())
    two_hop = tx(
        leg("USDC", "JUP", 150_000_000, 166_000_000, hop=1),  # listed first, runs second
        leg("SOL", "USDC", 10**9, 150_000_000),
        min_out=164_340_000,
        token_out="JUP",
    )
    signed = chain.build(two_hop, BLOCKHASH)
    assert signed.message.recent_blockhash == BLOCKHASH
    assert signed.message.account_keys[0] == WALLET.pubkey()
    assert signed.verify_with_results() == [True]
    assert swaps(signed) == [(10**9, 149_248_115), (149_248_115, 164_340_000)]
    assert compute_unit_price(VersionedTransaction.from_bytes(bytes(signed))) == 0  # no fee


def test_a_priced_transaction_sets_its_compute_unit_price_after_the_limit() -> None:
    """A sniper's priority fee is a second compute-budget instruction, read back by the node."""
    chain = client(FakeRpc())
    priced = dataclasses.replace(
        tx(leg("SOL", "USDC", 10**9, 151_000_000), min_out=149_490_000),
        compute_unit_price=101_000,
    )
    signed = chain.build(priced, BLOCKHASH)
    message = signed.message
    programs = [message.account_keys[ix.program_id_index] for ix in message.instructions]
    assert programs == [COMPUTE_BUDGET, COMPUTE_BUDGET, CPMM_PROGRAM_ID, MEMO_PROGRAM_ID]
    assert bytes(message.instructions[1].data) == bytes(set_compute_unit_price(101_000).data)
    assert compute_unit_price(VersionedTransaction.from_bytes(bytes(signed))) == 101_000


# --- sending and confirming -----------------------------------------------------------------


async def signed_tx(chain: SolanaChain) -> Transaction:
    one = tx(leg("SOL", "USDC", 10**9, 151_000_000), min_out=149_490_000)
    signed = await chain.sign(one)
    assert signed.wire is not None
    assert signed.blockhash == str(BLOCKHASH)
    assert signed.last_valid_block_height == 1150
    assert signed.signature == str(SolTransaction.from_bytes(signed.wire).signatures[0])
    return signed


@dataclass
class SlowBlockhashRpc(FakeRpc):
    """Answers `getLatestBlockhash` a moment later, counting the questions."""

    asked: int = 0
    down: ChainUnreachable | None = None

    async def latest_blockhash(self) -> tuple[Hash, int]:
        self.asked += 1
        await asyncio.sleep(0.01)
        if self.down is not None:
            raise self.down
        return BLOCKHASH, 1150


async def test_orders_signing_together_ask_for_the_blockhash_once() -> None:
    rpc = SlowBlockhashRpc()
    chain = client(rpc)

    signed = await asyncio.gather(*(signed_tx(chain) for _ in range(20)))

    assert rpc.asked == 1
    assert {s.blockhash for s in signed} == {str(BLOCKHASH)}


async def test_a_failed_blockhash_question_is_asked_again_by_the_next_order() -> None:
    down = ChainUnreachable("node restarting")
    rpc = SlowBlockhashRpc(down=down)
    chain = client(rpc)

    results = await asyncio.gather(*(signed_tx(chain) for _ in range(3)), return_exceptions=True)

    assert results == [down, down, down]
    assert rpc.asked == 1
    rpc.down = None  # the node is back

    await signed_tx(chain)

    assert rpc.asked == 2


async def test_the_same_bytes_are_resent_until_they_land_then_the_fill_is_read() -> None:
    rpc = FakeRpc(lands_after=3)
    chain = client(rpc)
    signed = await signed_tx(chain)

    receipt = await chain.send_and_confirm(signed, 1)

    assert rpc.sent == [signed.wire] * 3
    assert receipt.status == "confirmed"
    assert receipt.signature == signed.signature
    assert (receipt.amount_in, receipt.amount_out) == (10**9, 151_000_000)
    assert receipt.fee == 25
    assert receipt.venues == ("RAYDIUM",)
    assert await chain.receipt(signed) == receipt


async def test_an_expired_blockhash_with_no_status_is_provably_dead() -> None:
    rpc = FakeRpc(lands_after=None, valid_checks=2)
    chain = client(rpc)
    signed = await signed_tx(chain)

    with pytest.raises(BlockhashExpired, match="expired"):
        await chain.send_and_confirm(signed, 1)

    assert rpc.sent == [signed.wire] * 2  # never re-sent once the hash was dead
    assert await chain.receipt(signed) is None


async def test_a_landing_seen_only_after_expiry_is_still_the_receipt() -> None:
    rpc = FakeRpc(lands_after=None, valid_checks=2, landed_late=True)
    chain = client(rpc)
    signed = await signed_tx(chain)

    receipt = await chain.send_and_confirm(signed, 1)

    assert receipt.status == "confirmed"
    assert len(rpc.sent) == 2


@pytest.mark.parametrize(
    ("code", "logs", "expected"),
    [
        (6005, [], "SLIPPAGE_EXCEEDED"),
        (6000, [], "POOL_NOT_OPEN"),
        (1, ["Program log: Error: insufficient funds"], "INSUFFICIENT_FUNDS"),
        (6999, [], "INVALID_TRANSACTION"),
    ],
)
async def test_program_errors_map_to_failure_codes(
    code: int, logs: list[str], expected: str
) -> None:
    err = TransactionErrorInstructionError(1, InstructionErrorCustom(code))
    rpc = FakeRpc(err=err, logs=logs)
    chain = client(rpc)

    receipt = await chain.send_and_confirm(await signed_tx(chain), 1)

    assert receipt.status == "failed"
    assert receipt.error_code == expected
    assert events.FailureCode(expected)  # every mapped code is one the events know
    assert receipt.amount_out == 0


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (6003, "SLIPPAGE_EXCEEDED"),
        (6036, "INSUFFICIENT_LIQUIDITY"),  # BitmapExtensionAccountIsNotProvided
        (6037, "INSUFFICIENT_LIQUIDITY"),  # CannotFindNonZeroLiquidityBinArrayId
        (6042, "POOL_NOT_OPEN"),
        (6035, "INVALID_TRANSACTION"),
    ],
)
def test_dlmm_errors_map_to_failure_codes(code: int, expected: str) -> None:
    err = TransactionErrorInstructionError(1, InstructionErrorCustom(code))

    error = map_error(err, [COMPUTE_BUDGET, DLMM_PROGRAM_ID, MEMO_PROGRAM_ID], [])

    assert failure_code(error) == expected
    assert events.FailureCode(expected)


def test_a_dlmm_swap_past_the_seeded_bins_says_it_ran_out_of_liquidity() -> None:
    err = TransactionErrorInstructionError(1, InstructionErrorCustom(6036))

    error = map_error(err, [COMPUTE_BUDGET, DLMM_PROGRAM_ID, MEMO_PROGRAM_ID], [])

    assert describe(error).startswith("the pool has no liquidity left at this price")


def test_the_same_code_from_cpmm_is_not_a_dlmm_liquidity_error() -> None:
    err = TransactionErrorInstructionError(1, InstructionErrorCustom(6036))

    error = map_error(err, [COMPUTE_BUDGET, CPMM_PROGRAM_ID, MEMO_PROGRAM_ID], [])

    assert failure_code(error) == "INVALID_TRANSACTION"


async def test_a_dry_run_simulates_and_never_sends() -> None:
    rpc = FakeRpc()
    chain = client(rpc, dry_run=True)
    signed = await signed_tx(chain)

    receipt = await chain.send_and_confirm(signed, 1)

    assert rpc.sent == []
    assert rpc.simulated == [signed.wire]
    assert receipt.status == "failed"
    assert receipt.error_code == "DRY_RUN"
    assert receipt.error is not None
    assert "41000 compute units and was not sent" in receipt.error


async def test_a_dry_run_reports_the_error_the_simulation_hit() -> None:
    err = TransactionErrorInstructionError(1, InstructionErrorCustom(6005))
    rpc = FakeRpc(err=err)
    receipt = await client(rpc, dry_run=True).send_and_confirm(
        await signed_tx(client(rpc, dry_run=True)), 1
    )
    assert receipt.error_code == "SLIPPAGE_EXCEEDED"
    assert receipt.error is not None
    assert receipt.error.startswith("dry run, not sent: ")
    assert rpc.sent == []


# --- through the router's execution ---------------------------------------------------------


async def test_the_submission_records_the_signed_bytes_and_a_takeover_resends_them() -> None:
    log = Log()
    state, _ = submitted(log)
    rpc = FakeRpc(lands_after=None)  # the first router "crashes": nothing lands for it
    chain = client(rpc)
    execution = OrderExecution(POLICY, raydium(), chain, log.emit)
    # Route, build and submit (record) the transaction, as the first router did.
    while state.status is not OrderStatus.SUBMITTED:
        state = await execution._do(next_step(state), state)
    assert state.status is OrderStatus.SUBMITTED
    sent = log.payloads[-1]
    assert isinstance(sent, events.TransactionSubmitted)
    assert sent.transaction is not None
    assert sent.blockhash == str(BLOCKHASH)
    assert sent.last_valid_block_height == 1150

    # A second router folds the same log and confirms: the recorded bytes, not new ones.
    rpc2 = FakeRpc(lands_after=1)
    final = await OrderExecution(POLICY, raydium(), client(rpc2), log.emit).run(state)

    recorded = transaction_for(state)
    assert rpc2.sent == [recorded.wire]
    assert final.status is OrderStatus.COMPLETED
    assert final.tx_hash == sent.tx_hash


async def test_an_expired_attempt_is_rebuilt_as_a_new_attempt_with_new_bytes() -> None:
    log = Log()
    state, _ = submitted(log)
    rpc = FakeRpc(lands_after=None, valid_checks=1)
    execution = OrderExecution(POLICY, raydium(), client(rpc), log.emit)

    # The first attempt expires; then the blockhash is fresh again and the rebuild lands.
    original = execution._retry_or_fail

    async def retry(
        state: OrderState, attempt: int, code: events.FailureCode, error: str
    ) -> OrderState:
        rpc.lands_after, rpc.valid_checks = len(rpc.sent) + 1, None
        return await original(state, attempt, code, error)

    execution._retry_or_fail = retry  # type: ignore[method-assign]
    final = await execution.run(state)

    submissions = [p for p in log.payloads if isinstance(p, events.TransactionSubmitted)]
    assert [p.attempt for p in submissions] == [1, 2]
    retrying = [p for p in log.payloads if isinstance(p, events.OrderRetrying)]
    assert [r.code for r in retrying] == [events.FailureCode.VENUE_TIMEOUT]
    assert final.status is OrderStatus.COMPLETED
    assert final.attempts == 2
    assert final.tx_hash == submissions[1].tx_hash


async def test_two_orders_with_the_same_plan_never_sign_the_same_bytes() -> None:
    # Same pair, amount, minimum and blockhash: without the order's memo these are one signature,
    # which the chain lands once while both orders would take that landing as theirs.
    first = tx(leg("SOL", "USDC", 10**9, 150 * 10**6), min_out=148 * 10**6)
    second = dataclasses.replace(first, order_id=uuid.uuid4())
    chain = client(FakeRpc())
    a, b = await chain.sign(first), await chain.sign(second)
    assert a.signature != b.signature
    assert a.wire != b.wire
    assert await chain.sign(first) == a  # one order, one blockhash: the same bytes


@pytest.mark.parametrize(
    ("failing", "retryable", "price"),
    # With a priority fee the swaps come one instruction later (after the unit price).
    [(1, True, 0), (2, False, 0), (2, True, 5_000), (3, False, 5_000)],
)
async def test_a_first_hops_slippage_is_retryable_the_last_hops_is_the_orders(
    failing: int, retryable: bool, price: int
) -> None:
    # A first hop that misses its share of the allowance (the minimum the next hop spends) is
    # not the order's slippage. The transaction landed (failed), so it can never
    # land again, and a re-quoted new attempt is safe. The last hop's is the order's slippage.
    two_hop = tx(
        leg("SOL", "USDC", 10**9, 150_000_000),
        leg("USDC", "JUP", 150_000_000, 166_000_000, hop=1),
        min_out=164_340_000,
        token_out="JUP",
    )
    two_hop = dataclasses.replace(two_hop, compute_unit_price=price)
    err = TransactionErrorInstructionError(failing, InstructionErrorCustom(6005))
    chain = client(FakeRpc(err=err))
    signed = await chain.sign(two_hop)
    if retryable:
        with pytest.raises(RetryableLandedFailure) as raised:
            await chain.send_and_confirm(signed, 1)
        assert raised.value.code == "SLIPPAGE_EXCEEDED"
    else:
        receipt = await chain.send_and_confirm(signed, 1)
        assert (receipt.status, receipt.error_code) == ("failed", "SLIPPAGE_EXCEEDED")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ({"InstructionError": [1, {"Custom": 6005}]}, "SLIPPAGE_EXCEEDED"),
        ({"InstructionError": [2, {"Custom": 6000}]}, "POOL_NOT_OPEN"),
        ({"InstructionError": [1, "InvalidAccountData"]}, "INVALID_TRANSACTION"),
        ("BlockhashNotFound", "INVALID_TRANSACTION"),
    ],
)
def test_a_json_transaction_error_reads_as_the_librarys_type(
    raw: object, expected: str | None
) -> None:
    # The router's batched reads parse statuses and fills with orjson; the error must still be
    # solders' type, which the program-error mapping reads (a failed swap under load once
    # stopped every order's poll when this did not parse).
    err = transaction_error(raw)
    if expected is None:
        assert err is None
        return
    assert err is not None
    programs = [COMPUTE_BUDGET, CPMM_PROGRAM_ID, CPMM_PROGRAM_ID, MEMO_PROGRAM_ID]
    assert failure_code(map_error(err, programs, [])) == expected


async def test_orders_signed_on_a_fresh_blockhash_send_without_asking_if_it_is_valid() -> None:
    # The blockhash fetched for signing is valid for a slot at least: asking isBlockhashValid
    # before each order's first send was a request per order. A "dead" answer is never reused
    # (the expiry tests above ask on every re-send).
    rpc = FakeRpc(lands_after=1)
    chain = SolanaChain(rpc, WALLET, poll_seconds=0.001, resend_seconds=2.0)

    signed = [await signed_tx(chain) for _ in range(20)]
    receipts = await asyncio.gather(*(chain.send_and_confirm(s, 1) for s in signed))

    assert rpc.checks == 0
    assert len(rpc.sent) == 20  # each order's bytes once
    assert set(rpc.sent) == {s.wire for s in signed}
    assert {r.status for r in receipts} == {"confirmed"}
