from decimal import Decimal

import pytest

from services.domain.tokens import UnknownTokenError, from_base_units, get_token, to_base_units


def test_decimals_of_the_traded_tokens():
    assert {s: get_token(s).decimals for s in ("SOL", "USDC", "USDT", "JUP", "RAY", "BONK")} == {
        "SOL": 9,
        "USDC": 6,
        "USDT": 6,
        "JUP": 6,
        "RAY": 6,
        "BONK": 5,
    }


def test_unknown_token_is_a_key_error():
    with pytest.raises(UnknownTokenError):
        get_token("DOGE")
    with pytest.raises(KeyError):
        to_base_units("DOGE", Decimal(1))


def test_base_unit_conversion_is_exact():
    assert to_base_units("SOL", Decimal("1.5")) == 1_500_000_000
    assert to_base_units("USDC", Decimal("123456789012.123456")) == 123456789012123456
    assert from_base_units("BONK", 123) == Decimal("0.00123")
    assert from_base_units("USDC", to_base_units("USDC", Decimal("0.000001"))) == Decimal("1E-6")


@pytest.mark.parametrize("amount", ["0.0000001", "1.0000000001", "NaN", "Infinity"])
def test_amounts_finer_than_a_base_unit_are_refused(amount):
    with pytest.raises(ValueError, match="USDC"):
        to_base_units("USDC", Decimal(amount))
