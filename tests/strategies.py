"""Hypothesis strategies shared by the property tests: pools, amounts, seeds."""

from __future__ import annotations

import base64
from decimal import Decimal

from hypothesis import strategies as st

from services.venues.cpmm import CpmmPool
from services.venues.dlmm import DlmmPool, LiquidityShape
from services.venues.pool import Pool

seeds = st.integers(min_value=0, max_value=2**32)
fee_bps = st.sampled_from([1, 4, 25, 100])


@st.composite
def cpmm_pools(draw: st.DrawFn) -> CpmmPool:
    """A SOL/USDC constant-product pool with arbitrary (positive) reserves."""
    return CpmmPool(
        "SOL",
        "USDC",
        draw(st.integers(10**3, 10**16)),
        draw(st.integers(10**3, 10**14)),
        draw(fee_bps),
    )


@st.composite
def dlmm_pools(draw: st.DrawFn) -> DlmmPool:
    """A SOL/USDC DLMM pool of any shape, bin step, depth and fee settings."""
    return DlmmPool.from_mid(
        "SOL",
        "USDC",
        Decimal(draw(st.integers(1, 2_000))),
        Decimal(draw(st.integers(1_000, 10_000_000))),
        bin_step=draw(st.sampled_from([1, 5, 10, 25, 100])),
        shape=draw(st.sampled_from(list(LiquidityShape))),
        radius=draw(st.integers(2, 30)),
        base_factor=draw(st.sampled_from([5_000, 10_000, 20_000])),
        variable_fee_control=draw(st.sampled_from([0, 40_000, 500_000])),
    )


pools: st.SearchStrategy[Pool] = st.one_of(cpmm_pools(), dlmm_pools())
tokens_in = st.sampled_from(["SOL", "USDC"])
amounts = st.integers(min_value=1, max_value=10**13)


# --- Order events and envelopes -------------------------------------------------------
# Appended below the venue strategies (the file is shared append-only), hence the late imports.
import uuid  # noqa: E402
from datetime import UTC, datetime, timedelta, timezone  # noqa: E402

from schemas.envelope import Envelope  # noqa: E402
from schemas.events import (  # noqa: E402
    AutoSell,
    FailureCode,
    OrderAmended,
    OrderCancelled,
    OrderCompleted,
    OrderEvent,
    OrderExpired,
    OrderFailed,
    OrderOpened,
    OrderPartiallyFilled,
    OrderRetrying,
    OrderRouted,
    OrderStatus,
    OrderSubmitted,
    OrderTriggered,
    OrderType,
    RouteLeg,
    RoutePlan,
    SniperChecks,
    TransactionBuilt,
    TransactionSubmitted,
    VenueQuote,
)
from tests.builders import envelope_chain  # noqa: E402

token_symbols = st.from_regex(r"[A-Z0-9]{2,10}", fullmatch=True)
venue_names = st.sampled_from(["RAYDIUM", "METEORA"])
attempt_numbers = st.integers(min_value=1, max_value=10)
failure_codes = st.sampled_from(list(FailureCode))
short_text = st.text(max_size=40)
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
tx_hashes = st.text(_BASE58, min_size=80, max_size=90)
sha256_hex = st.text("0123456789abcdef", min_size=64, max_size=64)
# Fixed offsets only: the envelope normalises to UTC, which the round trip must survive.
_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)
aware_datetimes = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2100, 1, 1), timezones=_ZONES
)


def money(
    *, positive: bool = False, max_value: int = 10**12, places: int = 9
) -> st.SearchStrategy[Decimal]:
    """Whole-token amounts with up to `places` decimals, trailing zeros and exponents included."""
    low = Decimal(1).scaleb(-places) if positive else Decimal(0)
    return st.one_of(
        st.decimals(min_value=low, max_value=max_value, places=places),
        st.integers(min_value=1 if positive else 0, max_value=max_value).map(Decimal),
        st.integers(min_value=1 if positive else 0, max_value=10**6).map(
            lambda n: Decimal(n).scaleb(3)  # e.g. Decimal("5E+3"): an exponent on the wire
        ),
    )


def fractions() -> st.SearchStrategy[Decimal]:
    """A slippage or a route share: 0..1 inclusive."""
    return st.decimals(min_value=0, max_value=1, places=6)


def signed_decimals() -> st.SearchStrategy[Decimal]:
    """Price impacts and improvements: unbounded sign, finite."""
    return st.decimals(min_value=-(10**6), max_value=10**6, places=6)


prices = st.decimals(min_value=Decimal("0.000001"), max_value=10**6, places=6)
bps = st.integers(min_value=1, max_value=9999)


