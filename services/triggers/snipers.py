"""When an armed sniper fires, fails, or waits: pure, over the launches fold.

A sniper rests `open` (armed) until its token's pool exists. Then its rug checks run on what the
chain's events say of the launch (`services/domain/rugcheck.py`): the first failed check ends it
`failed` with that check's code and every failed check's values in the error; passing, it is
triggered (leg `launch`) and the router buys in the first slot at or after the pool opens. A
sniper that arrives when the pool is already open buys at once, unless `onlyAtLaunch`: then it
fails `POOL_ALREADY_OPEN` (it wanted the launch, not the market after it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from schemas.events import FailureCode, LaunchTarget, OrderStatus, OrderType, SniperChecks
from services.domain.launches import LaunchedToken
from services.domain.order import OrderState
from services.domain.rugcheck import RugChecks, run_rug_checks


@dataclass(frozen=True, slots=True)
class Fire:
    """Trigger the sniper: its pair, the slot its pool was seen at, its max price."""

    pair: str
    slot: int
    level: Decimal
    launch: LaunchTarget


@dataclass(frozen=True, slots=True)
class Fail:
    """End the sniper failed, with the first failing check's code and what each check saw."""

    code: FailureCode
    error: str


def rug_checks(checks: SniperChecks | None) -> RugChecks:
    """The order's checks as the pure checks take them (none given: the defaults)."""
    if checks is None:
        return RugChecks()
    return RugChecks(
        mint_renounced=checks.mint_renounced,
        freeze_renounced=checks.freeze_renounced,
        lp_burned=checks.lp_burned,
        min_liquidity=checks.min_liquidity,
    )


def decide_snipe(
    state: OrderState, token: LaunchedToken | None, *, arriving: bool
) -> Fire | Fail | None:
    """What to do with an armed sniper given its token's launch (None: wait).

    `arriving`: the order is being armed now (not woken by a chain event), which is when an
    already open pool means it came after the launch.
    """
    if state.order_type is not OrderType.SNIPER or state.status is not OrderStatus.OPEN:
        return None
    if token is None or token.pool is None or token.quote != state.token_in:
        return None  # not launched yet (or launched against another quote: not this market)
    facts = token.facts()
    assert facts is not None  # the pool exists
    failures = run_rug_checks(rug_checks(state.checks), facts)
    if failures:
        seen = "; ".join(f"{f.code}: wanted {f.expected}, saw {f.seen}" for f in failures)
        return Fail(FailureCode(failures[0].code), f"rug check failed ({seen})")
    if arriving and state.only_at_launch and token.opened_slot is not None:
        return Fail(
            FailureCode.POOL_ALREADY_OPEN,
            f"{token.pair} opened at slot {token.opened_slot}, before this onlyAtLaunch order",
        )
    assert state.max_price is not None  # a sniper carries one (the contract)
    target = token.target()
    assert target is not None  # the pool exists
    return Fire(pair=token.pair, slot=token.opened_slot or 0, level=state.max_price, launch=target)


def submission_order(states: Iterable[OrderState]) -> list[OrderState]:
    """Snipers of one launch in the order they were submitted (ties: by id, deterministic)."""
    return sorted(states, key=lambda s: (s.created_at, str(s.order_id)))
