"""Admin commands to the market process, on the `market.commands` topic (keyed by pair).

`oee market move SOL-USDC --to 160 --over 10s` writes a `MarketMove`; the running process reads
the topic from its end at start (commands are for the process that is running, not a backlog)
and ignores a command older than `MAX_COMMAND_AGE_SECONDS` when it arrives, so a command
written while no process ran never moves prices later by surprise. Kafka rather than an admin
HTTP port: it needs nothing but the broker every process already reaches, and the commands stay
on the log beside the ticks they caused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from schemas.events import PositiveAmount
from schemas.market import PairName

MAX_COMMAND_AGE_SECONDS = 30.0


class MarketMove(BaseModel):
    """Trade `pair`'s pools to `to` (quote per base) over `over_seconds`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pair: PairName
    to: PositiveAmount
    over_seconds: float = Field(ge=0, le=24 * 3600)
    issued_at: AwareDatetime


class UndecodableCommand(ValueError):
    """Bytes on the command topic that are not a command this code reads."""


def encode_move(pair: str, to: Decimal, over_seconds: float, now: datetime | None = None) -> bytes:
    move = MarketMove(
        pair=pair, to=to, over_seconds=over_seconds, issued_at=now or datetime.now(UTC)
    )
    return orjson.dumps(move.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)


def decode_move(value: bytes | None) -> MarketMove:
    try:
        return MarketMove.model_validate(orjson.loads(value or b""))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise UndecodableCommand(str(exc).splitlines()[0]) from None


def parse_price(text: str) -> Decimal:
    """ "160" or "0.00002" as a positive finite price; ValueError saying what is wrong."""
    try:
        price = Decimal(text.strip())
    except InvalidOperation:
        msg = f"not a price: {text!r}"
        raise ValueError(msg) from None
    if not price.is_finite() or price <= 0:
        msg = f"the price must be positive, got {text!r}"
        raise ValueError(msg)
    return price


def parse_duration(text: str) -> float:
    """ "10s", "2m", "500ms" or plain seconds ("10") as seconds."""
    raw = text.strip().lower()
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if raw.endswith(suffix):
            raw, factor = raw[: -len(suffix)], scale
            break
    else:
        factor = 1.0
    try:
        seconds = float(raw) * factor
    except ValueError:
        msg = f"not a duration: {text!r} (e.g. 10s, 2m, 500ms)"
        raise ValueError(msg) from None
    if not 0 <= seconds <= 24 * 3600:
        msg = f"a duration between 0 and 24h, got {text!r}"
        raise ValueError(msg)
    return seconds
