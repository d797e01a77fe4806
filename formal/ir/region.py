"""Regions: a buffer and a box of integer intervals over named axes.

A region is written ``kv[layer=3, token=0:512]``.  ``layer=3`` is the
one-element interval ``3:4``; an axis the region does not name covers the
whole axis.  Intervals are half-open, ``lo:hi`` holds ``lo .. hi-1``.
Regions are ranges, never one object per element: a 128k-token prefill is a
handful of regions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

# An axis a region leaves out spans everything.  The bound is far beyond any
# real tensor size but keeps arithmetic in plain ints.
FULL_LO = -(2**62)
FULL_HI = 2**62


@dataclass(frozen=True, order=True)
class Interval:
    """The half-open integer interval ``[lo, hi)``; never empty."""

    lo: int
    hi: int

    def overlaps(self, other: Interval) -> bool:
        return self.lo < other.hi and other.lo < self.hi

    def contains(self, other: Interval) -> bool:
        return self.lo <= other.lo and other.hi <= self.hi

    def intersect(self, other: Interval) -> Interval | None:
        lo, hi = max(self.lo, other.lo), min(self.hi, other.hi)
        return Interval(lo, hi) if lo < hi else None

    @property
    def is_full(self) -> bool:
        return self.lo == FULL_LO and self.hi == FULL_HI

    def __str__(self) -> str:
        if self.is_full:
            return ":"
        if self.hi == self.lo + 1:
            return str(self.lo)
        return f"{self.lo}:{self.hi}"


FULL = Interval(FULL_LO, FULL_HI)


@dataclass(frozen=True)
class Region:
    """A box in one buffer.  ``box`` maps every axis of the buffer (in the
    buffer's declared axis order) to an interval; the rank is the rank of the
    op that accesses the region."""

    buffer: str
    box: tuple[tuple[str, Interval], ...] = ()

    def interval(self, axis: str) -> Interval:
        for name, iv in self.box:
            if name == axis:
                return iv
        return FULL

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(a for a, _ in self.box)

    @cached_property
    def flat(self) -> tuple[int, ...]:
        """``(lo0, hi0, lo1, hi1, ...)`` in axis order: the fast form for comparisons."""
        out: list[int] = []
        for _, iv in self.box:
            out.append(iv.lo)
            out.append(iv.hi)
        return tuple(out)

    def _same_axes(self, other: Region) -> bool:
        return self.names == other.names

    def overlaps(self, other: Region) -> bool:
        if self.buffer != other.buffer:
            return False
        if self.names == other.names:  # the usual case: both normalised to the buffer's axes
            a, b = self.flat, other.flat
            for i in range(0, len(a), 2):
                if a[i] >= b[i + 1] or b[i] >= a[i + 1]:
                    return False
            return True
        axes = {a for a, _ in self.box} | {a for a, _ in other.box}
        return all(self.interval(a).overlaps(other.interval(a)) for a in axes)

    def contains(self, other: Region) -> bool:
        if self.buffer != other.buffer:
            return False
        axes = {a for a, _ in self.box} | {a for a, _ in other.box}
        return all(self.interval(a).contains(other.interval(a)) for a in axes)

    def intersect(self, other: Region) -> Region | None:
        if self.buffer != other.buffer:
            return None
        if self.names == other.names:
            fa, fb = self.flat, other.flat
            for i in range(0, len(fa), 2):
                if fa[i] >= fb[i + 1] or fb[i] >= fa[i + 1]:
                    return None
            if fa == fb:
                return self
            box = []
            for (name, x), (_, y) in zip(self.box, other.box, strict=True):
                lo = x.lo if x.lo > y.lo else y.lo
                hi = x.hi if x.hi < y.hi else y.hi
                box.append((name, x if lo == x.lo and hi == x.hi else y if lo == y.lo and hi == y.hi
                            else Interval(lo, hi)))
            return Region(self.buffer, tuple(box))
        axes = [a for a, _ in self.box] + [a for a, _ in other.box if a not in dict(self.box)]
        out = []
        for a in axes:
            iv = self.interval(a).intersect(other.interval(a))
            if iv is None:
                return None
            out.append((a, iv))
        return Region(self.buffer, tuple(out))

    def __str__(self) -> str:
        parts = [f"{a}={iv}" for a, iv in self.box if not iv.is_full]
        return f"{self.buffer}[{', '.join(parts)}]" if parts else self.buffer


_NAME = r"[A-Za-z_][A-Za-z0-9_.\-]*"
_REGION_RE = re.compile(rf"^\s*({_NAME})\s*(?:\[(.*)\])?\s*$")
_BOUND_RE = re.compile(r"^\s*(-?[0-9]+)\s*$")  # ASCII digits only: int("²") raises, int("٣") is 3
_AXIS_RE = re.compile(rf"^{_NAME}$")
# The canonical form (as written by str(Region)): no spaces but after the
# commas, ASCII digits, no signs.  parse_region_parts reads it directly.
_ITEM = rf"{_NAME}=[0-9]+(?::[0-9]+)?"
_CANONICAL_RE = re.compile(rf"({_NAME})\[({_ITEM}(?:, ?{_ITEM})*)\]")
_INTERVALS: dict[tuple[int, int], Interval] = {}


def shared_interval(lo: int, hi: int) -> Interval:
    """``Interval(lo, hi)``, one shared object per value (intervals are immutable)."""
    iv = _INTERVALS.get((lo, hi))
    if iv is None:
        if len(_INTERVALS) > 1 << 16:
            _INTERVALS.clear()
        iv = _INTERVALS[(lo, hi)] = Interval(lo, hi)
    return iv


class RegionSyntaxError(ValueError):
    """Raised by :func:`parse_region_parts`; the loader turns it into a ScheduleError."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def _bound(axis: str, digits: str, text_all: str) -> int:
    """An interval bound written in ASCII digits, strictly inside the bounds of a whole axis."""
    if len(digits.lstrip("-")) > 19 or not FULL_LO < int(digits) < FULL_HI:
        raise RegionSyntaxError(f"axis {axis!r} in {text_all!r}: bound {digits[:24]}{'...' if len(digits) > 24 else ''}"
                                f" is out of range (bounds lie strictly between -2^62 and 2^62)")
    return int(digits)


def _parse_interval(axis: str, text: str, text_all: str) -> Interval:
    text = text.strip()
    lo_s, sep, hi_s = text.partition(":")
    if (lo_s.isascii() and lo_s.isdigit() and (not sep or (hi_s.isascii() and hi_s.isdigit()))
            and len(lo_s) < 19 and len(hi_s) < 19):  # the common case: no signs, spaces or big numbers
        lo = int(lo_s)
        hi = int(hi_s) if sep else lo + 1
        if lo < hi:
            return Interval(lo, hi)
    if ":" in text:
        lo_s, hi_s = text.split(":", 1)
        lo_m, hi_m = _BOUND_RE.match(lo_s), _BOUND_RE.match(hi_s)
        if not lo_m or not hi_m:
            raise RegionSyntaxError(
                f"axis {axis!r} in {text_all!r}: expected 'lo:hi' with integers, got {text!r}"
            )
        lo, hi = _bound(axis, lo_m.group(1), text_all), _bound(axis, hi_m.group(1), text_all)
        if hi < lo:
            raise RegionSyntaxError(
                f"axis {axis!r} in {text_all!r}: interval {lo}:{hi} is reversed"
                " (intervals are half-open lo:hi with lo < hi)", f"did you mean {hi}:{lo}?")
        if hi == lo:
            raise RegionSyntaxError(
                f"axis {axis!r} in {text_all!r}: interval {lo}:{hi} is empty (intervals are half-open)",
                f"{lo}:{lo + 1} holds one element")
        return Interval(lo, hi)
    m = _BOUND_RE.match(text)
    if not m:
        raise RegionSyntaxError(
            f"axis {axis!r} in {text_all!r}: expected an integer or 'lo:hi', got {text!r}"
        )
    v = _bound(axis, m.group(1), text_all)
    if v + 1 >= FULL_HI:
        raise RegionSyntaxError(f"axis {axis!r} in {text_all!r}: index {v} is out of range (below 2^62 - 1)")
    return Interval(v, v + 1)


def _canonical_item(item: str) -> tuple[str, Interval] | None:
    """One ``axis=lo:hi`` or ``axis=i`` item of a canonical region (matched by
    _CANONICAL_RE already), or None when the general case must decide."""
    axis, _, rng = item.strip().partition("=")
    lo_s, sep, hi_s = rng.partition(":")
    if len(lo_s) > 18 or len(hi_s) > 18:
        return None  # perhaps out of range
    lo = int(lo_s)
    hi = int(hi_s) if sep else lo + 1
    if lo >= hi:
        return None  # reversed or empty: the general case says which
    return axis, shared_interval(lo, hi)


_ITEMS: dict[str, tuple[str, Interval] | None] = {}
_UNSEEN: Any = object()


def parse_region_parts(text: str) -> tuple[str, list[tuple[str, Interval]]]:
    """Parse ``buf[a=1, b=0:4]`` into the buffer name and the named intervals,
    in the order written.  Axis names are not checked here."""
    m = _CANONICAL_RE.fullmatch(text)
    if m is not None:  # what the general case below gives, read directly
        parts: list[tuple[str, Interval]] = []
        items = _ITEMS
        for item in m.group(2).split(","):
            got = items.get(item, _UNSEEN)
            if got is _UNSEEN:  # (items repeat across regions: "layer=3", " token=0:512")
                if len(items) > 1 << 16:
                    items.clear()
                got = items[item] = _canonical_item(item)
            if got is None:
                break  # an error, or perhaps out of range: the general case decides
            parts.append(got)
        else:
            if len(parts) == 1 or len({a for a, _ in parts}) == len(parts):  # (an axis twice: an error)
                return m.group(1), parts
    m = _REGION_RE.match(text)
    if not m:
        raise RegionSyntaxError(
            f"{text!r} is not a region: write 'buffer' or 'buffer[axis=lo:hi, axis=i, ...]'"
        )
    buffer, inner = m.group(1), m.group(2)
    parts = []
    if inner is not None and inner.strip():
        for item in inner.split(","):
            if "=" not in item:
                raise RegionSyntaxError(
                    f"{text!r}: {item.strip()!r} is not 'axis=lo:hi' or 'axis=i'"
                )
            axis, rng = item.split("=", 1)
            axis = axis.strip()
            if not _AXIS_RE.match(axis):
                raise RegionSyntaxError(f"{text!r}: {axis!r} is not an axis name")
            if any(a == axis for a, _ in parts):
                raise RegionSyntaxError(f"{text!r}: axis {axis!r} is given twice")
            parts.append((axis, _parse_interval(axis, rng, text)))
    return buffer, parts
