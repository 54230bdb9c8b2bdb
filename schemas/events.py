"""One immutable model per thing that happened to an order, in the past tense.

Each event moves the order to one status word: the original system's (pending,
routing, building, submitted, retrying, completed, failed) and, for conditional
orders (issue 17), open, triggered, partiallyFilled, cancelled and expired. Which
event may follow which status is one table, `services/domain/lifecycle.py`.
Money is `Decimal` in whole tokens; it travels as a JSON string so that no
float ever touches it.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)


def _not_a_float(value: object) -> object:
    """Money travels as a string; a JSON number has already lost digits by the time we see it."""
    if isinstance(value, float):
        raise ValueError("decimal values must be strings, not JSON numbers")
    return value


# The constraints come before `Exact` so pydantic checks them in its compiled core;
# placed after a Python validator they would each run as Python code too.
Exact = BeforeValidator(_not_a_float)


def _money(pattern: str, bounds: str) -> WithJsonSchema:
    """The exported schema of a Decimal field: a decimal string, with its bounds said.

    Serialized Decimals are strings, so JSON Schema's minimum/maximum cannot express
    the bounds pydantic checks; a pattern and a description carry them instead.
    """
    return WithJsonSchema(
        {"type": "string", "pattern": pattern, "description": f"exact decimal string, {bounds}"},
        mode="serialization",
    )


_DIGITS = r"\d+(\.\d+)?([eE][+-]?\d+)?$"  # str(Decimal): "10", "0.01", "0E-9"
Amount = Annotated[Decimal, Field(ge=0, allow_inf_nan=False), Exact, _money("^" + _DIGITS, ">= 0")]
PositiveAmount = Annotated[
    Decimal,
    Field(gt=0, allow_inf_nan=False),
    Exact,
    _money("^(?=[0-9.]*[1-9])" + _DIGITS, "> 0"),
]
Fraction = Annotated[
    Decimal,
    Field(ge=0, le=1, allow_inf_nan=False),
    Exact,
    _money("^" + _DIGITS, "between 0 and 1"),
]
Ratio = Annotated[
    Decimal, Field(allow_inf_nan=False), Exact, _money("^-?" + _DIGITS, "of any sign")
]
TokenSymbol = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,10}$")]
VenueName = Literal["RAYDIUM", "METEORA"]


class OrderStatus(StrEnum):
    """The status words clients see, kept from the original system."""

    PENDING = "pending"
    ROUTING = "routing"
    BUILDING = "building"
    SUBMITTED = "submitted"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    # Conditional orders (issue 17).
    OPEN = "open"  # resting: waits for its price (or its expiry)
    TRIGGERED = "triggered"  # its price was crossed: the router takes it like a pending order
    PARTIALLY_FILLED = "partiallyFilled"  # part filled at the limit, the rest rests
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return self in _FINAL

    @property
    def is_resting(self) -> bool:
        """Waiting for the trigger engine, not for the router."""
        return self in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


_FINAL = frozenset(
    {OrderStatus.COMPLETED, OrderStatus.FAILED, OrderStatus.CANCELLED, OrderStatus.EXPIRED}
)


class OrderType(StrEnum):
    """What a submission asks for; camelCase on the wire, as the API's body says it."""

    MARKET = "market"
    LIMIT = "limit"  # fill at >= limit_price (tokenOut per tokenIn), fees and impact included
    STOP = "stop"  # when the price falls to trigger_price: a market order
    TAKE_PROFIT = "takeProfit"  # a limit above the market: fill at >= limit_price
    OCO = "oco"  # take_profit_price (a limit) or stop_loss_price (a stop), the first cancels both
    TRAILING_STOP = "trailingStop"  # a stop trailing_bps below the best price seen since opening
    SNIPER = "sniper"  # buys a launched token in the first slot its pool is open, rug-checked

    @property
    def is_conditional(self) -> bool:
        return self is not OrderType.MARKET


TriggerLeg = Literal["limit", "stop", "takeProfit", "stopLoss", "trailingStop", "launch"]
"""Which price of an order its trigger crossed (an OCO has two)."""


