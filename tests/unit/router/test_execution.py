"""One order's execution against in-memory venues and a scripted chain.

The venues serve a fixed pool book from the seeded market, the chain answers from a
script, and `emit` folds each event into the state the way the router's does after
the log accepts it, so every test reads back exactly the events an order would append.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import base58

from schemas import events
from schemas.codec import encode
from schemas.envelope import Envelope, genesis_hash, record_hash
from schemas.events import FailureCode, OrderStatus
from services.chain.client import ChainUnavailable, ConfirmationTimeout, RetryableLandedFailure
from services.chain.transactions import Receipt, Transaction
from services.domain.order import OrderState, evolve
from services.pricing.ports import ChainUnreachable
from services.pricing.quote import quote_order
from services.router.execution import (
    ExecutionPolicy,
    OrderExecution,
    Step,
    next_step,
    transaction_for,
)
from services.venues.market import Market
from services.venues.pool import PoolBook, Venue

DELAYS = (0.01, 0.02, 0.04)
POLICY = ExecutionPolicy(
    retry_delays=DELAYS,
    quote_ttl_seconds=2.0,
    split_threshold_bps=Decimal(1),
)
MARKET_POOLS: PoolBook = dict(Market(seed=42).pools)


class FakeVenue:
    """A venue whose pools never change; it counts how often it is read."""

    def __init__(self, venue: Venue, book: PoolBook, *, fail: bool = False) -> None:
        self._venue = venue
        self._book = {key: pool for key, pool in book.items() if key[0] is venue}
        self._fail = fail
        self.loads = 0

    @property
    def venue(self) -> Venue:
        return self._venue

    async def load_pools(self) -> tuple[int, PoolBook]:
        self.loads += 1
        if self._fail:
            raise ConnectionError(f"{self._venue} RPC is down")
        return 100, dict(self._book)


def venues(book: PoolBook = MARKET_POOLS, *, fail: bool = False) -> list[FakeVenue]:
    return [FakeVenue(v, book, fail=fail) for v in Venue]


Outcome = type[Exception] | str  # a fault to raise, or the status a landing gets


class FakeChain:
    """Plays a script of outcomes, one per send; once it runs out, every send confirms.

    Like the real chain it lands an order at most once: ChainUnavailable is raised
    before landing, ConfirmationTimeout after it, and a resend of a landed order
    answers with the first receipt.
    """

    def __init__(self, script: Iterable[Outcome] = (), *, error_code: str | None = None) -> None:
        self._script = list(script)
        self._error_code = error_code
        self.sent: list[tuple[Transaction, int]] = []
        self.landed: dict[str, Receipt] = {}

    async def send_and_confirm(self, tx: Transaction, attempt: int) -> Receipt:
        self.sent.append((tx, attempt))
        outcome: Outcome = self._script.pop(0) if self._script else "confirmed"
        if outcome is ChainUnavailable:
            raise ChainUnavailable("scripted outage before sending")
        if outcome is RetryableLandedFailure:  # landed failed: this signature is spent
            self.landed[tx.signature] = self._land(tx, "failed")
            raise RetryableLandedFailure("scripted first-hop slippage", "SLIPPAGE_EXCEEDED")
        if tx.signature not in self.landed:
            self.landed[tx.signature] = self._land(
                tx, "failed" if outcome == "failed" else "confirmed"
            )
        if outcome is ConfirmationTimeout:
            raise ConfirmationTimeout("scripted lost confirmation")
        return self.landed[tx.signature]

    def _land(self, tx: Transaction, status: str) -> Receipt:
        if status == "failed":
            return Receipt(
                tx.signature, tx.order_id, "failed", tx.amount_in, 0, 0, 9, _venues(tx),
                self._error_code, "fill is below the minimum",
            )  # fmt: skip
        return Receipt(
            tx.signature,
            tx.order_id,
            "confirmed",
            tx.amount_in,
            tx.min_amount_out + 17,
            1234,
            9,
            _venues(tx),
        )

    async def sign(self, tx: Transaction) -> Transaction:
        assert tx.signature == "", "a transaction is signed once, before it is recorded"
        return dataclasses.replace(tx, signature=signature_for(tx.order_id))

    async def receipt(self, tx: Transaction) -> Receipt | None:
        return self.landed.get(tx.signature)


def signature_for(order_id: uuid.UUID) -> str:
    """The fake chain's signature of an order's transaction (a real one differs per attempt):
    64 bytes in base58, shaped like an ed25519 signature."""
    digest = hashlib.sha512(order_id.bytes).digest()
    return str(base58.b58encode(bytes([digest[0] | 0x80]) + digest[1:]).decode())


def _venues(tx: Transaction) -> tuple[str, ...]:
    return tuple(sorted({i.venue.value for i in tx.instructions}))


class Log:
    """The order's log in memory: `emit` appends the next envelope and folds it."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    @property
    def payloads(self) -> list[events.OrderEvent]:
        return [e.payload for e in self.envelopes]

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.envelopes]

    def append(
        self, state: OrderState | None, order_id: uuid.UUID, payload: events.OrderEvent
    ) -> OrderState:
        envelope = Envelope.new(
            order_id=order_id,
            sequence=1 if state is None else state.sequence + 1,
            producer="test-router",
            prev_hash=genesis_hash(order_id) if state is None else state.last_hash,
            payload=payload,
        )
        self.envelopes.append(envelope)
        return evolve(state, envelope, record_hash(encode(envelope)))

    async def emit(self, state: OrderState, *payloads: events.OrderEvent) -> OrderState:
        for payload in payloads:
            state = self.append(state, state.order_id, payload)
        return state


