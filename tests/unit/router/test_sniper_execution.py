"""The router's pure parts of a snipe: the maxPrice floor, and the autoSell OCO it writes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from schemas.envelope import Envelope, genesis_hash
from schemas.events import AutoSell, OrderCompleted, OrderSubmitted, OrderType, SniperChecks
from services.domain.order import OrderState, evolve
from services.domain.tokens import Token, register_launched
from services.router.execution import auto_sell_id, auto_sell_submission, sniper_floor

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
ORDER = uuid.UUID("00000000-0000-4000-8000-0000000000cc")
register_launched(Token("SNIPEX", 6, "5p6JsgtdboVhFjUBXjQszJ6dwk8XHwZkYVVJYKj9c5k4"))


def sniper(auto_sell: AutoSell | None = None) -> OrderState:
    event = OrderSubmitted(
        token_in="SOL", token_out="SNIPEX", amount=Decimal(2), slippage=Decimal("0.15"),
        order_type=OrderType.SNIPER, max_price=Decimal("0.0003"), checks=SniperChecks(),
        auto_sell=auto_sell, expires_at=T0 + timedelta(days=1), owner="key-1",
    )  # fmt: skip
    envelope = Envelope.new(
        order_id=ORDER, sequence=1, producer="test", prev_hash=genesis_hash(ORDER),
        payload=event, occurred_at=T0,
    )  # fmt: skip
    return evolve(None, envelope, "a" * 64)


def test_the_floor_is_amount_over_max_price_rounded_up_to_a_base_unit() -> None:
    assert sniper_floor(sniper(), Decimal(2)) == Decimal("6666.666667")


def test_auto_sell_is_an_oco_of_what_was_bought_at_the_fill_price_plus_and_minus() -> None:
    state = sniper(AutoSell(take_profit_pct=Decimal(100), stop_loss_pct=Decimal(30)))
    done = OrderCompleted(
        tx_hash="5" * 88, selected_dex="RAYDIUM", amount_in=Decimal(2),
        amount_out=Decimal(10_000), executed_price=Decimal(5000), fee=Decimal("0.005"),
    )  # fmt: skip
    envelope = auto_sell_submission(state, done, T0)
    assert envelope.order_id == auto_sell_id(ORDER)
    assert (envelope.sequence, envelope.prev_hash) == (1, genesis_hash(envelope.order_id))
    oco = envelope.payload
    assert isinstance(oco, OrderSubmitted)
    assert oco.order_type is OrderType.OCO
    assert (oco.token_in, oco.token_out, oco.amount) == ("SNIPEX", "SOL", Decimal(10_000))
    assert oco.take_profit_price == Decimal("0.0004")  # 2 / 10,000 x 2
    assert oco.stop_loss_price == Decimal("0.00014")  # 2 / 10,000 x 0.7
    assert (oco.owner, oco.client_order_id) == ("key-1", f"autosell:{ORDER}")
    assert oco.expires_at == T0 + timedelta(days=7)
    assert auto_sell_submission(state, done, T0) == envelope  # written twice: one order