class FailureCode(StrEnum):
    """Why an attempt or an order failed; a client can act on each."""

    SLIPPAGE_EXCEEDED = "SLIPPAGE_EXCEEDED"
    QUOTE_EXPIRED = "QUOTE_EXPIRED"
    INSUFFICIENT_LIQUIDITY = "INSUFFICIENT_LIQUIDITY"
    NO_ROUTE = "NO_ROUTE"
    VENUE_UNAVAILABLE = "VENUE_UNAVAILABLE"
    VENUE_TIMEOUT = "VENUE_TIMEOUT"
    INVALID_TRANSACTION = "INVALID_TRANSACTION"
    POOL_NOT_OPEN = "POOL_NOT_OPEN"  # the program refuses swaps (CPMM 6000, DLMM 6042)
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"  # the engine's wallet lacks tokens or fee lamports
    # A sniper's rug checks (services/domain/rugcheck.py), one code per check.
    RUG_CHECK_MINT_AUTHORITY = "RUG_CHECK_MINT_AUTHORITY"
    RUG_CHECK_FREEZE_AUTHORITY = "RUG_CHECK_FREEZE_AUTHORITY"
    RUG_CHECK_LP_NOT_BURNED = "RUG_CHECK_LP_NOT_BURNED"
    RUG_CHECK_LIQUIDITY = "RUG_CHECK_LIQUIDITY"
    POOL_ALREADY_OPEN = "POOL_ALREADY_OPEN"  # onlyAtLaunch, and the pool was open on arrival
    DRY_RUN = "DRY_RUN"  # OEE_CHAIN_DRY_RUN: the transaction was simulated, never sent


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1
    STATUS: ClassVar[OrderStatus]

    def resulting_status(self) -> OrderStatus:
        """The status an order's event names (the lifecycle table decides what it becomes)."""
        return self.STATUS


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SniperChecks(_Frozen):
    """The rug checks a sniper asks for before it buys; a check not asked for passes."""

    mint_renounced: bool = True
    freeze_renounced: bool = True
    lp_burned: bool = False
    min_liquidity: Amount | None = None  # whole quote tokens in the pool


class AutoSell(_Frozen):
    """After a sniper's fill: an OCO selling what it bought, take-profit and stop-loss set in
    percent of the fill price (100 = sell at twice the price; 30 = sell 30 % below it)."""

    take_profit_pct: Annotated[Decimal, Field(gt=0, le=100_000, allow_inf_nan=False), Exact]
    stop_loss_pct: Annotated[Decimal, Field(gt=0, lt=100, allow_inf_nan=False), Exact]


Priority = Literal["normal", "high"]
"""The router's lane: high-priority orders are taken ahead of waiting normal ones."""


class OrderSubmitted(_Event):
    """A client's order, accepted once this is durably in the log.

    v2 (issue 17) adds the conditional fields; a v1 record reads as a market order. A market
    order is `pending` after it (the router takes it), a conditional one `open` (it rests
    until the trigger engine sees its price crossed, or its expiry passes). v3 (issue 18) adds
    the sniper's fields (max price, rug checks, onlyAtLaunch, autoSell) and the priority; a v2
    record reads with the defaults (normal priority, no sniper fields).
    """

    TYPE: ClassVar[str] = "OrderSubmitted"
    VERSION: ClassVar[int] = 3
    STATUS: ClassVar[OrderStatus] = OrderStatus.PENDING

    token_in: TokenSymbol
    token_out: TokenSymbol
    amount: PositiveAmount
    slippage: Fraction
    client_order_id: str | None = Field(default=None, max_length=64)
    owner: str | None = None
    order_type: OrderType = OrderType.MARKET
    limit_price: PositiveAmount | None = None  # limit, takeProfit
    trigger_price: PositiveAmount | None = None  # stop
    take_profit_price: PositiveAmount | None = None  # oco
    stop_loss_price: PositiveAmount | None = None  # oco
    trailing_bps: int | None = Field(default=None, ge=1, le=9999)  # trailingStop
    expires_at: AwareDatetime | None = None  # conditional orders only
    allow_partial: bool = True  # limit orders: fill what the limit allows, the rest rests
    # sniper: the most tokenIn it pays per tokenOut (min out = amount / max_price), its checks,
    # whether it buys only in the launch's first open slot, and the OCO opened on its fill.
    max_price: PositiveAmount | None = None
    checks: SniperChecks | None = None
    only_at_launch: bool = False
    auto_sell: AutoSell | None = None
    priority: Priority = "normal"

    @model_validator(mode="after")
    def _prices_of_its_type(self) -> OrderSubmitted:
        needed = CONDITIONAL_FIELDS[self.order_type]
        for name in ALL_CONDITIONAL_FIELDS:
            given = getattr(self, name) is not None
            if given != (name in needed):
                raise ValueError(
                    f"{name} is {'missing' if not given else 'not'} for a "
                    f"{self.order_type.value} order"
                )
        if not self.order_type.is_conditional and self.expires_at is not None:
            raise ValueError("a market order has no expiry")
        sniper = self.order_type is OrderType.SNIPER
        if not sniper and (self.checks or self.only_at_launch or self.auto_sell):
            raise ValueError("checks, onlyAtLaunch and autoSell are for sniper orders")
        if sniper and self.checks is None:
            raise ValueError("a sniper order carries its checks")
        if self.priority == "high" and self.order_type not in (OrderType.MARKET, OrderType.SNIPER):
            raise ValueError("only market and sniper orders take the high-priority lane")
        return self

    def resulting_status(self) -> OrderStatus:
        return OrderStatus.OPEN if self.order_type.is_conditional else OrderStatus.PENDING


