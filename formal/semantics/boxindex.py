"""Find the boxes that overlap a query box without comparing against all.

Items are bucketed along one axis (the one whose intervals are the most
varied); intervals that are whole-axis or very wide go to a list checked on
every query.  A query looks at the buckets its interval touches, then tests
exact overlap.  Typical schedules (one region per layer, per token block,
per step) then cost O(matches) per query instead of O(items).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

from ..ir.region import Region

T = TypeVar("T")
MAX_BUCKETS_PER_ITEM = 64


class BoxIndex(Generic[T]):
    def __init__(self, items: Sequence[tuple[Region, T]]) -> None:
        self.items = list(items)
        self.axis: str | None = None
        self.width = 1
        self.buckets: dict[int, list[int]] = defaultdict(list)
        self.wide: list[int] = []
        if not self.items:
            return
        axes = [a for a, _ in self.items[0][0].box]
        best, best_n = None, 1
        for a in axes:
            distinct = {r.interval(a) for r, _ in self.items if not r.interval(a).is_full}
            if len(distinct) > best_n:
                best, best_n = a, len(distinct)
        if best is None:
            self.wide = list(range(len(self.items)))
            return
        self.axis = best
        spans = sorted(r.interval(best).hi - r.interval(best).lo for r, _ in self.items
                       if not r.interval(best).is_full)
        self.width = max(1, spans[len(spans) // 2])
        for i, (r, _) in enumerate(self.items):
            iv = r.interval(best)
            if iv.is_full:
                self.wide.append(i)
                continue
            lo, hi = iv.lo // self.width, (iv.hi - 1) // self.width
            if hi - lo + 1 > MAX_BUCKETS_PER_ITEM:
                self.wide.append(i)
                continue
            for k in range(lo, hi + 1):
                self.buckets[k].append(i)

    def query(self, region: Region) -> Iterator[tuple[Region, T]]:
        """The items whose region overlaps ``region``, in insertion order."""
        if self.axis is None:
            cands: Sequence[int] = self.wide
        else:
            iv = region.interval(self.axis)
            lo, hi = iv.lo // self.width, (iv.hi - 1) // self.width
            if iv.is_full or hi - lo + 1 > max(MAX_BUCKETS_PER_ITEM, len(self.buckets)):
                cands = range(len(self.items))
            else:
                found: set[int] = set(self.wide)
                for k in range(lo, hi + 1):
                    found.update(self.buckets.get(k, ()))
                cands = sorted(found)
        for i in cands:
            r, payload = self.items[i]
            if r.overlaps(region):
                yield r, payload
