"""One order's way from `pending` to `completed` or `failed`.

`next_step` is pure: from the order's folded state it says what to do next.
`OrderExecution` does it and appends the resulting event. Because every step
starts from the state the log describes, a router that restarts after a crash
resumes each order exactly where the log says it stands; and because the
transaction signature is the order's, a resent swap returns the first fill.
"""

from __future__ import annotations

import asyncio
import logging
from base64 import b64decode, b64encode
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from enum import Enum
from functools import partial

from schemas import events
from schemas.events import FailureCode, OrderStatus
from services.chain.client import ChainClient, TransientChainError, UnsignableTransaction
from services.chain.signatures import signature_for
from services.chain.transactions import Receipt, SwapInstruction, Transaction
from services.common.process import retry_while_down
from services.domain.order import OrderState
from services.domain.tokens import from_base_units, get_token, to_base_units
from services.pricing.ports import ChainUnreachable, VenueAdapter
from services.pricing.quote import VenuesUnavailable, quote_order
from services.pricing.routing import NoRouteError
from services.venues.pool import InsufficientLiquidityError, Venue

log = logging.getLogger(__name__)

Emit = Callable[[OrderState, events.OrderEvent], Awaitable[OrderState]]


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
    chain_seed: int


class OrderExecution:
    """Drives orders through their lifecycle with the venues and the chain as ports."""

    def __init__(
        self,
        policy: ExecutionPolicy,
        venues: Sequence[VenueAdapter],
        chain: ChainClient,
        emit: Emit,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.policy = policy
        self.venues = venues
        self.chain = chain
        self.emit = emit
        self.clock = clock

    async def run(self, state: OrderState) -> OrderState:
        """Take the order to a final state from wherever it stands.

        While the chain is unreachable the order waits and its step is done again:
        each step is idempotent (reads, or a resend under the order's signature).
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
        if step is Step.BUILD:
            return await self.emit(
                state,
                events.TransactionBuilt(
                    attempt=state.attempts, min_amount_out=state.plan.min_amount_out
                ),
            )
        if step is Step.SUBMIT:
            if self._expired(state):
                return await self._route(state, state.attempts)  # re-quote, same attempt
            # Signed now and recorded before it is sent: whoever confirms it (this router, or
            # one taking over after a crash) re-sends exactly these bytes.
            try:
                signed = await self.chain.sign(transaction_for(state, self.policy.chain_seed))
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

    async def _route(self, state: OrderState, attempt: int) -> OrderState:
        try:
            quote = await quote_order(
                self.venues,
                state.token_in,
                state.token_out,
                state.amount,
                state.slippage,
                split_threshold_bps=self.policy.split_threshold_bps,
            )
        except VenuesUnavailable as exc:
            return await self._retry_or_fail(
                state, attempt, FailureCode.VENUE_UNAVAILABLE, str(exc)
            )
        except NoRouteError as exc:
            return await self._fail(state, FailureCode.NO_ROUTE, str(exc), attempt)
        except InsufficientLiquidityError as exc:
            if state.min_price is not None:  # a limit waits for liquidity rather than failing
                return await self.emit(state, events.OrderOpened(reason=str(exc)))
            return await self._fail(state, FailureCode.INSUFFICIENT_LIQUIDITY, str(exc), attempt)
        plan, reason = quote.plan, quote.reason
        floor = limit_min_out(state)
        if floor is not None:
            if plan.amount_out < floor:
                # The mid crossed, the precise quote did not: not a failure, the order rests.
                return await self.emit(
                    state,
                    events.OrderOpened(
                        reason=f"the best route gives {plan.amount_out} {state.token_out},"
                        f" below the limit's {floor}",
                        best_amount_out=plan.amount_out,
                    ),
                )
            # The limit is the transaction's guard: it fills at the limit or better, or not.
            plan = plan.model_copy(update={"min_amount_out": floor})
            reason = f"{reason}; min out {floor} = amount x limit {state.min_price}"
        return await self.emit(
            state,
            events.OrderRouted(attempt=attempt, quotes=quote.quotes, plan=plan, reason=reason),
        )

    async def _confirm(self, state: OrderState) -> OrderState:
        tx = transaction_for(state, self.policy.chain_seed)
        try:
            receipt = await self.chain.send_and_confirm(tx, state.attempts)
        except TransientChainError as exc:
            # A lost confirmation may hide a landed swap: ask the chain before retrying.
            landed = await self.chain.receipt(tx)
            if landed is None:
                code = FailureCode(exc.code)
                return await self._retry_or_fail(state, state.attempts, code, str(exc))
            receipt = landed
        if receipt.status == "failed":
            code = _failure_code(receipt.error_code)
            return await self._fail(
                state, code, receipt.error or code.value, state.attempts, receipt.signature
            )
        return await self.emit(state, completed(state, receipt))

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


def limit_min_out(state: OrderState) -> Decimal | None:
    """amount x limit price in token_out, rounded up to its base unit: a limit order's min out."""
    if state.min_price is None:
        return None
    exact = state.remaining * state.min_price
    unit = Decimal(1).scaleb(-get_token(state.token_out).decimals)
    return exact.quantize(unit, rounding=ROUND_CEILING)


def _failure_code(chain_code: str | None) -> FailureCode:
    """The chain's error code as a failure code (slippage and liquidity are the ones it reports)."""
    try:
        return FailureCode(chain_code or FailureCode.INVALID_TRANSACTION)
    except ValueError:
        return FailureCode.INVALID_TRANSACTION


def transaction_for(state: OrderState, chain_seed: int) -> Transaction:
    """The swap transaction for the order's current plan, with what its submission recorded.

    Before submission it carries the simulated chain's signature (derived from the order); after
    it, the recorded signature and, on a Solana chain, the signed bytes to re-send.
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
    return Transaction(
        # The signature the order's TransactionSubmitted carries (base58 is not free to redo).
        signature=state.tx_hash or signature_for(state.order_id, chain_seed),
        order_id=state.order_id,
        token_in=state.token_in,
        token_out=state.token_out,
        amount_in=to_base_units(state.token_in, state.amount),
        min_amount_out=to_base_units(state.token_out, state.min_amount_out),
        instructions=instructions,
        wire=b64decode(state.signed_transaction) if recorded and state.signed_transaction else None,
        blockhash=state.blockhash if recorded else None,
        last_valid_block_height=state.last_valid_block_height if recorded else None,
    )


def completed(state: OrderState, receipt: Receipt) -> events.OrderCompleted:
    """The fill as the chain reports it (which may be an earlier landing of the same order)."""
    amount_in = from_base_units(state.token_in, receipt.amount_in)
    amount_out = from_base_units(state.token_out, receipt.amount_out)
    return events.OrderCompleted(
        tx_hash=receipt.signature,
        selected_dex="+".join(receipt.venues),
        amount_in=amount_in,
        amount_out=amount_out,
        executed_price=(amount_out / amount_in).quantize(Decimal("1e-12")),
        fee=from_base_units(state.token_in, receipt.fee),
    )