def submitted(
    log: Log | None = None, token_in: str = "SOL", token_out: str = "USDC", amount: str = "0.5"
) -> tuple[OrderState, uuid.UUID]:
    """A fresh order as the API appends it: sequence 1, pending."""
    order_id = uuid.uuid4()
    event = events.OrderSubmitted(
        token_in=token_in, token_out=token_out, amount=Decimal(amount), slippage=Decimal("0.01")
    )
    return (log or Log()).append(None, order_id, event), order_id


def execution(
    chain: FakeChain, log: Log, adapters: list[FakeVenue] | None = None
) -> OrderExecution:
    return OrderExecution(POLICY, adapters if adapters is not None else venues(), chain, log.emit)


async def test_happy_path_emits_the_four_steps_in_order() -> None:
    state, order_id = submitted()
    log, chain = Log(), FakeChain()

    final = await execution(chain, log).run(state)

    assert log.types == [
        "OrderRouted",
        "TransactionBuilt",
        "TransactionSubmitted",
        "OrderCompleted",
    ]
    assert [e.sequence for e in log.envelopes] == [2, 3, 4, 5]
    assert [e.prev_hash for e in log.envelopes[1:]] == [
        record_hash(encode(e)) for e in log.envelopes[:-1]
    ]
    routed, built, sent, done = log.payloads
    assert isinstance(routed, events.OrderRouted)
    assert isinstance(built, events.TransactionBuilt)
    assert isinstance(sent, events.TransactionSubmitted)
    assert isinstance(done, events.OrderCompleted)
    assert routed.attempt == built.attempt == sent.attempt == 1
    assert built.min_amount_out == routed.plan.min_amount_out
    signature = signature_for(order_id)
    assert sent.tx_hash == done.tx_hash == signature
    assert len(chain.sent) == 1
    tx, attempt = chain.sent[0]
    assert attempt == 1
    assert tx == dataclasses.replace(transaction_for(final), signature=signature)
    assert tx.amount_in == 500_000_000
    assert done.amount_in == Decimal("0.5")
    assert done.amount_out == Decimal(tx.min_amount_out + 17).scaleb(-6)
    assert done.fee == Decimal("0.000001234")
    assert final.status is OrderStatus.COMPLETED
    assert final.sequence == 5
    assert final.tx_hash == signature


