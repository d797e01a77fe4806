"""Rows: the boxes of one buffer that agree on every axis but one.

Inference schedules touch buffers in rows: the KV cache of one (microbatch,
layer) is written one token block at a time along ``token``, an activation of
one (microbatch, layer) once per step along ``step``.  A read then covers a
run of consecutive boxes of one row, and everything a checker needs about it
(which boxes it meets, whether they tile it, which is the latest) comes from
two binary searches and a few slices, with no per-box Python work.

``RowIndex`` groups items by their box with one axis (the *row axis*) left
out.  It answers a query only when the answer is provably the whole set of
items that overlap the query box:

* the query's box off the row axis equals the row's key, and
* the rows along that axis are *isolated*: on every other axis, the distinct
  intervals of all items are pairwise equal or disjoint, so two rows with
  different keys are disjoint on some axis and no item of another row can
  meet the query, and
* within the row, sorted by interval, the upper bounds never decrease (no
  interval strictly inside another), so the items that overlap an interval
  are one contiguous run.

Anything else returns ``None`` and the caller uses the general
:class:`~syncproof.semantics.boxindex.BoxIndex`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from ..ir.region import Region

T = TypeVar("T")


class Row(Generic[T]):
    """The items of one row, sorted by their interval on the row axis."""

    __slots__ = ("los", "his", "items", "order", "monotone", "extra", "_gaps", "_cum")

    def __init__(self, axis: int, members: list[tuple[int, Region, T]]) -> None:
        lo_at, hi_at = 2 * axis, 2 * axis + 1
        members.sort(key=lambda m: (m[1].flat[lo_at], m[1].flat[hi_at], m[0]))
        self.los = [m[1].flat[lo_at] for m in members]
        self.his = [m[1].flat[hi_at] for m in members]
        self.order = [m[0] for m in members]  # insertion index of each item
        self.items = [(m[1], m[2]) for m in members]
        his = self.his
        self.monotone = all(a <= b for a, b in zip(his, his[1:], strict=False))
        self.extra: Any = None  # for the caller: facts about the row it computes once
        self._gaps: list[int] | None = None
        self._cum: list[int] | None = None

    def span(self, lo: int, hi: int) -> tuple[int, int]:
        """The run ``[i, j)`` of items whose interval meets ``[lo, hi)``."""
        return bisect_right(self.his, lo), bisect_left(self.los, hi)

    def tiles(self, i: int, j: int) -> bool:
        """Are the intervals of items ``i .. j-1`` pairwise disjoint?"""
        if j - i < 2:
            return True
        if self._gaps is None:  # prefix count of neighbours that overlap
            gaps = [0]
            los, his = self.los, self.his
            for k in range(len(los) - 1):
                gaps.append(gaps[-1] + (1 if his[k] > los[k + 1] else 0))
            self._gaps = gaps
        return self._gaps[j - 1] == self._gaps[i]

    def covered(self, i: int, j: int, lo: int, hi: int) -> int:
        """Length of ``[lo, hi)`` covered by items ``i .. j-1``, which tile."""
        if j <= i:
            return 0
        los, his = self.los, self.his
        if self._cum is None:
            cum = [0]
            for a, b in zip(los, his, strict=True):
                cum.append(cum[-1] + b - a)
            self._cum = cum
        total = self._cum[j] - self._cum[i]
        if los[i] < lo:
            total -= lo - los[i]
        if his[j - 1] > hi:
            total -= his[j - 1] - hi
        return total


class RowIndex(Generic[T]):
    def __init__(self, items: Sequence[tuple[Region, T]]) -> None:
        self.items = items
        self.n_axes = len(items[0][0].flat) // 2 if items else 0
        self._rows: dict[int, dict[tuple[int, ...], Row[T]]] = {}
        # axes tried first: the most varied (longest rows)
        self.axes: list[int] = []
        if not items:
            return
        width = 2 * self.n_axes
        if any(len(r.flat) != width for r, _ in items):
            return
        distinct = [{(r.flat[2 * k], r.flat[2 * k + 1]) for r, _ in items} for k in range(self.n_axes)]
        clean = [_equal_or_disjoint(d) for d in distinct]
        for k in sorted(range(self.n_axes), key=lambda k: -len(distinct[k])):
            if all(clean[m] for m in range(self.n_axes) if m != k):
                self.axes.append(k)

    def _rows_along(self, k: int) -> dict[tuple[int, ...], Row[T]]:
        if k in self._rows:
            return self._rows[k]
        groups: dict[tuple[int, ...], list[tuple[int, Region, T]]] = {}
        for n, (r, payload) in enumerate(self.items):
            f = r.flat
            key = f[:2 * k] + f[2 * k + 2:]
            g = groups.get(key)
            if g is None:
                groups[key] = [(n, r, payload)]
            else:
                g.append((n, r, payload))
        rows = {key: Row(k, members) for key, members in groups.items()}
        self._rows[k] = rows
        return rows

    def lookup(self, region: Region) -> tuple[Row[T], int, int, int] | None:
        """``(row, axis, i, j)``: items ``row.items[i:j]`` are exactly the items
        whose region overlaps ``region``.  ``None`` when no row answers."""
        f = region.flat
        if len(f) != 2 * self.n_axes:
            return None
        for k in self.axes:
            row = self._rows_along(k).get(f[:2 * k] + f[2 * k + 2:])
            if row is None or not row.monotone:
                continue
            i, j = row.span(f[2 * k], f[2 * k + 1])
            return row, k, i, j
        return None


def _equal_or_disjoint(intervals: set[tuple[int, int]]) -> bool:
    ivs = sorted(intervals)
    return all(a[1] <= b[0] for a, b in zip(ivs, ivs[1:], strict=False))