CONDITIONAL_FIELDS: dict[OrderType, frozenset[str]] = {
    OrderType.MARKET: frozenset(),
    OrderType.LIMIT: frozenset({"limit_price"}),
    OrderType.TAKE_PROFIT: frozenset({"limit_price"}),
    OrderType.STOP: frozenset({"trigger_price"}),
    OrderType.OCO: frozenset({"take_profit_price", "stop_loss_price"}),
    OrderType.TRAILING_STOP: frozenset({"trailing_bps"}),
    OrderType.SNIPER: frozenset({"max_price"}),
}
"""The price fields each order type carries (and only those)."""

ALL_CONDITIONAL_FIELDS = (
    "limit_price", "trigger_price", "take_profit_price", "stop_loss_price", "trailing_bps",
    "max_price",
)  # fmt: skip


class VenueQuote(_Frozen):
    """What one venue offered for the whole amount, as seen when routing."""

    venue: VenueName
    amount_out: Amount
    fee: Amount
    price_impact: Ratio
    error: str | None = None


class RouteLeg(_Frozen):
    """One swap of a route plan: a venue, a hop, a share of the amount."""

    venue: VenueName
    token_in: TokenSymbol
    token_out: TokenSymbol
    amount_in: Amount
    amount_out: Amount
    fee: Amount
    share: Fraction


class RoutePlan(_Frozen):
    """The chosen execution, the same shape the quote endpoint returns."""

    kind: Literal["single", "split", "multihop"]
    legs: tuple[RouteLeg, ...]
    amount_out: Amount
    min_amount_out: Amount
    price_impact: Ratio
    split_improvement_bps: Ratio
    market_slot: int
    quoted_at: float = Field(allow_inf_nan=False)


class OrderRouted(_Event):
    """Both venues were quoted; the event keeps the quotes and why one route won."""

    TYPE: ClassVar[str] = "OrderRouted"
    STATUS: ClassVar[OrderStatus] = OrderStatus.ROUTING

    attempt: int = Field(ge=1)
    quotes: tuple[VenueQuote, ...]
    plan: RoutePlan
    reason: str


class TransactionBuilt(_Event):
    """The swap transaction is built with its slippage guard."""

    TYPE: ClassVar[str] = "TransactionBuilt"
    STATUS: ClassVar[OrderStatus] = OrderStatus.BUILDING

    attempt: int = Field(ge=1)
    min_amount_out: Amount


class TransactionSubmitted(_Event):
    """The transaction goes to the chain under this signature; written before it is sent.

    v2 adds what a Solana chain needs to re-send the very same transaction after a crash:
    the signed bytes (base64 wire format), the blockhash they carry and the last block height
    at which that blockhash is valid. v1 events, from the simulated chain that came before,
    read with them unset.
    """

    TYPE: ClassVar[str] = "TransactionSubmitted"
    VERSION: ClassVar[int] = 2
    STATUS: ClassVar[OrderStatus] = OrderStatus.SUBMITTED

    attempt: int = Field(ge=1)
    tx_hash: str = Field(min_length=80, max_length=90)
    transaction: str | None = Field(default=None, max_length=2048)  # base64, <= 1232 bytes
    blockhash: str | None = Field(default=None, min_length=32, max_length=44)
    last_valid_block_height: int | None = Field(default=None, ge=0)


class OrderRetrying(_Event):
    """An attempt failed for a reason a retry can help; the next one waits `delay_seconds`."""

    TYPE: ClassVar[str] = "OrderRetrying"
    STATUS: ClassVar[OrderStatus] = OrderStatus.RETRYING

    attempt: int = Field(ge=1)
    code: FailureCode
    error: str
    delay_seconds: Annotated[Decimal, Field(ge=0, le=3600, allow_inf_nan=False), Exact]


class OrderCompleted(_Event):
    """The swap confirmed: the fill."""

    TYPE: ClassVar[str] = "OrderCompleted"
    STATUS: ClassVar[OrderStatus] = OrderStatus.COMPLETED

    tx_hash: str
    selected_dex: str
    amount_in: PositiveAmount
    amount_out: Amount
    executed_price: Amount
    fee: Amount


