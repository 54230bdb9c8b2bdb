"""Armed snipers in the trigger core: each rug check failing and passing, arming before and
after the launch, an open pool at arrival (onlyAtLaunch or not), many snipers of one launch in
submission order, expiry and cancel while armed, and the log deciding a lost race."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from schemas import codec
from schemas.chain import PoolCreated, PoolOpened, TokenAuthorities
from schemas.envelope import Envelope, genesis_hash, record_hash
from schemas.events import (
    OrderCancelled,
    OrderEvent,
    OrderExpired,
    OrderFailed,
    OrderStatus,
    OrderSubmitted,
    OrderTriggered,
    OrderType,
    SniperChecks,
)
from services.domain.lifecycle import TRANSITIONS
from services.domain.order import OrderState, evolve
from services.triggers.core import TriggerCore

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
MINT = "5p6JsgtdboVhFjUBXjQszJ6dwk8XHwZkYVVJYKj9c5k4"
POOL = "6S6AbdKrP94iu3M51eebDhTKSiVXMRxjZ7ftxojEMgm8"
LAUNCHER = "EyKdPrXrducgtvRMMNYb6r1tiL9j8563kKgstU5pg7nn"
SOL_MINT = "So11111111111111111111111111111111111111112"


def authorities(mint: str | None = None, freeze: str | None = None) -> TokenAuthorities:
    return TokenAuthorities(
        symbol="MEME", mint=MINT, decimals=6, supply=10**15, mint_authority=mint,
        freeze_authority=freeze, slot=3, at=T0,
    )  # fmt: skip


def created(liquidity: str = "200", lp_supply: int | None = 0) -> PoolCreated:
    return PoolCreated(
        symbol="MEME", quote="SOL", venue="RAYDIUM", pool=POOL, mint=MINT, quote_mint=SOL_MINT,
        decimals=6, open_time=1_750_000_030, token_amount=Decimal(10**9),
        quote_liquidity=Decimal(liquidity), lp_mint=POOL if lp_supply is not None else None,
        lp_supply=lp_supply, slot=3, at=T0, signatures=("sig",),
    )  # fmt: skip


OPENED = PoolOpened(
    symbol="MEME", quote="SOL", venue="RAYDIUM", pool=POOL, open_time=1_750_000_030, slot=80, at=T0
)


def sniper(
    checks: SniperChecks | None = None,
    *,
    only_at_launch: bool = False,
    expires: datetime | None = None,
) -> OrderSubmitted:
    return OrderSubmitted(
        token_in="SOL",
        token_out="MEME",
        amount=Decimal(2),
        slippage=Decimal("0.15"),
        order_type=OrderType.SNIPER,
        max_price=Decimal("0.000001"),
        checks=checks or SniperChecks(),
        only_at_launch=only_at_launch,
        expires_at=expires or T0 + timedelta(days=1),
        priority="high",
    )


class Orders:
    """Several orders' logs as the core reads them, each with its hash chain."""

    def __init__(self, core: TriggerCore) -> None:
        self.core = core
        self.values: dict[uuid.UUID, list[bytes]] = {}

    def write(self, order_id: uuid.UUID, event: OrderEvent, *, at: datetime = T0) -> list[Envelope]:
        values = self.values.setdefault(order_id, [])
        envelope = Envelope.new(
            order_id=order_id,
            sequence=len(values) + 1,
            producer="test",
            prev_hash=record_hash(values[-1]) if values else genesis_hash(order_id),
            payload=event,
            occurred_at=at,
        )
        return self.append(envelope)

    def append(self, envelope: Envelope) -> list[Envelope]:
        value = codec.encode(envelope)
        values = self.values.setdefault(envelope.order_id, [])
        if envelope.sequence == len(values) + 1:
            values.append(value)
        return self.core.apply(codec.decode(value), record_hash(value), T0)

    def state(self, order_id: uuid.UUID) -> OrderState:
        state = None
        for value in self.values[order_id]:
            state = evolve(state, codec.decode(value), record_hash(value))
        assert state is not None
        return state


def armed(core: TriggerCore, submitted: OrderSubmitted) -> tuple[Orders, uuid.UUID]:
    orders = Orders(core)
    order_id = uuid.uuid4()
    assert orders.write(order_id, submitted) == []  # nothing launched: it rests armed
    return orders, order_id