async def test_transient_failures_retry_with_the_policy_delays_then_complete() -> None:
    state, _ = submitted()
    log = Log()
    chain = FakeChain([ChainUnavailable, ChainUnavailable, ChainUnavailable])

    started = time.monotonic()
    final = await execution(chain, log).run(state)
    elapsed = time.monotonic() - started

    retries = [p for p in log.payloads if isinstance(p, events.OrderRetrying)]
    assert [r.delay_seconds for r in retries] == [Decimal(str(d)) for d in DELAYS]
    assert [r.attempt for r in retries] == [1, 2, 3]
    assert [r.code for r in retries] == [FailureCode.VENUE_UNAVAILABLE] * 3
    # Each retry routes afresh under the next attempt number.
    routed = [p.attempt for p in log.payloads if isinstance(p, events.OrderRouted)]
    assert routed == [1, 2, 3, 4]
    assert [attempt for _, attempt in chain.sent] == [1, 2, 3, 4]
    assert len({tx.signature for tx, _ in chain.sent}) == 1  # one order, one signature
    assert log.types[-1] == "OrderCompleted"
    assert [e.sequence for e in log.envelopes] == list(range(2, 2 + len(log.envelopes)))
    assert final.status is OrderStatus.COMPLETED
    assert final.attempts == 4
    assert elapsed >= sum(DELAYS) * 0.9  # the delays were waited, not just announced


async def test_more_failures_than_retries_fail_the_order_as_retryable() -> None:
    state, _ = submitted()
    log = Log()
    chain = FakeChain([ChainUnavailable] * (len(DELAYS) + 1))

    final = await execution(chain, log).run(state)

    assert log.types.count("OrderRetrying") == len(DELAYS)
    failed = log.payloads[-1]
    assert isinstance(failed, events.OrderFailed)
    assert failed.code is FailureCode.VENUE_UNAVAILABLE
    assert failed.retryable is True
    assert failed.attempts == len(DELAYS) + 1
    assert "gave up after 4 attempts" in failed.error
    assert len(chain.sent) == len(DELAYS) + 1
    assert final.status is OrderStatus.FAILED
    assert final.attempts == len(DELAYS) + 1


async def test_a_lost_confirmation_completes_with_the_landed_fill_without_retrying() -> None:
    state, order_id = submitted()
    log = Log()
    chain = FakeChain([ConfirmationTimeout])

    final = await execution(chain, log).run(state)

    # The chain is asked for the receipt instead of routing and sending again.
    assert log.types.count("OrderRetrying") == 0
    assert len(chain.sent) == 1
    done = log.payloads[-1]
    assert isinstance(done, events.OrderCompleted)
    assert list(chain.landed) == [signature_for(order_id)]
    landed = chain.landed[done.tx_hash]
    assert done.amount_out == Decimal(landed.amount_out).scaleb(-6)
    assert final.status is OrderStatus.COMPLETED


async def test_an_order_that_landed_is_never_reported_failed() -> None:
    # Every send times out after landing: the fill exists on chain from the first attempt.
    state, order_id = submitted()
    log = Log()
    chain = FakeChain([ConfirmationTimeout] * (len(DELAYS) + 1))

    final = await execution(chain, log).run(state)

    assert chain.landed[signature_for(order_id)].status == "confirmed"
    assert final.status is OrderStatus.COMPLETED


async def test_a_failed_receipt_fails_the_order_without_retrying() -> None:
    state, order_id = submitted()
    log = Log()
    chain = FakeChain(["failed"], error_code="SLIPPAGE_EXCEEDED")

    final = await execution(chain, log).run(state)

    assert log.types == ["OrderRouted", "TransactionBuilt", "TransactionSubmitted", "OrderFailed"]
    failed = log.payloads[-1]
    assert isinstance(failed, events.OrderFailed)
    assert failed.code is FailureCode.SLIPPAGE_EXCEEDED
    assert failed.retryable is False
    assert failed.attempts == 1
    assert failed.tx_hash == signature_for(order_id)
    assert len(chain.sent) == 1
    assert final.status is OrderStatus.FAILED
    assert final.error_code == "SLIPPAGE_EXCEEDED"


async def test_an_unknown_chain_error_code_fails_as_invalid_transaction() -> None:
    state, _ = submitted()
    log = Log()

    await execution(FakeChain(["failed"], error_code="SOMETHING_NEW"), log).run(state)

    failed = log.payloads[-1]
    assert isinstance(failed, events.OrderFailed)
    assert failed.code is FailureCode.INVALID_TRANSACTION


