"""Pure: numbers as people read them, one way everywhere (CLI, dashboard, API messages).

- prices to 6 significant digits ("149.923", "0.0000200012"), never in exponent form;
- amounts with their token's symbol, to 6 significant digits but never hiding a whole
  digit ("1,499.23 USDC", "0.000123457 SOL");
- fees are amounts, so they carry their token too;
- price impact in bps below 100 bps ("56.6 bps"), in % above ("1.23 %").

Inputs are Decimals, or the decimal strings the API sends; `None` shows as "".
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation

PRICE_DIGITS = 6
_BPS = Decimal(10_000)
_WIDE = Context(prec=60)

Number = Decimal | str | int | float


def _decimal(value: Number) -> Decimal:
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None


def significant(value: Number, digits: int = PRICE_DIGITS, *, keep_whole: bool = False) -> str:
    """`value` rounded to `digits` significant digits, plain notation, thousands separated.

    With `keep_whole`, digits left of the point are never rounded away (an amount of
    1,234,567.8 shows as "1,234,568", not "1,234,570").
    """
    number = _decimal(value)
    if not number.is_finite():
        return str(number)
    if number.is_zero():
        return "0"
    exponent = number.adjusted()  # position of the first significant digit
    places = digits - 1 - exponent  # digits kept after the point
    if keep_whole:
        places = max(places, 0)
    quantum = Decimal(1).scaleb(-places)
    rounded = _WIDE.quantize(number, quantum) if places >= 0 else _round_left(number, -places)
    text = f"{rounded:,f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _round_left(number: Decimal, places: int) -> Decimal:
    """Round to a multiple of 10**places (places > 0), shown without an exponent."""
    step = Decimal(10) ** places
    return (number / step).quantize(Decimal(1), rounding=ROUND_HALF_EVEN) * step


def price(value: Number | None, quote: str | None = None, base: str | None = None) -> str:
    """A price to 6 significant digits; with symbols, "149.923 USDC/SOL"."""
    if value is None:
        return ""
    text = significant(value)
    if quote and base:
        return f"{text} {quote}/{base}"
    return f"{text} {quote}" if quote else text


def amount(value: Number | None, symbol: str | None = None) -> str:
    """An amount of a token with its symbol, to 6 significant digits (whole digits kept)."""
    if value is None:
        return ""
    text = significant(value, keep_whole=True)
    return f"{text} {symbol}" if symbol else text


def fee(value: Number | None, symbol: str | None) -> str:
    """A fee is an amount of a token: always with its symbol when it is known."""
    return amount(value, symbol)


def impact(fraction: Number | None) -> str:
    """A price impact given as a fraction (0.0056621...): "56.6 bps" below 100 bps, else "%"."""
    if fraction is None:
        return ""
    number = _decimal(fraction)
    bps = number * _BPS
    if abs(bps) < 100:
        shown = significant(bps, 3, keep_whole=True) if abs(bps) >= 1 else significant(bps, 2)
        return f"{shown} bps"
    return f"{significant(number * 100, 3, keep_whole=True)} %"


def bps(value: Number | None) -> str:
    """A number of basis points as such ("4.2 bps")."""
    if value is None:
        return ""
    return f"{significant(value, 3, keep_whole=True)} bps"


def percent(fraction: Number | None, *, signed: bool = True) -> str:
    """A change given as a fraction: "+1.23 %", "-0.045 %"."""
    if fraction is None:
        return ""
    number = _decimal(fraction) * 100
    text = significant(number, 3, keep_whole=True)
    return f"+{text} %" if signed and number > 0 else f"{text} %"
