"""One order's way from `pending` to `completed` or `failed`.

`next_step` is pure: from the order's folded state it says what to do next.
`OrderExecution` does it and appends the resulting event. Because every step
starts from the state the log describes, a router that restarts after a crash
resumes each order exactly where the log says it stands; and because the signed
transaction is recorded before it is sent, a successor re-sends those same bytes, which
land at most once (a signature lands once on Solana).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from base64 import b64decode, b64encode
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal
from enum import Enum
from functools import partial
from typing import Protocol

from schemas import events
from schemas.envelope import Envelope, genesis_hash
from schemas.events import FailureCode, OrderStatus, RoutePlan
from services.chain.client import (
    ChainClient,
    RetryableLandedFailure,
    TransientChainError,
    UnsignableTransaction,
)
from services.chain.transactions import Receipt, SwapInstruction, Transaction
from services.common.process import retry_while_down
from services.domain.order import OrderState
from services.domain.priority_fees import sniper_compute_unit_price
from services.domain.tokens import UnknownTokenError, from_base_units, get_token, to_base_units
from services.pricing.ports import ChainUnreachable, VenueAdapter
from services.pricing.quote import Quote, VenuesUnavailable, quote_order
from services.pricing.routing import NoRouteError
from services.venues.pool import InsufficientLiquidityError, Venue

log = logging.getLogger(__name__)


class Emit(Protocol):
    """Append the order's next events in order; the state once they are on the log."""

    async def __call__(self, state: OrderState, *payloads: events.OrderEvent) -> OrderState: ...


Submit = Callable[[Envelope], Awaitable[None]]  # appends another order's first event
AUTO_SELL_EXPIRY = timedelta(days=7)  # as a conditional order's default expiry
_AUTO_SELL_IDS = uuid.UUID("9d7c3a1e-52b4-4f0c-9a61-0b8e4c2d7f35")


class Step(Enum):
    ROUTE = "route"
    WAIT_THEN_ROUTE = "wait_then_route"
    BUILD = "build"
    SUBMIT = "submit"
    CONFIRM = "confirm"
    REST = "rest"  # a resting conditional order: the trigger engine's, until it triggers
    DONE = "done"


def next_step(state: OrderState) -> Step:
    """What the order needs next, from its state alone."""
    return {
        OrderStatus.PENDING: Step.ROUTE,
        OrderStatus.TRIGGERED: Step.ROUTE,  # a triggered order is routed like a pending one
        OrderStatus.OPEN: Step.REST,
        OrderStatus.PARTIALLY_FILLED: Step.REST,
        OrderStatus.CANCELLED: Step.DONE,
        OrderStatus.EXPIRED: Step.DONE,
        OrderStatus.RETRYING: Step.WAIT_THEN_ROUTE,
        OrderStatus.ROUTING: Step.BUILD,
        OrderStatus.BUILDING: Step.SUBMIT,
        OrderStatus.SUBMITTED: Step.CONFIRM,
        OrderStatus.COMPLETED: Step.DONE,
        OrderStatus.FAILED: Step.DONE,
    }[state.status]


@dataclass(frozen=True)
class ExecutionPolicy:
    retry_delays: tuple[float, ...]
    quote_ttl_seconds: float
    split_threshold_bps: Decimal


class LaunchPort(Protocol):
    """A sniper's launch, as the router needs it (`services.chain.launch.LaunchGate`)."""

    async def prepare(self, target: events.LaunchTarget) -> None:
        """Make the launched token and its pool known to this process; idempotent."""

    async def wait_signable(self, target: events.LaunchTarget) -> None:
        """Return once a buy signed now is still valid (its blockhash) in the first open block."""

    async def send_at_open(
        self, target: events.LaunchTarget, key: tuple[datetime, str], wire: bytes
    ) -> None:
        """Send the signed buy for the first block the pool is open in, in submission order
        (`key`) with the launch's other snipers; return once sent."""

    async def venues_at_open(self, target: events.LaunchTarget) -> list[VenueAdapter] | None:
        """The venues as they will be at the open (the launched pool quotable before it);
        None once it is open."""