@st.composite
def order_submitted(draw: st.DrawFn, order_type: OrderType | None = None) -> OrderSubmitted:
    """Any submission: a market order, or any conditional type with the prices it needs."""
    kind = order_type or draw(st.sampled_from(list(OrderType)))
    fields: dict[str, object] = {}
    if kind in (OrderType.LIMIT, OrderType.TAKE_PROFIT):
        fields["limit_price"] = draw(prices)
    elif kind is OrderType.STOP:
        fields["trigger_price"] = draw(prices)
    elif kind is OrderType.OCO:
        fields["take_profit_price"] = draw(prices)
        fields["stop_loss_price"] = draw(prices)
    elif kind is OrderType.TRAILING_STOP:
        fields["trailing_bps"] = draw(bps)
    elif kind is OrderType.SNIPER:
        fields["max_price"] = draw(prices)
        fields["checks"] = SniperChecks(
            mint_renounced=draw(st.booleans()),
            freeze_renounced=draw(st.booleans()),
            lp_burned=draw(st.booleans()),
            min_liquidity=draw(st.none() | money(positive=True)),
        )
        fields["only_at_launch"] = draw(st.booleans())
        fields["auto_sell"] = draw(
            st.none()
            | st.builds(
                AutoSell,
                take_profit_pct=st.decimals(min_value=1, max_value=1000, places=2),
                stop_loss_pct=st.decimals(min_value=1, max_value=99, places=2),
            )
        )
    if kind in (OrderType.MARKET, OrderType.SNIPER):
        fields["priority"] = draw(st.sampled_from(["normal", "high"]))
    if kind.is_conditional:
        fields["expires_at"] = draw(st.none() | aware_datetimes)
        fields["allow_partial"] = draw(st.booleans())
    return OrderSubmitted(
        token_in=draw(token_symbols),
        token_out=draw(token_symbols),
        amount=draw(money(positive=True)),
        slippage=draw(fractions()),
        client_order_id=draw(st.none() | st.text(max_size=64)),
        owner=draw(st.none() | short_text),
        order_type=kind,
        **fields,
    )


@st.composite
def order_opened(draw: st.DrawFn) -> OrderOpened:
    return OrderOpened(reason=draw(short_text), best_amount_out=draw(st.none() | money()))


@st.composite
def order_triggered(draw: st.DrawFn) -> OrderTriggered:
    return OrderTriggered(
        leg=draw(st.sampled_from(["limit", "stop", "takeProfit", "stopLoss", "trailingStop"])),
        pair=draw(st.sampled_from(["SOL-USDC", "RAY-USDC"])),
        slot=draw(st.integers(min_value=0, max_value=2**40)),
        price=draw(prices),
        level=draw(prices),
    )


@st.composite
def order_cancelled(draw: st.DrawFn) -> OrderCancelled:
    return OrderCancelled(reason=draw(st.text(max_size=40)), by=draw(st.none() | short_text))


@st.composite
def order_expired(draw: st.DrawFn) -> OrderExpired:
    return OrderExpired(expires_at=draw(aware_datetimes))


@st.composite
def order_amended(draw: st.DrawFn) -> OrderAmended:
    return OrderAmended(
        limit_price=draw(st.none() | prices),
        trigger_price=draw(st.none() | prices),
        expires_at=draw(st.none() | aware_datetimes),
    )


@st.composite
def order_partially_filled(draw: st.DrawFn) -> OrderPartiallyFilled:
    return OrderPartiallyFilled(
        tx_hash=draw(tx_hashes),
        amount_in=draw(money(positive=True)),
        amount_out=draw(money()),
        remaining=draw(money(positive=True)),
    )


@st.composite
def venue_quotes(draw: st.DrawFn) -> VenueQuote:
    return VenueQuote(
        venue=draw(venue_names),
        amount_out=draw(money()),
        fee=draw(money()),
        price_impact=draw(signed_decimals()),
        error=draw(st.none() | short_text),
    )


@st.composite
def route_legs(draw: st.DrawFn) -> RouteLeg:
    return RouteLeg(
        venue=draw(venue_names),
        token_in=draw(token_symbols),
        token_out=draw(token_symbols),
        amount_in=draw(money()),
        amount_out=draw(money()),
        fee=draw(money()),
        share=draw(fractions()),
    )


@st.composite
def route_plans(draw: st.DrawFn) -> RoutePlan:
    return RoutePlan(
        kind=draw(st.sampled_from(["single", "split", "multihop"])),
        legs=tuple(draw(st.lists(route_legs(), min_size=1, max_size=3))),
        amount_out=draw(money()),
        min_amount_out=draw(money()),
        price_impact=draw(signed_decimals()),
        split_improvement_bps=draw(signed_decimals()),
        market_slot=draw(st.integers(min_value=0, max_value=2**63 - 1)),
        quoted_at=draw(st.floats(min_value=0, max_value=4e9, allow_nan=False)),
    )


