"""A sniper's rank in its launch sets its compute-unit price: earlier ranks pay more."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.domain.priority_fees import (
    RANKED_SNIPERS,
    SNIPER_BASE_MICRO_LAMPORTS,
    sniper_compute_unit_price,
)


@given(st.integers(min_value=0, max_value=RANKED_SNIPERS - 1))
def test_each_rank_pays_more_than_the_next(rank: int) -> None:
    assert sniper_compute_unit_price(rank) > sniper_compute_unit_price(rank + 1)


def test_every_ranked_sniper_pays_more_than_a_market_order() -> None:
    assert sniper_compute_unit_price(0) == SNIPER_BASE_MICRO_LAMPORTS + RANKED_SNIPERS
    # Past the ranked ones they share the base price (and land in arrival order), still > 0.
    assert sniper_compute_unit_price(RANKED_SNIPERS) == SNIPER_BASE_MICRO_LAMPORTS
    assert sniper_compute_unit_price(10 * RANKED_SNIPERS) == SNIPER_BASE_MICRO_LAMPORTS


def test_a_trigger_without_a_rank_pays_no_priority_fee() -> None:
    assert sniper_compute_unit_price(None) == 0


def test_a_negative_rank_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 0"):
        sniper_compute_unit_price(-1)
