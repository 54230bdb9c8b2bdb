"""Numbers as people read them: prices, amounts with symbols, fees with tokens, impact in bps/%."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.domain import display


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("149.92345", "149.923"),
        ("150", "150"),
        ("150.000000", "150"),
        ("0.000020001234", "0.0000200012"),
        ("1234567.89", "1,234,570"),
        ("0.5", "0.5"),
        ("0", "0"),
        (Decimal("-12.3456789"), "-12.3457"),
    ],
)
def test_prices_have_six_significant_digits_and_no_exponent(value: str, shown: str) -> None:
    assert display.price(value) == shown


def test_a_price_can_name_its_pair() -> None:
    assert display.price("149.92345", "USDC", "SOL") == "149.923 USDC/SOL"
    assert display.price(None) == ""


def test_amounts_and_fees_carry_their_token_and_keep_whole_digits() -> None:
    assert display.amount("1499.234567", "USDC") == "1,499.23 USDC"
    assert display.amount("1234567.8", "USDC") == "1,234,568 USDC"
    assert display.amount("0.000123456789", "SOL") == "0.000123457 SOL"
    assert display.amount("10", "SOL") == "10 SOL"
    assert display.fee("0.025", "SOL") == "0.025 SOL"


@pytest.mark.parametrize(
    ("fraction", "shown"),
    [
        ("0.0056621063652188219460927407", "56.6 bps"),  # the issue's own example
        ("0.0001", "1 bps"),
        ("0.00001234", "0.12 bps"),
        ("0", "0 bps"),
        ("0.0099", "99 bps"),
        ("0.01", "1 %"),
        ("0.0123456", "1.23 %"),
        ("0.25", "25 %"),
    ],
)
def test_price_impact_reads_in_bps_below_100_and_in_percent_above(
    fraction: str, shown: str
) -> None:
    assert display.impact(fraction) == shown


def test_changes_are_signed_percentages() -> None:
    assert display.percent("0.01234") == "+1.23 %"
    assert display.percent("-0.0004") == "-0.04 %"
    assert display.percent("0") == "0 %"
    assert display.bps("4.2") == "4.2 bps"
