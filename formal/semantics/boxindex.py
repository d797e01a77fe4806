"""Find the boxes that overlap a query box without comparing against all.

Items are bucketed along the (up to three) axes whose intervals are the most varied;
intervals that are whole-axis or very wide go to a list checked on every
query.  A query looks at the buckets its interval touches, then tests
exact overlap.  Typical schedules (one region per layer, per token block,
per step) then cost O(matches) per query instead of O(items).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Generic, TypeVar

from ..ir.region import FULL_HI, FULL_LO, Region

T = TypeVar("T")
MAX_BUCKETS_PER_ITEM = 64


class BoxIndex(Generic[T]):
    def __init__(self, items: Sequence[tuple[Region, T]]) -> None:
        self.items = list(items)
        self.axes: list[tuple[int, int]] = []  # (position of the axis in the box, bucket width)
        self._max_k = 0
        self.buckets: dict[tuple[int, ...], list[int]] = defaultdict(list)
        self.wide: list[int] = []
        if not self.items:
            return
        n_axes = len(self.items[0][0].box)
        flats = [r.flat for r, _ in self.items if len(r.flat) == 2 * n_axes]
        varied = []
        for k in range(n_axes):
            distinct = {(f[2 * k], f[2 * k + 1]) for f in flats}
            distinct.discard((FULL_LO, FULL_HI))
            if len(distinct) > 1:
                spans = sorted(hi - lo for lo, hi in distinct)
                varied.append((len(distinct), k, max(1, spans[len(spans) // 2])))
        varied.sort(reverse=True)
        self.axes = [(k, w) for _, k, w in varied[:3]]
        self._max_k = max((k for k, _ in self.axes), default=0)
        for i, (r, _) in enumerate(self.items):
            keys = self._keys(r, MAX_BUCKETS_PER_ITEM)
            if keys is None:
                self.wide.append(i)
            else:
                for key in keys:
                    self.buckets[key].append(i)

    def _keys(self, r: Region, limit: int) -> list[tuple[int, ...]] | None:
        if not self.axes:
            return None
        flat = r.flat
        if len(flat) <= 2 * self._max_k:
            return None
        ranges: list[tuple[int, ...]] = []
        total = 1
        for k, w in self.axes:
            lo_v, hi_v = flat[2 * k], flat[2 * k + 1]
            if lo_v == FULL_LO and hi_v == FULL_HI:
                return None
            lo, hi = lo_v // w, (hi_v - 1) // w
            if lo == hi:
                ranges.append((lo,))
                continue
            total *= hi - lo + 1
            if total > limit:
                return None
            ranges.append(tuple(range(lo, hi + 1)))
        if len(ranges) == 1:
            return [(b,) for b in ranges[0]]
        if all(len(rg) == 1 for rg in ranges):
            return [tuple(rg[0] for rg in ranges)]
        keys: list[tuple[int, ...]] = [()]
        for rg in ranges:
            keys = [key + (b,) for key in keys for b in rg]
        return keys

    def query(self, region: Region) -> Iterator[tuple[Region, T]]:
        """The items whose region overlaps ``region``, in insertion order."""
        keys = self._keys(region, max(MAX_BUCKETS_PER_ITEM, len(self.buckets)))
        cands: Iterable[int]
        if keys is None:
            cands = range(len(self.items))
        elif len(keys) == 1 and not self.wide:
            cands = self.buckets.get(keys[0], ())
        else:
            found: set[int] = set(self.wide)
            for key in keys:
                found.update(self.buckets.get(key, ()))
            cands = sorted(found)
        items = self.items
        for i in cands:
            r, payload = items[i]
            if r.overlaps(region):
                yield r, payload