class OrderExecution:
    """Drives orders through their lifecycle with the venues and the chain as ports."""

    def __init__(
        self,
        policy: ExecutionPolicy,
        venues: Sequence[VenueAdapter],
        chain: ChainClient,
        emit: Emit,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        launches: LaunchPort | None = None,
        submit: Submit | None = None,
    ) -> None:
        self.policy = policy
        self.venues = venues
        self.chain = chain
        self.emit = emit
        self.clock = clock
        self.launches = launches
        self.submit = submit

    async def run(self, state: OrderState) -> OrderState:
        """Take the order to a final state from wherever it stands.

        While the chain is unreachable the order waits and its step is done again:
        each step is idempotent (reads, or a resend of the recorded bytes).
        """
        while (step := next_step(state)) not in (Step.DONE, Step.REST):
            log.debug("order %s: %s from %s", state.order_id, step.value, state.status.value)
            state = await retry_while_down(
                partial(self._do, step, state),
                is_outage=lambda exc: isinstance(exc, ChainUnreachable),
                what=f"the chain, for order {state.order_id},",
            )
        return state

    async def _do(self, step: Step, state: OrderState) -> OrderState:
        if step is Step.WAIT_THEN_ROUTE:
            assert state.retry_at is not None
            delay = (state.retry_at - self.clock()).total_seconds()
            if delay > 0:
                await asyncio.sleep(delay)
            return await self._route(state, state.attempts + 1)
        if step is Step.ROUTE:
            return await self._route(state, max(state.attempts, 1))
        assert state.plan is not None
        if step is Step.BUILD:  # routed, not yet built: a router stopped between the two
            return await self.emit(state, built(state.attempts, state.plan))
        if step is Step.SUBMIT:
            if self._expired(state):
                return await self._route(state, state.attempts)  # re-quote, same attempt
            if state.launch is not None and self.launches is not None:
                await self.launches.wait_signable(state.launch)  # else it expires before the open
            # Signed now and recorded before it is sent: whoever confirms it (this router, or
            # one taking over after a crash) re-sends exactly these bytes.
            try:
                signed = await self.chain.sign(transaction_for(state))
            except UnsignableTransaction as exc:
                code = FailureCode.INVALID_TRANSACTION
                return await self._fail(state, code, str(exc), state.attempts)
            return await self.emit(
                state,
                events.TransactionSubmitted(
                    attempt=state.attempts,
                    tx_hash=signed.signature,
                    transaction=None if signed.wire is None else b64encode(signed.wire).decode(),
                    blockhash=signed.blockhash,
                    last_valid_block_height=signed.last_valid_block_height,
                ),
            )
        return await self._confirm(state)

    def _expired(self, state: OrderState) -> bool:
        assert state.plan is not None
        age = self.clock().timestamp() - state.plan.quoted_at
        return age > self.policy.quote_ttl_seconds

    async def _quote(
        self, state: OrderState, amount: Decimal, venues: Sequence[VenueAdapter] | None = None
    ) -> Quote:
        return await quote_order(
            self.venues if venues is None else venues,
            state.token_in,
            state.token_out,
            amount,
            state.slippage,
            split_threshold_bps=self.policy.split_threshold_bps,
        )

    async def _route(self, state: OrderState, attempt: int) -> OrderState:
        venues = self.venues
        if state.launch is not None and self.launches is not None:
            # A sniper: its token is known from the launch its trigger names. It is quoted at
            # the reserves the pool opens with, built, signed and recorded before the open;
            # only the send waits for it (`_confirm`), so the open costs no log round trip.
            await self.launches.prepare(state.launch)
            venues = await self.launches.venues_at_open(state.launch) or self.venues
        amount = state.remaining
        try:
            try:
                quote: Quote | None = await self._quote(state, amount, venues)
            except InsufficientLiquidityError:
                if state.min_price is None:
                    raise
                quote = None  # a limit waits for liquidity (or takes the part there is)
            if state.min_price is not None and (
                quote is None or quote.plan.amount_out < limit_out(state, amount)
            ):
                partial = await self._largest_fill(state) if state.allow_partial else None
                if partial is None:
                    # The mid crossed, the precise quote did not: not a failure, it rests.
                    best = None if quote is None else quote.plan.amount_out
                    return await self.emit(
                        state,
                        events.OrderOpened(
                            reason=f"the best route gives {best} {state.token_out},"
                            f" below the limit's {limit_out(state, amount)}",
                            best_amount_out=best,
                        ),
                    )
                quote, amount = partial
        except VenuesUnavailable as exc:
            return await self._retry_or_fail(
                state, attempt, FailureCode.VENUE_UNAVAILABLE, str(exc)
            )
        except NoRouteError as exc:
            return await self._fail(state, FailureCode.NO_ROUTE, str(exc), attempt)
        except UnknownTokenError as exc:
            # A sniper's launched token: the router's pools and tokens are the seeded market's
            # (discovery drops other mints), so it has no route to it; failing beats a crash
            # loop on the same order.
            error = f"no route to {exc.args[0]}: the router trades only the seeded tokens"
            return await self._fail(state, FailureCode.NO_ROUTE, error, attempt)
        except InsufficientLiquidityError as exc:
            return await self._fail(state, FailureCode.INSUFFICIENT_LIQUIDITY, str(exc), attempt)
        assert quote is not None
        plan, reason = quote.plan, quote.reason
        if state.max_price is not None:
            # A sniper's guard: at most maxPrice tokenIn per tokenOut, whatever its slippage.
            floor = sniper_floor(state, amount)
            if plan.amount_out < floor:
                error = (
                    f"the pool gives {plan.amount_out} {state.token_out} for {amount}"
                    f" {state.token_in}, below {floor} (= amount / maxPrice {state.max_price})"
                )
                return await self._fail(state, FailureCode.SLIPPAGE_EXCEEDED, error, attempt)
            if plan.min_amount_out < floor:
                plan = plan.model_copy(update={"min_amount_out": floor})
            reason = f"{reason}; min out >= {floor} = {amount} / maxPrice {state.max_price}"
        if state.min_price is not None:
            # The limit is the transaction's guard: it fills at the limit or better, or not.
            floor = limit_out(state, amount)
            plan = plan.model_copy(update={"min_amount_out": floor})
            part = "" if amount == state.remaining else f" (part: {amount} of {state.remaining})"
            reason = f"{reason}; min out {floor} = {amount} x limit {state.min_price}{part}"
        # Building is pure (the plan's guards): routed and built go to the log together.
        return await self.emit(
            state,
            events.OrderRouted(attempt=attempt, quotes=quote.quotes, plan=plan, reason=reason),
            built(attempt, plan),
        )

    async def _largest_fill(self, state: OrderState) -> tuple[Quote, Decimal] | None:
        """The largest part of the remaining amount a route fills at the limit (bisection on
        the amount: a bigger swap never gets a better average price), if at least
        MIN_PARTIAL_FILL of it."""
        unit = Decimal(1).scaleb(-get_token(state.token_in).decimals)
        low, high = Decimal(0), state.remaining
        best: tuple[Quote, Decimal] | None = None
        for _ in range(PARTIAL_SEARCH_STEPS):
            middle = ((low + high) / 2).quantize(unit, rounding=ROUND_DOWN)
            if middle <= low:
                break
            try:
                quote = await self._quote(state, middle)
            except (InsufficientLiquidityError, NoRouteError):
                high = middle
                continue
            if quote.plan.amount_out >= limit_out(state, middle):
                best, low = (quote, middle), middle
            else:
                high = middle
        if best is None or best[1] < state.remaining * MIN_PARTIAL_FILL:
            return None
        return best

    async def _confirm(self, state: OrderState) -> OrderState:
        tx = transaction_for(state)
        if state.launch is not None and self.launches is not None and tx.wire is not None:
            # Never before the open (the program refuses it, 6000): the launch's one sender
            # sends it for the first open block, in submission order; the re-send below finds
            # it queued or landed (a signature lands once).
            key = (state.created_at, str(state.order_id))
            await self.launches.send_at_open(state.launch, key, tx.wire)
        try:
            try:
                receipt = await self.chain.send_and_confirm(tx, state.attempts)
            except TransientChainError as exc:
                # A lost confirmation may hide a landed swap: ask the chain before retrying.
                landed = await self.chain.receipt(tx)
                if landed is None:
                    code = FailureCode(exc.code)
                    return await self._retry_or_fail(state, state.attempts, code, str(exc))
                receipt = landed
        except RetryableLandedFailure as exc:
            # It landed (failed), so it can never land again: a new attempt is safe.
            code = FailureCode(exc.code)
            return await self._retry_or_fail(state, state.attempts, code, str(exc))
        if receipt.status == "failed":
            code = _failure_code(receipt.error_code)
            return await self._fail(
                state, code, receipt.error or code.value, state.attempts, receipt.signature
            )
        filled = from_base_units(state.token_in, receipt.amount_in)
        if state.min_price is not None and filled < state.remaining:
            # A part at the limit or better; the rest rests (the trigger engine re-arms it).
            return await self.emit(
                state,
                events.OrderPartiallyFilled(
                    tx_hash=receipt.signature,
                    amount_in=filled,
                    amount_out=from_base_units(state.token_out, receipt.amount_out),
                    remaining=state.remaining - filled,
                    fee=from_base_units(state.token_in, receipt.fee),
                ),
            )
        done = completed(state, receipt)
        if state.auto_sell is not None and self.submit is not None:
            # Before the completion: a router taking over after a crash between the two writes
            # the same submission again (same id and sequence), which every reader drops.
            await self.submit(auto_sell_submission(state, done, self.clock()))
        return await self.emit(state, done)

    async def _retry_or_fail(
        self, state: OrderState, attempt: int, code: FailureCode, error: str
    ) -> OrderState:
        delays = self.policy.retry_delays
        if attempt > len(delays):
            return await self._fail(
                state, code, f"{error} (gave up after {attempt} attempts)", attempt, retryable=True
            )
        delay = Decimal(str(delays[attempt - 1]))
        log.info(
            "order %s attempt %s failed (%s); retrying in %ss", state.order_id, attempt, code, delay
        )
        state = await self.emit(
            state,
            events.OrderRetrying(attempt=attempt, code=code, error=error, delay_seconds=delay),
        )
        return state

    async def _fail(
        self,
        state: OrderState,
        code: FailureCode,
        error: str,
        attempts: int,
        tx_hash: str | None = None,
        *,
        retryable: bool = False,
    ) -> OrderState:
        return await self.emit(
            state,
            events.OrderFailed(
                code=code, error=error, retryable=retryable, attempts=attempts, tx_hash=tx_hash
            ),
        )


