"""bench.sockets counts a subscriber complete only when it has every event of every order."""

from __future__ import annotations

from bench.sockets import Subscriber


def subscriber(**sequences: list[int]) -> Subscriber:
    found = Subscriber()
    found.sequences.update(sequences)
    return found


def test_every_event_in_order_is_complete() -> None:
    assert subscriber(a=[1, 2, 3], b=[1, 2]).complete_for({"a": 3, "b": 2})


def test_a_gap_a_duplicate_or_a_missing_order_is_not() -> None:
    orders = {"a": 3, "b": 2}
    assert not subscriber(a=[1, 3], b=[1, 2]).complete_for(orders)
    assert not subscriber(a=[1, 2, 2, 3], b=[1, 2]).complete_for(orders)
    assert not subscriber(a=[1, 2, 3]).complete_for(orders)


def test_no_order_or_a_failed_socket_is_never_complete() -> None:
    # A run where every handshake failed accepted no order: it once reported 5,000 complete.
    assert not subscriber().complete_for({})
    failed = subscriber(a=[1, 2, 3])
    failed.error = "WSServerHandshakeError"
    assert not failed.complete_for({"a": 3})