class OrderFailed(_Event):
    """The order ended without a fill, with a reason the client can act on."""

    TYPE: ClassVar[str] = "OrderFailed"
    STATUS: ClassVar[OrderStatus] = OrderStatus.FAILED

    code: FailureCode
    error: str
    retryable: bool
    attempts: int = Field(ge=0)
    tx_hash: str | None = None


class OrderOpened(_Event):
    """A triggered limit order rests again: no route gave its limit price at that moment."""

    TYPE: ClassVar[str] = "OrderOpened"
    STATUS: ClassVar[OrderStatus] = OrderStatus.OPEN

    reason: str
    best_amount_out: Amount | None = None  # what the best route offered, for the record


class LaunchTarget(_Frozen):
    """The launched pool a sniper fired on, as the chain's events described it: what the router
    needs to know a token that is not one of the seeded market's."""

    symbol: TokenSymbol
    mint: str = Field(pattern=r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")
    decimals: int = Field(ge=0, le=9)
    quote: TokenSymbol
    venue: VenueName
    pool: str = Field(pattern=r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")
    open_time: int = Field(ge=0)  # unix seconds on the chain's clock
    # This sniper's place among its launch's snipers (0: submitted first), which sets its
    # priority fee so the node lands them in that order whichever router sends them (v3).
    rank: int | None = Field(default=None, ge=0)


class OrderTriggered(_Event):
    """The trigger engine saw the order's price crossed on this tick: the router takes it now.

    Proposed with the order's expected next sequence: if a cancel (or anything else) took
    that sequence first, this record is a duplicate every reader drops. v2 (issue 18): a
    sniper's trigger names the launch it fired on (`launch`); a v1 record has none. v3: the
    launch carries the sniper's `rank` in it; a v2 launch has none.
    """

    TYPE: ClassVar[str] = "OrderTriggered"
    VERSION: ClassVar[int] = 3
    STATUS: ClassVar[OrderStatus] = OrderStatus.TRIGGERED

    leg: TriggerLeg
    pair: str = Field(max_length=21)  # the tick's pair, e.g. "SOL-USDC"
    slot: int = Field(ge=0)
    price: PositiveAmount  # the tick's price, tokenOut per tokenIn of the order
    level: PositiveAmount  # the order's price the tick crossed
    launch: LaunchTarget | None = None


class OrderCancelled(_Event):
    """The owner cancelled the order while it rested."""

    TYPE: ClassVar[str] = "OrderCancelled"
    STATUS: ClassVar[OrderStatus] = OrderStatus.CANCELLED

    reason: str = Field(default="cancelled by the owner", max_length=200)
    by: str | None = None  # the key that asked


class OrderExpired(_Event):
    """The order's expiry passed while it rested (written late if the engine was down then)."""

    TYPE: ClassVar[str] = "OrderExpired"
    STATUS: ClassVar[OrderStatus] = OrderStatus.EXPIRED

    expires_at: AwareDatetime


class OrderAmended(_Event):
    """The owner changed a resting order's prices or expiry; fields left None keep their value."""

    TYPE: ClassVar[str] = "OrderAmended"
    STATUS: ClassVar[OrderStatus] = OrderStatus.OPEN

    limit_price: PositiveAmount | None = None
    trigger_price: PositiveAmount | None = None
    take_profit_price: PositiveAmount | None = None
    stop_loss_price: PositiveAmount | None = None
    trailing_bps: int | None = Field(default=None, ge=1, le=9999)
    expires_at: AwareDatetime | None = None
    by: str | None = None


class OrderPartiallyFilled(_Event):
    """Part of a limit order filled at its limit or better; `remaining` rests."""

    TYPE: ClassVar[str] = "OrderPartiallyFilled"
    STATUS: ClassVar[OrderStatus] = OrderStatus.PARTIALLY_FILLED

    tx_hash: str
    amount_in: PositiveAmount
    amount_out: Amount
    remaining: PositiveAmount
    fee: Amount = Decimal(0)


OrderEvent = (
    OrderSubmitted
    | OrderOpened
    | OrderTriggered
    | OrderCancelled
    | OrderExpired
    | OrderAmended
    | OrderPartiallyFilled
    | OrderRouted
    | TransactionBuilt
    | TransactionSubmitted
    | OrderRetrying
    | OrderCompleted
    | OrderFailed
)

EVENT_TYPES: dict[str, type[OrderEvent]] = {
    cls.TYPE: cls
    for cls in (
        OrderSubmitted,
        OrderOpened,
        OrderTriggered,
        OrderCancelled,
        OrderExpired,
        OrderAmended,
        OrderPartiallyFilled,
        OrderRouted,
        TransactionBuilt,
        TransactionSubmitted,
        OrderRetrying,
        OrderCompleted,
        OrderFailed,
    )
}
