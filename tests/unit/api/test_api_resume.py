"""A socket resumed with `since` gets exactly since+1..n, however history and live events overlap.

`order_events` is driven here with an in-memory live subscription and read model: the
history holds a prefix of the order (the projector's progress when the socket reads
it), the live side everything from some sequence on (subscribed before that event was
written), with re-deliveries; what the gap between them lacks, the read model gives
when asked for it (the projector caught up).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.envelope import Envelope
from schemas.events import FailureCode, OrderEvent, OrderRetrying, OrderSubmitted
from services.api.listing import MAX_SINCE, parse_since
from services.api.sockets import StreamEnded, order_events
from services.api.validation import Rejection
from tests.builders import completed, envelope_chain, quote, route_plan, routed_and_sent

ORDER_ID = uuid.UUID("7d1d3b0e-5a43-4c52-9d0e-4b7f0d7a1c11")
START = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def order_chain(owner: str | None = None) -> list[Envelope]:
    """Nine events: submitted, a refused attempt, a retry, a second attempt, completed."""
    plan = route_plan()
    payloads: list[OrderEvent] = [
        OrderSubmitted(
            token_in="SOL",
            token_out="USDC",
            amount=Decimal(4),
            slippage=Decimal("0.005"),
            owner=owner,
        ),
        *routed_and_sent(plan, [quote()], "1" * 88, reason="best", attempt=1),
        OrderRetrying(
            attempt=1, code=FailureCode.SLIPPAGE_EXCEEDED, error="moved", delay_seconds=2
        ),
        *routed_and_sent(plan, [quote()], "2" * 88, reason="best", attempt=2),
        completed("2" * 88, 600),
    ]
    return envelope_chain(ORDER_ID, payloads, start=START)


CHAIN = order_chain()
N = len(CHAIN)


class Live:
    """The socket's subscription: what the feed delivered since it subscribed."""

    def __init__(self, deliveries: Sequence[Envelope]) -> None:
        self._queue: asyncio.Queue[Envelope] = asyncio.Queue()
        for envelope in deliveries:
            self._queue.put_nowait(envelope)

    async def get(self) -> Envelope:
        return await self._queue.get()


class Stored:
    """The read model: the first `projected` events; a request for missing ones finds the
    projector caught up (it lags the live feed, it does not lose events)."""

    def __init__(self, chain: Sequence[Envelope], projected: int) -> None:
        self.chain = list(chain)
        self.projected = projected

    @contextlib.asynccontextmanager
    async def history_turn(self) -> AsyncIterator[None]:
        yield  # the real read model takes turns at its pool; one reader here needs none

    async def envelopes(
        self, order_id: uuid.UUID, sequences: Sequence[int] | None = None
    ) -> list[Envelope]:
        assert order_id == ORDER_ID
        if sequences is not None:
            self.projected = len(self.chain)
            return [e for e in self.chain if e.sequence in sequences]
        return self.chain[: self.projected]


async def resumed(
    since: int,
    projected: int,
    live: Sequence[Envelope],
    *,
    chain: Sequence[Envelope] = CHAIN,
    visible_to: str | None = None,
) -> list[int]:
    stream = order_events(
        ORDER_ID,
        Live(live),  # type: ignore[arg-type]
        Stored(chain, projected),  # type: ignore[arg-type]
        visible_to=visible_to,
        since=since,
    )
    return [envelope.sequence async for envelope in stream]


@st.composite
def reconnects(draw: st.DrawFn) -> tuple[int, int, list[Envelope]]:
    """(since, events projected at the history read, live deliveries with re-deliveries)."""
    since = draw(st.integers(0, N + 2))
    projected = draw(st.integers(0, N))
    live_from = draw(st.integers(1, N))  # the final event is always live or stored
    live = list(CHAIN[live_from - 1 :])
    for copy in draw(st.lists(st.integers(live_from, N), max_size=5)):
        live.insert(draw(st.integers(0, len(live))), CHAIN[copy - 1])
    return since, projected, live


@settings(max_examples=150, deadline=None)
@given(reconnects())
def test_a_resumed_socket_gets_exactly_the_events_after_since(
    case: tuple[int, int, list[Envelope]],
) -> None:
    since, projected, live = case
    assert asyncio.run(resumed(since, projected, live)) == list(range(since + 1, N + 1))


async def test_resuming_mid_order_on_a_process_that_has_only_later_live_events() -> None:
    # The new API process subscribed after event 6; the projector has stored 1..4.
    assert await resumed(3, 4, CHAIN[6:]) == [4, 5, 6, 7, 8, 9]


async def test_resuming_after_the_final_event_sends_nothing_and_ends() -> None:
    assert await resumed(N, N, []) == []


async def test_since_zero_is_the_whole_order() -> None:
    assert await resumed(0, 2, CHAIN[1:]) == list(range(1, N + 1))


async def test_a_resume_still_checks_the_owner_it_does_not_send() -> None:
    theirs = order_chain(owner="key-b")
    with pytest.raises(StreamEnded) as ended:
        await resumed(5, N, [], chain=theirs, visible_to="key-a")
    assert ended.value.error == "ORDER_NOT_FOUND"
    assert await resumed(5, N, [], chain=theirs, visible_to="key-b") == [6, 7, 8, 9]


@pytest.mark.parametrize("text", ["0", "7", str(MAX_SINCE)])
def test_since_is_a_whole_number(text: str) -> None:
    assert parse_since(text) == int(text)
    assert parse_since(None) == 0


@pytest.mark.parametrize(
    "text", ["", "-1", "1.5", "1e3", "abc", " 3", "\u0663", str(MAX_SINCE + 1)]
)
def test_a_bad_since_is_refused_with_its_own_error(text: str) -> None:
    rejected = parse_since(text)
    assert isinstance(rejected, Rejection)
    assert (rejected.error, rejected.field) == ("INVALID_SINCE", "since")