@st.composite
def order_routed(draw: st.DrawFn) -> OrderRouted:
    return OrderRouted(
        attempt=draw(attempt_numbers),
        quotes=tuple(draw(st.lists(venue_quotes(), max_size=2))),
        plan=draw(route_plans()),
        reason=draw(short_text),
    )


@st.composite
def transaction_built(draw: st.DrawFn) -> TransactionBuilt:
    return TransactionBuilt(attempt=draw(attempt_numbers), min_amount_out=draw(money()))


@st.composite
def transaction_submitted(draw: st.DrawFn) -> TransactionSubmitted:
    if not draw(st.booleans()):  # the simulated chain: a signature only
        return TransactionSubmitted(attempt=draw(attempt_numbers), tx_hash=draw(tx_hashes))
    return TransactionSubmitted(  # a Solana chain: the signed bytes and their blockhash too
        attempt=draw(attempt_numbers),
        tx_hash=draw(tx_hashes),
        transaction=base64.b64encode(draw(st.binary(min_size=1, max_size=1232))).decode(),
        blockhash=draw(tx_hashes)[:44],
        last_valid_block_height=draw(st.integers(min_value=0, max_value=2**63 - 1)),
    )


@st.composite
def order_retrying(draw: st.DrawFn) -> OrderRetrying:
    return OrderRetrying(
        attempt=draw(attempt_numbers),
        code=draw(failure_codes),
        error=draw(short_text),
        delay_seconds=draw(st.decimals(min_value=0, max_value=3600, places=3)),
    )


@st.composite
def order_completed(draw: st.DrawFn) -> OrderCompleted:
    return OrderCompleted(
        tx_hash=draw(tx_hashes),
        selected_dex=draw(st.sampled_from(["RAYDIUM", "METEORA", "METEORA+RAYDIUM"])),
        amount_in=draw(money(positive=True)),
        amount_out=draw(money()),
        executed_price=draw(money()),
        fee=draw(money()),
    )


@st.composite
def order_failed(draw: st.DrawFn) -> OrderFailed:
    return OrderFailed(
        code=draw(failure_codes),
        error=draw(short_text),
        retryable=draw(st.booleans()),
        attempts=draw(st.integers(min_value=0, max_value=10)),
        tx_hash=draw(st.none() | tx_hashes),
    )


# One strategy per event type that may follow a submission.
LATER_EVENTS: dict[type[OrderEvent], st.SearchStrategy[OrderEvent]] = {
    OrderOpened: order_opened(),
    OrderTriggered: order_triggered(),
    OrderCancelled: order_cancelled(),
    OrderExpired: order_expired(),
    OrderAmended: order_amended(),
    OrderPartiallyFilled: order_partially_filled(),
    OrderRouted: order_routed(),
    TransactionBuilt: transaction_built(),
    TransactionSubmitted: transaction_submitted(),
    OrderRetrying: order_retrying(),
    OrderCompleted: order_completed(),
    OrderFailed: order_failed(),
}
later_events: st.SearchStrategy[OrderEvent] = st.one_of(*LATER_EVENTS.values())
order_events: st.SearchStrategy[OrderEvent] = st.one_of(order_submitted(), later_events)


@st.composite
def lifecycle_walks(draw: st.DrawFn, max_events: int = 8) -> list[OrderEvent]:
    """A submission, then events the lifecycle table allows, each after the status before it."""
    from services.domain.lifecycle import TRANSITIONS

    first = draw(order_submitted())
    walk: list[OrderEvent] = [first]
    status: OrderStatus = first.resulting_status()
    for _ in range(draw(st.integers(0, max_events - 1))):
        allowed = sorted(
            ((event, after) for (before, event), after in TRANSITIONS.items() if before is status),
            key=lambda pair: pair[0].TYPE,
        )
        if not allowed:
            break
        event_type, status = draw(st.sampled_from(allowed))
        walk.append(draw(LATER_EVENTS[event_type]))
    return walk


@st.composite
def envelopes(draw: st.DrawFn, payloads: st.SearchStrategy[OrderEvent] = order_events) -> Envelope:
    """Any valid envelope around any valid payload."""
    return Envelope.new(
        order_id=draw(st.uuids()),
        sequence=draw(st.integers(min_value=1, max_value=2**31 - 1)),
        producer=draw(st.text(min_size=1, max_size=64)),
        prev_hash=draw(sha256_hex),
        payload=draw(payloads),
        occurred_at=draw(aware_datetimes),
    )


@st.composite
def order_histories(
    draw: st.DrawFn, order_id: uuid.UUID | None = None, max_events: int = 8
) -> list[Envelope]:
    """One order's events 1..n as producers write them: a walk of the lifecycle, chained."""
    oid = order_id or draw(st.uuids())
    payloads = draw(lifecycle_walks(max_events))
    return envelope_chain(oid, payloads, start=draw(aware_datetimes), producer="test-router")