def test_armed_before_the_launch_fires_on_pool_created_with_a_launch_leg() -> None:
    core = TriggerCore()
    orders, order_id = armed(core, sniper())
    assert core.on_chain_event(authorities(), T0) == []  # no pool yet: still armed
    (proposal,) = core.on_chain_event(created(), T0)
    assert proposal.order_id == order_id
    assert proposal.sequence == 2
    event = proposal.payload
    assert isinstance(event, OrderTriggered)
    assert (event.leg, event.pair, event.level) == ("launch", "MEME-SOL", Decimal("0.000001"))
    orders.append(proposal)
    assert orders.state(order_id).status.value == "triggered"
    assert core.on_chain_event(OPENED, T0) == []  # proposed once only


@pytest.mark.parametrize(
    ("checks", "facts", "code", "seen"),
    [
        (SniperChecks(), (authorities(mint=LAUNCHER), created()), "RUG_CHECK_MINT_AUTHORITY",
         LAUNCHER),
        (SniperChecks(), (authorities(freeze=LAUNCHER), created()),
         "RUG_CHECK_FREEZE_AUTHORITY", LAUNCHER),
        (SniperChecks(lp_burned=True), (authorities(), created(lp_supply=5)),
         "RUG_CHECK_LP_NOT_BURNED", "5 LP base units held"),
        (SniperChecks(min_liquidity=Decimal(500)), (authorities(), created("200")),
         "RUG_CHECK_LIQUIDITY", "saw 200"),
    ],
)  # fmt: skip
def test_each_failing_check_ends_the_sniper_failed_with_its_code_and_what_it_saw(
    checks: SniperChecks, facts: tuple[TokenAuthorities, PoolCreated], code: str, seen: str
) -> None:
    core = TriggerCore()
    orders, order_id = armed(core, sniper(checks))
    core.on_chain_event(facts[0], T0)
    (proposal,) = core.on_chain_event(facts[1], T0)
    event = proposal.payload
    assert isinstance(event, OrderFailed)
    assert event.code.value == code
    assert seen in event.error
    assert (event.retryable, event.attempts) == (False, 0)
    orders.append(proposal)
    state = orders.state(order_id)
    assert (state.status.value, state.error_code) == ("failed", code)


@pytest.mark.parametrize(
    ("checks", "facts"),
    [
        (SniperChecks(mint_renounced=False), (authorities(mint=LAUNCHER), created())),
        (SniperChecks(freeze_renounced=False), (authorities(freeze=LAUNCHER), created())),
        (SniperChecks(lp_burned=True), (authorities(), created(lp_supply=0))),
        (SniperChecks(min_liquidity=Decimal(200)), (authorities(), created("200"))),
    ],
)
def test_each_check_passes_when_the_launch_meets_it(
    checks: SniperChecks, facts: tuple[TokenAuthorities, PoolCreated]
) -> None:
    core = TriggerCore()
    armed(core, sniper(checks))
    core.on_chain_event(facts[0], T0)
    (proposal,) = core.on_chain_event(facts[1], T0)
    assert isinstance(proposal.payload, OrderTriggered)


def test_armed_after_the_launch_decides_on_arrival() -> None:
    core = TriggerCore()
    for event in (authorities(), created()):
        core.on_chain_event(event, T0)
    orders = Orders(core)
    (proposal,) = orders.write(uuid.uuid4(), sniper())
    assert isinstance(proposal.payload, OrderTriggered)
    (rugged,) = orders.write(
        uuid.uuid4(), sniper(SniperChecks(lp_burned=True, min_liquidity=Decimal(1000)))
    )
    assert isinstance(rugged.payload, OrderFailed)
    assert rugged.payload.code.value == "RUG_CHECK_LIQUIDITY"  # the first failing check's code


def test_an_open_pool_at_arrival_buys_at_once_unless_only_at_launch() -> None:
    core = TriggerCore()
    for event in (authorities(), created(), OPENED):
        core.on_chain_event(event, T0)
    orders = Orders(core)
    (buy,) = orders.write(uuid.uuid4(), sniper())
    assert isinstance(buy.payload, OrderTriggered)
    assert buy.payload.slot == 80
    (late,) = orders.write(uuid.uuid4(), sniper(only_at_launch=True))
    assert isinstance(late.payload, OrderFailed)
    assert late.payload.code.value == "POOL_ALREADY_OPEN"