def limit_out(state: OrderState, amount: Decimal) -> Decimal:
    """amount x limit price in token_out, rounded up to its base unit: a limit fill's min out."""
    assert state.min_price is not None
    exact = amount * state.min_price
    unit = Decimal(1).scaleb(-get_token(state.token_out).decimals)
    return exact.quantize(unit, rounding=ROUND_CEILING)


def sniper_floor(state: OrderState, amount: Decimal) -> Decimal:
    """The least tokenOut a sniper accepts for `amount`: amount / maxPrice, up to a base unit."""
    assert state.max_price is not None
    unit = Decimal(1).scaleb(-get_token(state.token_out).decimals)
    return (amount / state.max_price).quantize(unit, rounding=ROUND_CEILING)


def fill_amount(state: OrderState) -> Decimal:
    """What this execution swaps: the remaining amount, or for a limit the part its plan routes
    (what its first-hop legs spend)."""
    if state.min_price is None or state.plan is None:
        return state.remaining
    return sum(
        (leg.amount_in for leg in state.plan.legs if leg.token_in == state.token_in), Decimal(0)
    )


def fill_key(state: OrderState) -> uuid.UUID:
    """The id the chain lands this execution under (at most once): the order's own for its
    first fill (every market order), a derived one for each later fill of a limit."""
    if state.fills == 0:
        return state.order_id
    return uuid.uuid5(_FILL_NAMESPACE, f"{state.order_id}:{state.fills}")


