"""``IncrementalEncoder`` keeps a long conversation's ids as one shared int object per id value (so
copying them into each returned prompt touches few objects): the values must never change."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from chatfmt.inference import prompt as P


@given(st.lists(st.integers(min_value=0, max_value=300_000), max_size=200))
def test_interned_ids_equal_the_ids(ids: list[int]) -> None:
    out = P._interned(list(ids))
    assert out == ids
    assert all(P._INTS[i] == i for i in ids)
    if ids:
        assert out[0] is P._INTS[ids[0]]


def test_a_negative_value_is_left_as_given() -> None:
    ids = [5, -1, 7]
    assert P._interned(ids) is ids and ids == [5, -1, 7]


def test_threads_growing_the_table_at_once_keep_every_value_in_place() -> None:
    start = len(P._INTS)
    tops = [start + 50_000 + 997 * k for k in range(8)]
    results: list[list[int]] = []
    barrier = threading.Barrier(len(tops))

    def grow(top: int) -> None:
        barrier.wait()
        results.append(P._interned([0, top, top // 2]))

    threads = [threading.Thread(target=grow, args=(t,)) for t in tops]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r[1] for r in results) == tops
    assert all(P._INTS[i] == i for i in range(len(P._INTS)))