def test_an_only_at_launch_sniper_armed_before_the_launch_fires() -> None:
    core = TriggerCore()
    armed(core, sniper(only_at_launch=True))
    core.on_chain_event(authorities(), T0)
    (proposal,) = core.on_chain_event(created(), T0)
    assert isinstance(proposal.payload, OrderTriggered)


def test_many_snipers_of_one_launch_are_proposed_in_submission_order() -> None:
    core = TriggerCore()
    orders = Orders(core)
    ids = [uuid.uuid4() for _ in range(50)]
    # Folded out of submission order (they live in different partitions of the log).
    for i in reversed(range(50)):
        orders.write(ids[i], sniper(), at=T0 + timedelta(milliseconds=i))
    core.on_chain_event(authorities(), T0)
    proposals = core.on_chain_event(created(), T0)
    assert [p.order_id for p in proposals] == ids


def launch_rank(proposal: Envelope) -> int | None:
    event = proposal.payload
    assert isinstance(event, OrderTriggered)
    assert event.launch is not None
    return event.launch.rank


def test_each_sniper_is_ranked_in_submission_order_and_a_late_one_after_them() -> None:
    """The rank sets the sniper's priority fee, which orders the block whoever sends it."""
    core = TriggerCore()
    orders = Orders(core)
    ids = [uuid.uuid4() for _ in range(5)]
    for i in reversed(range(5)):
        orders.write(ids[i], sniper(), at=T0 + timedelta(milliseconds=i))
    core.on_chain_event(authorities(), T0)
    proposals = core.on_chain_event(created(), T0)
    assert [(p.order_id, launch_rank(p)) for p in proposals] == list(
        zip(ids, range(5), strict=True)
    )
    for proposal in proposals:
        orders.append(proposal)  # the log takes them: the ranks stay taken
    (late,) = orders.write(uuid.uuid4(), sniper())
    assert launch_rank(late) == 5


def test_a_restarted_engine_ranks_after_the_snipers_fired_before_its_start() -> None:
    """Ranks are not reused after a restart: the triggered snipers it loads hold theirs."""
    first = TriggerCore()
    orders = Orders(first)
    ids = [uuid.uuid4() for _ in range(3)]
    for i, order_id in enumerate(ids):
        orders.write(order_id, sniper(), at=T0 + timedelta(milliseconds=i))
    first.on_chain_event(authorities(), T0)
    for proposal in first.on_chain_event(created(), T0):
        orders.append(proposal)
    restarted = TriggerCore()
    for order_id in ids:
        restarted.load(orders.state(order_id))  # triggered: not final, so recovered
    for event in (authorities(), created()):
        restarted.on_chain_event(event, T0, propose=False)
    orders.core = restarted
    (late,) = orders.write(uuid.uuid4(), sniper())
    assert launch_rank(late) == 3


def test_a_cancelled_or_expired_sniper_is_not_proposed_and_expiry_works_while_armed() -> None:
    core = TriggerCore()
    orders, cancelled = armed(core, sniper())
    orders.write(cancelled, OrderCancelled(reason="changed my mind"))
    expiring = uuid.uuid4()
    orders.write(expiring, sniper(expires=T0 + timedelta(minutes=1)))
    (expiry,) = core.on_clock(T0 + timedelta(minutes=2))
    assert (expiry.order_id, type(expiry.payload)) == (expiring, OrderExpired)
    orders.append(expiry)
    core.on_chain_event(authorities(), T0)
    assert core.on_chain_event(created(), T0) == []


def test_a_cancel_first_on_the_log_beats_the_sniper_trigger() -> None:
    core = TriggerCore()
    orders, order_id = armed(core, sniper())
    core.on_chain_event(authorities(), T0)
    (trigger,) = core.on_chain_event(created(), T0)
    orders.write(order_id, OrderCancelled())  # took sequence 2 first
    assert orders.append(trigger) == []  # same sequence: a duplicate nobody folds
    assert orders.state(order_id).status.value == "cancelled"


def test_the_lifecycle_table_lets_an_armed_sniper_fail_from_open() -> None:
    assert TRANSITIONS[(OrderStatus.OPEN, OrderFailed)] is OrderStatus.FAILED