async def test_a_pair_without_route_fails_with_no_route() -> None:
    # Only SOL/USDC pools exist: JUP cannot reach BONK directly or through USDC.
    book = {key: pool for key, pool in MARKET_POOLS.items() if key[1] == ("SOL", "USDC")}
    state, _ = submitted(None, "JUP", "BONK", "10")
    log, chain = Log(), FakeChain()

    final = await execution(chain, log, venues(book)).run(state)

    assert log.types == ["OrderFailed"]
    failed = log.payloads[0]
    assert isinstance(failed, events.OrderFailed)
    assert failed.code is FailureCode.NO_ROUTE
    assert failed.retryable is False
    assert log.envelopes[0].sequence == 2
    assert chain.sent == []
    assert final.status is OrderStatus.FAILED


async def test_unreadable_venues_are_retried_then_fail() -> None:
    state, _ = submitted()
    log = Log()
    adapters = venues(fail=True)

    final = await execution(FakeChain(), log, adapters).run(state)

    assert log.types == ["OrderRetrying"] * len(DELAYS) + ["OrderFailed"]
    codes = [
        p.code for p in log.payloads if isinstance(p, events.OrderRetrying | events.OrderFailed)
    ]
    assert codes == [FailureCode.VENUE_UNAVAILABLE] * (len(DELAYS) + 1)
    assert all(a.loads == len(DELAYS) + 1 for a in adapters)
    assert final.status is OrderStatus.FAILED


def test_only_a_final_or_resting_order_needs_no_next_step() -> None:
    state, _ = submitted()
    for status in OrderStatus:
        step = next_step(dataclasses.replace(state, status=status))
        assert (step is Step.DONE) == status.is_final, status
        assert (step is Step.REST) == status.is_resting, status


def test_next_step_covers_every_status() -> None:
    state, _ = submitted()
    steps = {next_step(dataclasses.replace(state, status=s)) for s in OrderStatus}
    assert steps == set(Step)


async def routed_plan(state: OrderState, *, quoted_at: float | None = None) -> events.OrderRouted:
    quote = await quote_order(
        venues(),
        state.token_in,
        state.token_out,
        state.amount,
        state.slippage,
        split_threshold_bps=POLICY.split_threshold_bps,
    )
    plan = quote.plan
    if quoted_at is not None:
        plan = plan.model_copy(update={"quoted_at": quoted_at})
    return events.OrderRouted(attempt=1, quotes=quote.quotes, plan=plan, reason=quote.reason)


async def folded_to(
    stage: OrderStatus, *, quoted_at: float | None = None
) -> tuple[OrderState, Log]:
    """An order folded from its log up to `stage`, as a restarted router would see it."""
    log = Log()
    state, order_id = submitted(log)
    routed = await routed_plan(state, quoted_at=quoted_at)
    state = await log.emit(state, routed)
    if stage is not OrderStatus.ROUTING:
        state = await log.emit(
            state, events.TransactionBuilt(attempt=1, min_amount_out=routed.plan.min_amount_out)
        )
    if stage is OrderStatus.SUBMITTED:
        state = await log.emit(
            state,
            events.TransactionSubmitted(attempt=1, tx_hash=signature_for(order_id)),
        )
    assert state.status is stage
    return state, log


async def test_resuming_a_submitted_order_confirms_without_routing_again() -> None:
    # The crash between sending and confirming: the transaction may have landed, so
    # the restarted router must resend the same one, even if its quote is long stale.
    state, log = await folded_to(OrderStatus.SUBMITTED, quoted_at=time.time() - 3600)
    adapters = venues()
    chain = FakeChain()
    expected_tx = transaction_for(state)
    before = len(log.envelopes)

    final = await execution(chain, log, adapters).run(state)

    new = log.envelopes[before:]
    assert [e.type for e in new] == ["OrderCompleted"]
    assert new[0].sequence == 5
    assert all(a.loads == 0 for a in adapters)
    assert chain.sent == [(expected_tx, 1)]
    assert final.status is OrderStatus.COMPLETED
    assert final.tx_hash == signature_for(state.order_id)


