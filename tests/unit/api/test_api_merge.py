"""History and live events, interleaved any way and duplicated, come out as exactly 1..n."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.api.merge import SequenceMerge


@st.composite
def two_sources(draw: st.DrawFn) -> tuple[int, list[int]]:
    """n events: history 1..h (stored), live l..n (seen since subscribing), the gap h+1..l-1
    (fetched from PostgreSQL), and arbitrary re-deliveries, interleaved."""
    n = draw(st.integers(1, 30))
    stored = draw(st.integers(0, n))
    live_from = draw(st.integers(1, n + 1))
    history = list(range(1, stored + 1))
    live = list(range(live_from, n + 1))
    gap_fill = list(range(stored + 1, live_from))  # what the gap fill would fetch
    copies = draw(st.lists(st.integers(1, n), max_size=10))
    # Each source keeps its own order; sources interleave freely.
    sources = [history, live, gap_fill, copies]
    merged: list[int] = []
    cursors = [0] * len(sources)
    while any(c < len(s) for c, s in zip(cursors, sources, strict=True)):
        open_sources = [i for i, s in enumerate(sources) if cursors[i] < len(s)]
        pick = draw(st.sampled_from(open_sources))
        merged.append(sources[pick][cursors[pick]])
        cursors[pick] += 1
    return n, merged


@given(two_sources())
def test_any_interleaving_yields_each_sequence_once_in_order(case: tuple[int, list[int]]) -> None:
    n, arrivals = case
    merge: SequenceMerge[str] = SequenceMerge()
    sent: list[str] = []
    for sequence in arrivals:
        sent += merge.offer(sequence, f"e{sequence}")
    assert sent == [f"e{i}" for i in range(1, n + 1)]
    assert merge.gap == range(0)


@given(st.permutations(list(range(1, 12))))
def test_any_permutation_is_released_in_order(arrivals: list[int]) -> None:
    merge: SequenceMerge[int] = SequenceMerge()
    sent = [item for s in arrivals for item in merge.offer(s, s)]
    assert sent == list(range(1, 12))


def test_the_gap_names_what_is_missing() -> None:
    merge: SequenceMerge[int] = SequenceMerge()
    assert merge.offer(1, 1) == [1]
    assert merge.offer(4, 4) == []
    assert merge.gap == range(2, 4)
    assert merge.offer(4, 4) == []  # held already
    assert merge.offer(1, 1) == []  # sent already
    assert merge.offer(3, 3) == []
    assert merge.gap == range(2, 3)
    assert merge.offer(2, 2) == [2, 3, 4]
    assert merge.gap == range(0)
    assert merge.last_sent == 4
