"""The row index against brute force: whenever it answers, the run it gives
is exactly the set of items that overlap the query, and its tiling and
coverage figures are right."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from syncproof.ir.region import Interval, Region
from syncproof.semantics.rowindex import RowIndex

AXES = ("a", "b", "c")


@st.composite
def boxes(draw: st.DrawFn, n_axes: int) -> Region:
    box = []
    for name in AXES[:n_axes]:
        lo = draw(st.integers(0, 6))
        hi = draw(st.integers(lo + 1, 8))
        box.append((name, Interval(lo, hi)))
    return Region("x", tuple(box))


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[Region], list[Region]]:
    n_axes = draw(st.integers(1, 3))
    items = draw(st.lists(boxes(n_axes), min_size=1, max_size=12))
    # queries: random boxes, and boxes that extend an item along one axis (the common read)
    queries = draw(st.lists(boxes(n_axes), max_size=6))
    for r in items[:4]:
        k = draw(st.integers(0, n_axes - 1))
        lo = draw(st.integers(0, 3))
        box = list(r.box)
        box[k] = (box[k][0], Interval(lo, max(lo + 1, box[k][1].hi + draw(st.integers(0, 3)))))
        queries.append(Region("x", tuple(box)))
    return items, queries


@settings(max_examples=400, deadline=None)
@given(cases())
def test_rows_answer_exactly_or_not_at_all(case: tuple[list[Region], list[Region]]) -> None:
    items, queries = case
    index = RowIndex([(r, n) for n, r in enumerate(items)])
    for q in queries:
        hit = index.lookup(q)
        if hit is None:
            continue
        row, k, i, j = hit
        got = sorted(n for _, n in row.items[i:j])
        assert got == [n for n, r in enumerate(items) if r.overlaps(q)]
        run = [items[n] for _, n in row.items[i:j]]
        lo, hi = q.flat[2 * k], q.flat[2 * k + 1]
        disjoint = all(not a.overlaps(b) for x, a in enumerate(run) for b in run[x + 1:])
        assert row.tiles(i, j) == disjoint
        if disjoint:
            cells = {p for r in run for p in range(max(lo, r.flat[2 * k]), min(hi, r.flat[2 * k + 1]))}
            assert row.covered(i, j, lo, hi) == len(cells)


def test_a_row_answers_the_kv_read() -> None:
    """KV appends one token at a time; a read of every token so far is one run."""
    items = [(Region("kv", (("layer", Interval(0, 1)), ("token", Interval(t, t + 1)))), t) for t in range(10)]
    items += [(Region("kv", (("layer", Interval(1, 2)), ("token", Interval(t, t + 1)))), 100 + t) for t in range(10)]
    index = RowIndex(items)
    hit = index.lookup(Region("kv", (("layer", Interval(0, 1)), ("token", Interval(0, 7)))))
    assert hit is not None
    row, k, i, j = hit
    assert k == 1 and [p for _, p in row.items[i:j]] == list(range(7))
    assert row.tiles(i, j) and row.covered(i, j, 0, 7) == 7