async def test_resuming_a_routed_order_builds_from_its_plan() -> None:
    state, log = await folded_to(OrderStatus.ROUTING)
    adapters = venues()
    before = len(log.envelopes)

    final = await execution(FakeChain(), log, adapters).run(state)

    assert [e.type for e in log.envelopes[before:]] == [
        "TransactionBuilt", "TransactionSubmitted", "OrderCompleted",
    ]  # fmt: skip
    assert all(a.loads == 0 for a in adapters)
    assert final.status is OrderStatus.COMPLETED


async def test_an_expired_quote_is_routed_again_before_submitting() -> None:
    stale = time.time() - POLICY.quote_ttl_seconds - 5
    state, log = await folded_to(OrderStatus.BUILDING, quoted_at=stale)
    adapters = venues()
    before = len(log.envelopes)

    final = await execution(FakeChain(), log, adapters).run(state)

    new = log.envelopes[before:]
    assert [e.type for e in new] == [
        "OrderRouted", "TransactionBuilt", "TransactionSubmitted", "OrderCompleted",
    ]  # fmt: skip
    assert [e.sequence for e in new] == [4, 5, 6, 7]
    rerouted = new[0].payload
    assert isinstance(rerouted, events.OrderRouted)
    assert rerouted.attempt == 1  # a re-quote is not a new attempt
    assert rerouted.plan.quoted_at > stale + POLICY.quote_ttl_seconds
    assert all(a.loads == 1 for a in adapters)
    assert final.status is OrderStatus.COMPLETED
    assert final.attempts == 1


async def test_a_fresh_quote_is_submitted_without_routing_again() -> None:
    state, log = await folded_to(OrderStatus.BUILDING)
    adapters = venues()
    before = len(log.envelopes)

    await execution(FakeChain(), log, adapters).run(state)

    assert [e.type for e in log.envelopes[before:]] == ["TransactionSubmitted", "OrderCompleted"]
    assert all(a.loads == 0 for a in adapters)


async def test_resuming_a_retrying_order_waits_out_its_delay() -> None:
    log = Log()
    state, _ = submitted(log)
    retry_at_delay = 0.05
    state = await log.emit(
        state,
        events.OrderRetrying(
            attempt=1,
            code=FailureCode.VENUE_UNAVAILABLE,
            error="earlier outage",
            delay_seconds=Decimal(str(retry_at_delay)),
        ),
    )
    assert state.retry_at is not None
    chain = FakeChain()

    started = datetime.now(UTC)
    final = await execution(chain, log).run(state)

    assert datetime.now(UTC) - started >= timedelta(seconds=retry_at_delay * 0.8)
    routed = log.payloads[2]
    assert isinstance(routed, events.OrderRouted)
    assert routed.attempt == 2
    assert chain.sent[0][1] == 2
    assert final.status is OrderStatus.COMPLETED