_FILL_NAMESPACE = uuid.UUID("8f6c2a1e-53b4-4c3e-9d2f-1a7b6c5d4e3f")
# Partial fills: the bisection's steps (1/4096 of the remaining amount), and the smallest
# part worth a transaction.
PARTIAL_SEARCH_STEPS = 12
MIN_PARTIAL_FILL = Decimal("0.01")


def _failure_code(chain_code: str | None) -> FailureCode:
    """The chain's error code as a failure code (slippage and liquidity are the ones it reports)."""
    try:
        return FailureCode(chain_code or FailureCode.INVALID_TRANSACTION)
    except ValueError:
        return FailureCode.INVALID_TRANSACTION


def built(attempt: int, plan: RoutePlan) -> events.TransactionBuilt:
    """The event that follows a route: the transaction's guard is the plan's minimum out."""
    return events.TransactionBuilt(attempt=attempt, min_amount_out=plan.min_amount_out)


def transaction_for(state: OrderState) -> Transaction:
    """The swap transaction for the order's current plan, with what its submission recorded.

    Before submission it is unsigned (`sign` gives it its signature and bytes); after it, it
    carries the recorded signature and the signed bytes to re-send.
    """
    assert state.plan is not None
    assert state.min_amount_out is not None
    recorded = state.status is OrderStatus.SUBMITTED and state.signed_transaction is not None
    instructions = tuple(
        SwapInstruction(
            venue=Venue(leg.venue),
            token_in=leg.token_in,
            token_out=leg.token_out,
            amount_in=to_base_units(leg.token_in, leg.amount_in),
            hop=0 if leg.token_in == state.token_in else 1,
            amount_out=to_base_units(leg.token_out, leg.amount_out),
            fee=to_base_units(leg.token_in, leg.fee),
        )
        for leg in state.plan.legs
    )
    key = fill_key(state)
    return Transaction(
        # The signature the order's TransactionSubmitted recorded; unsigned before that. A
        # partial fill's key (not the order id) goes in the memo: each fill its own bytes.
        signature=(state.tx_hash or "") if state.status is OrderStatus.SUBMITTED else "",
        order_id=key,
        token_in=state.token_in,
        token_out=state.token_out,
        amount_in=to_base_units(state.token_in, fill_amount(state)),
        min_amount_out=to_base_units(state.token_out, state.min_amount_out),
        instructions=instructions,
        compute_unit_price=sniper_compute_unit_price(
            None if state.launch is None else state.launch.rank
        ),
        wire=b64decode(state.signed_transaction) if recorded and state.signed_transaction else None,
        blockhash=state.blockhash if recorded else None,
        last_valid_block_height=state.last_valid_block_height if recorded else None,
    )