class UnreachableOnce(FakeChain):
    """The chain's store is down for the first send, then back."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    async def send_and_confirm(self, tx: Transaction, attempt: int) -> Receipt:
        if self.down:
            self.down = False
            raise ChainUnreachable("store down")
        return await super().send_and_confirm(tx, attempt)


async def test_an_unreachable_chain_makes_the_order_wait_without_using_an_attempt() -> None:
    state, order_id = submitted()
    log = Log()
    chain = UnreachableOnce()

    final = await execution(chain, log).run(state)

    assert log.types == [
        "OrderRouted",
        "TransactionBuilt",
        "TransactionSubmitted",
        "OrderCompleted",
    ]
    assert final.attempts == 1
    assert list(chain.landed) == [signature_for(order_id)]


async def test_a_retryable_landed_failure_is_retried_with_a_fresh_quote() -> None:
    # An earlier hop's slippage: the transaction landed failed, so a new attempt is safe.
    class ResigningChain(FakeChain):
        """Each signing is new bytes, as with a fresh blockhash."""

        async def sign(self, tx: Transaction) -> Transaction:
            return dataclasses.replace(tx, signature=signature_for(uuid.uuid4()))

    state, _ = submitted()
    log, chain = Log(), ResigningChain([RetryableLandedFailure])

    final = await execution(chain, log).run(state)

    assert log.types == [
        "OrderRouted", "TransactionBuilt", "TransactionSubmitted", "OrderRetrying",
        "OrderRouted", "TransactionBuilt", "TransactionSubmitted", "OrderCompleted",
    ]  # fmt: skip
    retrying = log.payloads[3]
    assert isinstance(retrying, events.OrderRetrying)
    assert retrying.code is FailureCode.SLIPPAGE_EXCEEDED
    assert [attempt for _, attempt in chain.sent] == [1, 2]
    assert chain.sent[0][0].signature != chain.sent[1][0].signature
    assert final.status is OrderStatus.COMPLETED


# --- Conditional orders (issue 17) ------------------------------------------------------------


def limit_order(log: Log, amount: str, limit: Decimal, *, allow_partial: bool = True) -> OrderState:
    """A limit order as the API appends it, then triggered as the trigger engine does."""
    order_id = uuid.uuid4()
    state = log.append(
        None,
        order_id,
        events.OrderSubmitted(
            token_in="SOL", token_out="USDC", amount=Decimal(amount), slippage=Decimal("0.01"),
            order_type=events.OrderType.LIMIT, limit_price=limit, allow_partial=allow_partial,
        ),
    )  # fmt: skip
    return trigger(log, state)


def trigger(log: Log, state: OrderState) -> OrderState:
    return log.append(
        state,
        state.order_id,
        events.OrderTriggered(
            leg="limit", pair="SOL-USDC", slot=1, price=Decimal(1), level=Decimal(1)
        ),
    )


async def market_price(amount: str = "0.01") -> Decimal:
    quote = await quote_order(
        venues(), "SOL", "USDC", Decimal(amount), Decimal(0), split_threshold_bps=Decimal(1)
    )
    return quote.plan.amount_out / Decimal(amount)


async def test_a_limit_executes_with_amount_times_limit_as_its_min_out() -> None:
    log, chain = Log(), FakeChain()
    limit = (await market_price() * Decimal("0.9")).quantize(Decimal("0.01"))
    state = limit_order(log, "1", limit)
    final = await execution(chain, log).run(state)
    assert final.status is OrderStatus.COMPLETED
    routed = log.payloads[2]
    assert isinstance(routed, events.OrderRouted)
    assert routed.plan.min_amount_out == limit  # 1 x limit
    assert chain.sent[0][0].min_amount_out == 1_000_000 * limit  # USDC base units
    assert final.amount_out is not None
    assert final.amount_out >= limit


async def test_a_limit_no_route_fills_rests_again_instead_of_failing() -> None:
    log, chain = Log(), FakeChain()
    state = limit_order(log, "1", await market_price() * 2, allow_partial=False)
    final = await execution(chain, log).run(state)
    assert final.status is OrderStatus.OPEN
    assert log.types[-1] == "OrderOpened"
    assert chain.sent == []


async def test_a_limit_fills_the_part_its_price_allows_and_the_rest_rests() -> None:
    log, chain = Log(), FakeChain()
    limit = (await market_price() * Decimal("0.97")).quantize(Decimal("0.01"))
    amount = "200000"  # far more than the pools give at 3 % below the mid
    state = limit_order(log, amount, limit)
    first = await execution(chain, log).run(state)
    assert log.types[-1] == "OrderPartiallyFilled", log.types
    assert first.status is OrderStatus.PARTIALLY_FILLED
    part = log.payloads[-1]
    assert isinstance(part, events.OrderPartiallyFilled)
    assert Decimal(0) < part.amount_in < Decimal(amount)
    assert part.amount_out >= part.amount_in * limit  # never below the limit
    assert part.remaining == Decimal(amount) - part.amount_in
    assert first.filled_amount == part.amount_in
    # Triggered again: the next part lands under its own key, never as the first one's resend.
    second = await execution(chain, log).run(trigger(log, first))
    assert len(chain.landed) == 2
    signatures = [tx.signature for tx, _ in chain.sent]
    assert len(set(signatures)) == 2
    assert chain.sent[0][0].order_id == state.order_id
    assert chain.sent[1][0].order_id != state.order_id
    assert second.fills in (1, 2)
    assert second.filled_amount > first.filled_amount or second.status is OrderStatus.COMPLETED