def auto_sell_id(sniper_id: uuid.UUID) -> uuid.UUID:
    """The id of a sniper's autoSell OCO: derived, so it is one order however often written."""
    return uuid.uuid5(_AUTO_SELL_IDS, f"autosell:{sniper_id}")


def auto_sell_submission(state: OrderState, done: events.OrderCompleted, now: datetime) -> Envelope:
    """A sniper's autoSell: an OCO selling what it bought, linked by its clientOrderId
    (`autosell:<sniper id>`) and an id derived from the sniper's, so writing it twice is one
    order. Prices are tokenIn per tokenOut of the buy (what the OCO sells for), the take-profit
    `takeProfitPct` above the fill and the stop-loss `stopLossPct` below it."""
    assert state.auto_sell is not None
    fill = done.amount_in / done.amount_out  # tokenIn paid per tokenOut
    step = Decimal("1e-18")
    take = (fill * (1 + state.auto_sell.take_profit_pct / 100)).quantize(step, ROUND_CEILING)
    stop = (fill * (1 - state.auto_sell.stop_loss_pct / 100)).quantize(step, ROUND_DOWN)
    link = f"autosell:{state.order_id}"
    order_id = auto_sell_id(state.order_id)
    return Envelope.new(
        order_id=order_id,
        sequence=1,
        producer="router",
        prev_hash=genesis_hash(order_id),
        payload=events.OrderSubmitted(
            token_in=state.token_out,
            token_out=state.token_in,
            amount=done.amount_out,
            slippage=state.slippage,
            client_order_id=link,
            owner=state.owner,
            order_type=events.OrderType.OCO,
            take_profit_price=take,
            stop_loss_price=max(stop, step),
            expires_at=now + AUTO_SELL_EXPIRY,
        ),
        occurred_at=now,
    )


def completed(state: OrderState, receipt: Receipt) -> events.OrderCompleted:
    """The fill as the chain reports it (which may be an earlier landing of the same order),
    with an earlier partial fills' amounts and fees added."""
    amount_in = state.filled_amount + from_base_units(state.token_in, receipt.amount_in)
    amount_out = (state.amount_out or Decimal(0)) + from_base_units(
        state.token_out, receipt.amount_out
    )
    return events.OrderCompleted(
        tx_hash=receipt.signature,
        selected_dex="+".join(receipt.venues),
        amount_in=amount_in,
        amount_out=amount_out,
        executed_price=(amount_out / amount_in).quantize(Decimal("1e-12")),
        fee=(state.fee or Decimal(0)) + from_base_units(state.token_in, receipt.fee),
    )
