"""Proof obligations, one per property instance, built without a solver.

* ``ReadOb`` (dataflow): one read of one *cell* (a sub-box of the read's
  region in which every location has the same set of writers).  It holds
  when, in every execution, the location holds ``expected`` throughout the
  read.
* ``OverlapOb`` (race): two ops on different streams whose accesses to one
  rank's buffer conflict (overlap, one writes) must never run at once.
* ``OrderOb`` (phase, deadlock): every op of ``before`` ends before any op of
  ``after`` starts, in every execution.
* ``MetaOb`` (phase): a rule broken by the schedule's own metadata.

Regions stay boxes: a read is split only where a writer's box cuts it, and
cells with the same writers are one obligation.  Obligations are named
tuples (immutable, and several times cheaper to make than dataclasses: a
million-op schedule has about a million of them).
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, NamedTuple, TypeVar, overload

from ..ir import Access, Kind, Op, Region, Schedule
from ..ir.region import Interval
from .boxindex import BoxIndex
from .matching import Matching
from .memo import shared
from .rowindex import Row, RowIndex

T = TypeVar("T")
Ob = TypeVar("Ob")


class ReadOb(NamedTuple):
    read: int
    region: Region
    expected: str
    good: tuple[int, ...]  # writes of the expected value to this cell
    bad: tuple[int, ...]  # writes of any other value to this cell
    init: str | None  # what the cell holds before any write (None: nothing)
    # a weak collective's input read lasts until every op here has ended (its
    # peers may read the input until then); () for every other read
    until: tuple[int, ...] = ()

    @property
    def init_good(self) -> bool:
        return self.init == self.expected


class OverlapOb(NamedTuple):
    """Ops ``a`` and ``b`` must never run at once on ``region``.  An op's
    access lasts until it ends, or, for a weak collective, until every op of
    its ``*_until`` has ended."""

    a: int
    b: int
    region: Region
    a_until: tuple[int, ...] = ()
    b_until: tuple[int, ...] = ()


class OrderOb(NamedTuple):
    prop: str
    before: tuple[int, ...]
    after: tuple[int, ...]
    why: str


class SampleOb(NamedTuple):
    """Every op of ``after`` starts after at least one op of ``samples`` (the
    ops that sample the previous step's token) has ended."""

    prop: str
    samples: tuple[int, ...]
    after: tuple[int, ...]
    why: str


class MetaOb(NamedTuple):
    prop: str
    op: int
    other: int | None
    sentence: str


# Ops whose start is only a posting: they wait for something and do no work
# (a posted recv, an event or signal wait, a host sync, allocator calls).  A
# non-root member of a broadcast or scatter only waits for the root's data
# too, like a posted recv (``phase_steps`` tests that in line).
WAITING_KINDS = frozenset({Kind.RECV, Kind.WAIT, Kind.RECORD, Kind.WAIT_SIGNAL, Kind.SYNC, Kind.ALLOC, Kind.FREE,
                           Kind.RECORD_STREAM})
_FROM_ROOT = frozenset({Kind.BROADCAST, Kind.SCATTER})

# looked up once: ``Kind.SEND`` is a descriptor call per use in Python 3.11
_SEND, _RECV, _PUT = Kind.SEND, Kind.RECV, Kind.PUT
_COLLECTIVES = frozenset(k for k in Kind if k.is_collective)

Obligation = ReadOb | OverlapOb | OrderOb | SampleOb | MetaOb


# ------------------------------------------------------------- cells
def _split(box: tuple[tuple[str, Interval], ...], cutters: list[tuple[int, Region]]
           ) -> list[tuple[tuple[tuple[str, Interval], ...], tuple[int, ...]]]:
    """Split ``box`` until every cutter either contains a piece or misses it.
    Returns (piece, ids of the cutters containing it)."""
    out = []
    stack = [(box, cutters)]
    while stack:
        b, cs = stack.pop()
        live = [(i, r) for i, r in cs if r.overlaps(Region(r.buffer, b))]
        cut = None
        for _i, r in live:
            for axis, iv in b:
                w = r.interval(axis)
                if w.lo > iv.lo and w.lo < iv.hi:
                    cut = (axis, w.lo)
                    break
                if w.hi > iv.lo and w.hi < iv.hi:
                    cut = (axis, w.hi)
                    break
            if cut:
                break
        if cut is None:
            out.append((b, tuple(i for i, _ in live)))
            continue
        axis, at = cut
        lo_box = tuple((a, Interval(iv.lo, at) if a == axis else iv) for a, iv in b)
        hi_box = tuple((a, Interval(at, iv.hi) if a == axis else iv) for a, iv in b)
        stack.append((hi_box, live))
        stack.append((lo_box, live))
    return out


# ------------------------------------------------------------- lanes
Lane = tuple[int, str] | tuple[int, str, int]


def lane_of(s: Schedule) -> Callable[[Op], Lane]:
    """The totally ordered lane an op runs in: its (rank, stream); the parts
    of a group call, which one stream runs together and unordered, each get
    their own lane ``(rank, stream, j)`` for the j-th part (j >= 1), where
    part j of one group call precedes part j of the next."""
    if "batch" not in s.features:
        return _plain_lane
    part = s.batch_parts

    def lane(op: Op) -> Lane:
        j = part.get(op.id)
        return (op.rank, op.stream) if j is None else (op.rank, op.stream, j)

    return lane


def _plain_lane(op: Op) -> Lane:
    return (op.rank, op.stream)


# ------------------------------------------------------------- symmetry
Classes = dict[int, tuple[int, int]]


@shared
def rank_classes(s: Schedule) -> Classes | None:
    """For every rank, ``(rep, shift)``: a rank whose own ops are the same
    (stream, reads and writes, op by op) and start from the same initial
    values, and what to add to its op ids.  Dataflow and race look at one
    rank's own ops only, so such ranks have the same obligations up to op
    ids; SPMD schedules (every rank of a TP group runs the same program) are
    checked once per class.  None when op ids are not contiguous per rank."""
    if {"put", "weak"} & s.features:
        return None  # a put writes another rank's memory, a weak collective's peers read its input:
        # obligations are not rank-local
    base: dict[int, int] = {}
    for r in s.ranks:
        ops = s.by_rank[r]
        if ops and ops[-1].id - ops[0].id != len(ops) - 1:
            return None
        base[r] = ops[0].id if ops else 0
    reps: dict[tuple[int, tuple[int, ...]], list[int]] = defaultdict(list)
    out: dict[int, tuple[int, int]] = {}
    for r in s.ranks:
        key = (len(s.by_rank[r]), tuple(i for i, init in enumerate(s.init) if init.applies_to(r)))
        for q in reps[key]:
            if _same_local(s.by_rank[q], s.by_rank[r]):
                out[r] = (q, base[r] - base[q])
                break
        else:
            reps[key].append(r)
            out[r] = (r, 0)
    return out


_LOCAL = operator.attrgetter("stream", "reads", "writes")


def _same_local(a: tuple[Op, ...], b: tuple[Op, ...]) -> bool:
    """Do two ranks' ops (as many) have the same stream, reads and writes, op by op?"""
    return len(a) == len(b) and all(map(operator.eq, map(_LOCAL, a), map(_LOCAL, b)))


class PerRank(Sequence[Ob]):
    """The obligations of every rank in rank order, kept once per class of
    identical ranks: ``parts`` holds, per rank, the class representative's
    list and the op-id shift.  An item is made (shifted) when it is read;
    the graph engine decides whole parts in bulk from the representative's
    op ids plus the shift, so most obligations of a large SPMD schedule
    are never made at all."""

    def __init__(self, parts: list[tuple[list[Ob], int]], shift: Callable[[Ob, int], Ob]) -> None:
        self.parts = parts
        self.shift = shift
        self.starts: list[int] = []
        n = 0
        for items, _ in parts:
            self.starts.append(n)
            n += len(items)
        self._len = n

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, i: int) -> Ob: ...

    @overload
    def __getitem__(self, i: slice) -> list[Ob]: ...

    def __getitem__(self, i: int | slice) -> Ob | list[Ob]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._len))]
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(i)
        k = bisect_right(self.starts, i) - 1
        items, d = self.parts[k]
        ob = items[i - self.starts[k]]
        return ob if d == 0 else self.shift(ob, d)

    def __iter__(self) -> Iterator[Ob]:
        for items, d in self.parts:
            if d == 0:
                yield from items
            else:
                shift = self.shift
                for ob in items:
                    yield shift(ob, d)


def _per_rank_class(s: Schedule, local: Callable[[Schedule, Sequence[Op]], list[Ob]],
                    shift: Callable[[Ob, int], Ob], symmetry: bool, classes: Classes | None) -> Sequence[Ob]:
    if classes is None and symmetry and len(s.ranks) > 1:
        classes = rank_classes(s)
    if classes is None:
        return local(s, s.ops)
    done: dict[int, list[Ob]] = {}
    parts: list[tuple[list[Ob], int]] = []
    for r in s.ranks:
        rep, d = classes[r]
        if rep == r:
            done[r] = local(s, s.by_rank[r])
        parts.append((done[rep], d))
    return PerRank(parts, shift)


def _shift_read(ob: ReadOb, d: int) -> ReadOb:
    return ReadOb(ob.read + d, ob.region, ob.expected, tuple(w + d for w in ob.good), tuple(w + d for w in ob.bad),
                  ob.init, tuple(w + d for w in ob.until))


def _shift_overlap(ob: OverlapOb, d: int) -> OverlapOb:
    return OverlapOb(ob.a + d, ob.b + d, ob.region, tuple(w + d for w in ob.a_until),
                     tuple(w + d for w in ob.b_until))


def weak_members(s: Schedule) -> dict[int, tuple[int, ...]]:
    """For every member of a collective instance declared ``completion:
    "weak"`` (a custom collective without an end barrier): the instance's
    members, every one of which may still read the member's input until it
    ends.  Instances are the k-th collectives of a group (as matching pairs
    them); an incomplete instance is matching's problem, not this one's."""
    if "weak" not in s.features:
        return {}
    per: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for op in s.ops:
        if op.kind in _COLLECTIVES and op.group is not None:
            per[op.group][op.rank].append(op.id)
    out: dict[int, tuple[int, ...]] = {}
    for g, members in s.groups:
        lists = [per[g][r] for r in members]
        for k in range(min((len(x) for x in lists), default=0)):
            inst = tuple(x[k] for x in lists)
            if any(s.ops[o].completion == "weak" for o in inst):
                for o in inst:
                    out[o] = inst
    return out


# ------------------------------------------------------------- dataflow
@shared
def read_obligations(s: Schedule, *, symmetry: bool = True, classes: Classes | None = None) -> Sequence[ReadOb]:
    """One obligation per cell of every read that expects a value; with
    ``symmetry``, computed once per class of identical ranks (the same list;
    ``classes`` from :func:`rank_classes` saves finding them again)."""
    return _per_rank_class(s, _read_obligations, _shift_read, symmetry, classes)


def _read_obligations(s: Schedule, ops: Sequence[Op]) -> list[ReadOb]:
    writes: dict[tuple[int, str], list[tuple[Region, tuple[int, Access]]]] = defaultdict(list)
    for op in ops:
        where = op.peer if op.kind is _PUT else op.rank  # a put lands in its target's memory
        assert where is not None
        for acc in op.writes:
            writes[(where, acc.region.buffer)].append((acc.region, (op.id, acc)))
    rows = {key: RowIndex(items) for key, items in writes.items()}
    boxes: dict[tuple[int, str], BoxIndex[tuple[int, Access]]] = {}  # built when a read needs one
    inits: dict[tuple[int, str], list[tuple[int, Region, str]]] = defaultdict(list)
    for i, init in enumerate(s.init):
        for r in s.ranks:
            if init.applies_to(r):
                inits[(r, init.region.buffer)].append((i, init.region, init.value))
    ranks = {op.rank for op in ops} if len(ops) < len(s.ops) else set(s.ranks)
    position = {op.id: i for (r, _), st in s.streams.items() if r in ranks for i, op in enumerate(st)}
    obs: list[ReadOb] = []
    lane = lane_of(s)
    for op in ops:
        reads = op.reads
        if not reads:
            continue
        seen: set[tuple[object, ...]] = set()
        alone = len(reads) == 1  # one read, one cell: nothing to deduplicate
        for acc in reads:
            if acc.value is None:
                continue
            key = (op.rank, acc.region.buffer)
            here = inits.get(key)
            its = [(i, reg, v) for i, reg, v in here if reg.overlaps(acc.region)] if here else []
            ws: list[tuple[int, Access]] | None = None
            fast: list[ReadOb] | None = None
            index = rows.get(key)
            hit = index.lookup(acc.region) if index is not None else None
            if hit is not None:
                row, axis, i, j = hit
                rf = row.extra
                if rf is None:
                    rf = row.extra = _RowFacts(s, row, position, lane)
                fast = _row_cells(op.id, acc, row, axis, i, j, rf, its)
                if fast is None:
                    run = sorted(range(i, j), key=row.order.__getitem__)
                    ws = [row.items[k][1] for k in run if row.items[k][1][0] != op.id]
            if fast is None:
                if ws is None:
                    idx = boxes.get(key)
                    if idx is None and key in writes:
                        idx = boxes[key] = BoxIndex(writes[key])
                    ws = [w for _, w in idx.query(acc.region)] if idx is not None else []
                    ws = [(w, a) for w, a in ws if w != op.id]
                fast = _disjoint_cells(s, op.id, acc, ws, its, position, lane)
            if fast is not None:
                if alone and len(fast) == 1:
                    obs.append(fast[0])
                    continue
                for ob in fast:
                    sig = (ob.expected, ob.good, ob.bad, ob.init)
                    if sig not in seen:
                        seen.add(sig)
                        obs.append(ob)
                continue
            assert ws is not None
            cutters = [(k, a.region) for k, (_, a) in enumerate(ws)]
            cutters += [(-1 - k, reg) for k, (_, reg, _) in enumerate(its)]
            for piece, ids in _split(acc.region.box, cutters):
                good = tuple(sorted(ws[k][0] for k in ids if k >= 0 and ws[k][1].value == acc.value))
                bad = tuple(sorted(ws[k][0] for k in ids if k >= 0 and ws[k][1].value != acc.value))
                init_ids = [-1 - k for k in ids if k < 0]
                before = its[max(init_ids)][2] if init_ids else None
                sig = (acc.value, good, bad, before)
                if sig in seen:
                    continue
                seen.add(sig)
                assert acc.value is not None
                obs.append(ReadOb(op.id, Region(acc.region.buffer, piece), acc.value, good, bad, before))
    weak = weak_members(s)
    if weak:  # a weak collective's input is read until every member has ended
        obs = [ob._replace(until=weak[ob.read]) if ob.read in weak else ob for ob in obs]
    return obs


class _RowFacts:
    """What the fast path needs of one row of writers, computed once: their
    op ids and values in row order, and whether they are all on one stream
    in increasing stream order (then the last of a run is the latest)."""

    __slots__ = ("ids", "values", "in_stream_order")

    def __init__(self, s: Schedule, row: Row[tuple[int, Access]], position: dict[int, int],
                 lane: Callable[[Op], Lane]) -> None:
        self.ids = [w for _, (w, _) in row.items]
        self.values = [a.value for _, (_, a) in row.items]
        streams = {lane(s.ops[w]) for w in self.ids}
        pos = [position[w] for w in self.ids]
        self.in_stream_order = len(streams) == 1 and all(a < b for a, b in zip(pos, pos[1:], strict=False))


def _row_cells(read: int, acc: Access, row: Row[tuple[int, Access]], axis: int, i: int, j: int,
               rf: _RowFacts, its: list[tuple[int, Region, str]]) -> list[ReadOb] | None:
    """``_disjoint_cells`` for a read whose writers are the run ``i .. j-1`` of
    one row, without looking at each writer: the run tiles (prefix counts),
    writes only the expected value (one count), and comes from one stream in
    stream order, so its last writer is the latest.  Gives the same
    obligations as ``_disjoint_cells``; None when any condition fails."""
    v = acc.value
    assert v is not None
    f = acc.region.flat
    lo, hi = f[2 * axis], f[2 * axis + 1]
    if j - i == 1 and not its:  # the usual read: one writer, which must cover it
        if rf.ids[i] == read or rf.values[i] != v or row.los[i] > lo or row.his[i] < hi:
            return None
        return [ReadOb(read, acc.region, v, (rf.ids[i],), (), None)]
    if (j <= i and not its) or not row.tiles(i, j):
        return None
    if j > i and (rf.values[i:j].count(v) != j - i or (j - i > 1 and not rf.in_stream_order)
                  or read in rf.ids[i:j]):
        return None
    across = 1  # the read's size off the row axis, which every writer of the row shares
    for m in range(0, len(f), 2):
        if m != 2 * axis:
            across *= f[m + 1] - f[m]
    volume = across * row.covered(i, j, lo, hi)
    whole = across * (hi - lo)
    out: list[ReadOb] = []
    if its:
        spans: list[tuple[int, int]] = []
        for _, reg, val in its:
            inter = reg.intersect(acc.region)
            if inter is None:
                return None
            a, b = inter.flat[2 * axis], inter.flat[2 * axis + 1]
            i2, j2 = row.span(a, b)
            if max(i, i2) < min(j, j2):
                return None  # an initial value under a writer: not one writer per cell
            spans.append((a, b))
            volume += _volume(inter)
            if val != v:
                out.append(ReadOb(read, inter, v, (), (), val))
        spans.sort()
        if any(x[1] > y[0] for x, y in zip(spans, spans[1:], strict=False)):
            return None
    if volume != whole:
        return None  # part of the read is covered by nothing: the general split names it
    if j > i:
        inter = _clip(row.items[j - 1][0], acc.region)
        assert inter is not None
        out.append(ReadOb(read, inter, v, (rf.ids[j - 1],), (), None))
    return out


def _clip(w: Region, r: Region) -> Region | None:
    """``w`` intersected with ``r``; ``w`` itself, with no new object, when ``r`` contains it."""
    fw, fr = w.flat, r.flat
    if len(fw) == len(fr) and w.buffer == r.buffer:
        for k in range(0, len(fw), 2):
            if fw[k] < fr[k] or fw[k + 1] > fr[k + 1]:
                return w.intersect(r)
        return w
    return w.intersect(r)


def _volume(r: Region) -> int:
    v = 1
    for _, iv in r.box:
        v *= iv.hi - iv.lo
    return v


def _disjoint_along(pieces: list[tuple[int | None, str, Region]], axis: str) -> bool:
    ivs = sorted((p[2].interval(axis).lo, p[2].interval(axis).hi) for p in pieces)
    return all(a[1] <= b[0] for a, b in zip(ivs, ivs[1:], strict=False))


def _disjoint_cells(s: Schedule, read: int, acc: Access, ws: list[tuple[int, Access]],
                    its: list[tuple[int, Region, str]], position: dict[int, int],
                    lane: Callable[[Op], Lane]) -> list[ReadOb] | None:
    """The fast path for the common shape: the writers' boxes and the initial
    values' boxes are pairwise disjoint and together cover the read.  Then
    each writer's intersection with the read is one cell with that single
    writer, and each initial value's is a cell nothing writes.  Among cells
    whose one writer writes the expected value, only the latest writer of each
    stream matters: stream order makes every earlier writer of that stream end
    before it, so if the latest is ordered before the read, all are.  Returns
    None when the shape does not apply (the general split handles it)."""
    assert acc.value is not None
    pieces: list[tuple[int | None, str, Region]] = []
    for w, a in ws:
        inter = a.region.intersect(acc.region)
        if inter is None:
            return None
        pieces.append((w, a.value or "", inter))
    for _, reg, val in its:
        inter = reg.intersect(acc.region)
        if inter is None:
            return None
        pieces.append((None, val, inter))
    if not pieces or not any(_disjoint_along(pieces, ax) for ax, _ in acc.region.box):
        return None  # not disjoint along any one axis
    if sum(_volume(p[2]) for p in pieces) != _volume(acc.region):
        return None  # part of the read is covered by nothing: the general split names it
    latest: dict[Lane, tuple[int, int, Region]] = {}
    out: list[ReadOb] = []
    for writer, value, inter in pieces:
        if writer is None:
            if value != acc.value:  # holds the wrong initial value and nothing writes it
                out.append(ReadOb(read, inter, acc.value, (), (), value))
        elif value == acc.value:
            key = lane(s.ops[writer])
            if key not in latest or position[writer] > latest[key][0]:
                latest[key] = (position[writer], writer, inter)
        else:
            out.append(ReadOb(read, inter, acc.value, (), (writer,), None))
    for _, w, inter in sorted(latest.values()):
        out.append(ReadOb(read, inter, acc.value, (w,), (), None))
    return out


@shared
def race_obligations(s: Schedule, *, symmetry: bool = True, classes: Classes | None = None) -> Sequence[OverlapOb]:
    """Conflicting pairs on different streams, ordered by op ids; with
    ``symmetry``, computed once per class of identical ranks (as for reads)."""
    return _per_rank_class(s, _race_obligations, _shift_overlap, symmetry, classes)


def _race_obligations(s: Schedule, ops: Sequence[Op]) -> list[OverlapOb]:
    """Accesses are indexed per (rank, buffer, stream), and each access looks
    only into the indexes of the other streams: ops on one stream never
    overlap (stream order)."""
    acc: dict[tuple[int, str], dict[Lane, list[tuple[Region, tuple[int, bool]]]]] = defaultdict(
        lambda: defaultdict(list))
    lane_fn = lane_of(s)
    for op in ops:
        lane = lane_fn(op)
        for a in op.reads:
            acc[(op.rank, a.region.buffer)][lane].append((a.region, (op.id, False)))
        where = op.peer if op.kind is _PUT else op.rank  # a put writes its target's memory
        assert where is not None
        for a in op.writes:
            acc[(where, a.region.buffer)][lane].append((a.region, (op.id, True)))
    obs: dict[tuple[int, int], OverlapOb] = {}
    for per_stream in acc.values():
        if len(per_stream) < 2:
            continue
        streams = sorted(per_stream)
        indexes = {st: _Overlaps(per_stream[st]) for st in streams[1:]}
        for i, st in enumerate(streams):
            for other in streams[i + 1:]:
                index = indexes[other]
                for ra, (oa, wa) in per_stream[st]:
                    for rb, (ob, wb) in index.query(ra):
                        if not (wa or wb):
                            continue
                        key = (oa, ob) if oa < ob else (ob, oa)
                        if key in obs:
                            continue
                        inter = _clip(rb, ra)
                        if inter is not None:
                            obs[key] = OverlapOb(key[0], key[1], inter)
    weak = weak_members(s)
    if weak:  # a weak collective's input is read until every member has ended
        for per_stream in acc.values():  # so its own stream's later ops may overlap that read too
            for items in per_stream.values():
                for ra, (oa, wa) in items:
                    if oa not in weak or wa:
                        continue
                    for rb, (ob_, wb) in items:
                        if ob_ == oa or not (wa or wb) or not ra.overlaps(rb):
                            continue
                        key = (oa, ob_) if oa < ob_ else (ob_, oa)
                        inter = _clip(rb, ra)
                        if key not in obs and inter is not None:
                            obs[key] = OverlapOb(key[0], key[1], inter)
        ops_ = s.ops

        def reads_it(o: int, other: int, region: Region) -> bool:
            """Is the weak op's input read in the conflict (``other`` writes what ``o`` reads)?"""
            if o not in weak:
                return False
            mine = [a.region for a in ops_[o].reads if a.region.overlaps(region)]
            theirs = [a.region for a in ops_[other].writes if a.region.overlaps(region)]
            return any(x.overlaps(y) for x in mine for y in theirs)

        for pair, ov in obs.items():
            if ov.a in weak or ov.b in weak:
                obs[pair] = ov._replace(a_until=weak[ov.a] if reads_it(ov.a, ov.b, ov.region) else (),
                                        b_until=weak[ov.b] if reads_it(ov.b, ov.a, ov.region) else ())
    return [obs[k] for k in sorted(obs)]


class _Overlaps(Generic[T]):
    """Which items overlap a region: by row when the row index can answer,
    else by the box index (made on first need)."""

    __slots__ = ("items", "rows", "boxes")

    def __init__(self, items: list[tuple[Region, T]]) -> None:
        self.items = items
        self.rows = RowIndex(items)
        self.boxes: BoxIndex[T] | None = None

    def query(self, region: Region) -> list[tuple[Region, T]]:
        """The items whose region overlaps ``region``, in insertion order."""
        hit = self.rows.lookup(region)
        if hit is not None:
            row, _, i, j = hit
            order = row.order
            if all(order[k] < order[k + 1] for k in range(i, j - 1)):
                return row.items[i:j]
            return [row.items[k] for k in sorted(range(i, j), key=order.__getitem__)]
        if self.boxes is None:
            self.boxes = BoxIndex(self.items)
        return list(self.boxes.query(region))


class _Step:
    """What the phase rule needs of one step of one sequence, gathered in one
    pass over the ops (in id order, which is issue order per rank):

    * ``last``: per (rank, stream), the last op that is not a send.  A
      send's tail is the transfer draining to its peer: its input is
      protected by dataflow and race, so it may overlap the next step.  The
      last op of a stream ends after the others of it.
    * ``first``: per (rank, stream), the first op that does work.  A posted
      recv or a stream wait may start early: they only wait.  The first op
      of a stream starts before the others of it.
    * ``samples``: the ops that sample the step's token."""

    __slots__ = ("last", "first", "samples")

    def __init__(self) -> None:
        self.last: dict[Lane, int] = {}
        self.first: dict[Lane, int] = {}
        self.samples: list[int] = []


PhaseSteps = tuple[list[MetaOb], dict[object, dict[int, _Step]]]


@shared
def phase_steps(s: Schedule) -> PhaseSteps:
    """One pass over the ops for the phase rule: the metadata rules broken,
    and per sequence and step what :class:`_Step` keeps.  Shared by
    :func:`phase_obligations` and :func:`unsampled_steps`.

    An op belongs to the steps of every sequence it names (of the whole batch
    when it names none).  The pass keeps one :class:`_Step` per *class*
    (the sequences named, the step) instead of one per sequence, and the
    loaders share one Meta object among alike ops, so most ops cost a lookup
    by the identity of their metadata and two dict stores.  The classes are
    then merged into each sequence's steps: the last op of a lane is the
    latest of its classes', the first the earliest, and the samples are
    every class's, in op order."""
    obs: list[MetaOb] = []
    classes: dict[tuple[tuple[object, ...] | None, int], _Step] = {}
    # per Meta object (alive with the schedule, so its id is not reused): its class's _Step, whether the op
    # samples, and whether the op needs the checks of a decode step below; or None when in no step
    seen: dict[int, tuple[_Step, bool, bool] | None] = {}
    named: set[int] = set()  # the sequences ops with a phase name
    special: list[Op] = []  # decode ops with an SP partition or a token range: checked op by op below
    waiting = WAITING_KINDS
    lane = lane_of(s)
    plain = lane is _plain_lane
    send, from_root = _SEND, _FROM_ROOT
    for op in s.ops:
        m = op.meta
        info: Any = seen.get(id(m), False)
        if info is False:
            info = None
            phase = m.phase
            if phase is not None:
                named.update(m.seqs)
            t = m.step if phase == "decode" else -1 if phase == "prefill" else None
            if phase == "decode" and (m.sp is not None or m.tokens is not None):
                info = (None, False, True)  # (the step, if any: below)
            if t is not None:
                ckey = (m.seqs or None, t)
                g = classes.get(ckey)
                if g is None:
                    g = classes[ckey] = _Step()
                info = (g, m.sample, info is not None)
            seen[id(m)] = info
        if info is None:
            continue
        g, sample, checks = info
        if checks:
            special.append(op)
            if g is None:
                continue
        key = (op.rank, op.stream) if plain else lane(op)
        kind = op.kind
        if kind is not send:
            g.last[key] = op.id
        if key not in g.first and kind not in waiting and not (kind in from_root and op.root != op.rank):
            g.first[key] = op.id
        if sample:
            g.samples.append(op.id)
    # an op without ``seqs`` (a batch-wide sampler or norm) belongs to every
    # sequence of the batch: it is compared with each sequence's steps
    every: tuple[object, ...] = tuple(sorted(named)) or ("*",)
    groups: dict[object, dict[int, _Step]] = defaultdict(dict)
    merged: set[tuple[object, int]] = set()  # steps made of more than one class (their samples are sorted)
    for (seqs, t), g in classes.items():
        for q in seqs or every:
            per_q = groups[q]
            h = per_q.get(t)
            if h is None:
                h = per_q[t] = _Step()
                h.last, h.first, h.samples = dict(g.last), dict(g.first), list(g.samples)
                continue
            last, first = h.last, h.first
            for k, o in g.last.items():
                if last.get(k, -1) < o:
                    last[k] = o
            for k, o in g.first.items():
                if first.get(k, o) >= o:
                    first[k] = o
            if g.samples:
                h.samples += g.samples
                merged.add((q, t))
    for q, t in merged:
        groups[q][t].samples.sort()
    # the rules of a decode step, op by op in issue order
    by_step_tokens: dict[tuple[object, int], Op] = {}
    for op in special:
        m = op.meta
        if m.sp is not None:
            obs.append(MetaOb("phase", op.id, None,
                              f"{s.label(op)} is sequence-parallel partition {m.sp[0]}/{m.sp[1]} in decode"
                              f" step {m.step}: a decode step has one new token per sequence, so there is"
                              " nothing to split; SP is only legal in prefill"))
        t = m.step
        if t is None or m.tokens is None:
            continue
        for q in m.seqs or every:
            prev = by_step_tokens.get((q, t))
            if prev is None:
                by_step_tokens[(q, t)] = op
            elif prev.meta.tokens != m.tokens:
                obs.append(MetaOb("phase", op.id, prev.id,
                                  f"{s.label(op)} and {s.label(prev)} split decode step {t}"
                                  f" of sequence {q} into token partitions: SP inside a decode"
                                  " step is illegal"))
    return obs, groups


@shared
def _seq_counts(s: Schedule) -> dict[int, int]:
    """How many ops with a phase name each sequence (the keys: ``every`` of :func:`phase_steps`)."""
    out: dict[int, int] = {}
    for x in s.ops:
        if x.meta.phase is not None:
            for q in x.meta.seqs:
                out[q] = out.get(q, 0) + 1
    return out


def phase_steps_without(s: Schedule, steps: PhaseSteps, o: int) -> PhaseSteps | None:
    """:func:`phase_steps` of ``s`` with op ``o`` (a stream wait or host
    sync) stripped of its metadata, as the redundancy pass removes a sync,
    made from ``s``'s steps by changing only the steps the op was in: where
    it was the last op of its lane, the lane's previous op of the step takes
    its place.  None when the removal changes more than that (the op was the
    only one of its step or sequence, or it started a lane: compute it from
    scratch then)."""
    op = s.ops[o]
    m = op.meta
    if m.phase == "decode":
        if m.step is None:
            return steps
        t = m.step
    elif m.phase == "prefill":
        t = -1
    else:
        return steps  # in no step: nothing changes
    if op.kind not in WAITING_KINDS or op.kind is _SEND or m.sample or m.sp is not None or m.tokens is not None:
        return None
    meta, groups = steps
    named = _seq_counts(s)
    every: tuple[object, ...] = tuple(sorted(named)) or ("*",)
    if any(named.get(q, 0) <= 1 for q in m.seqs):
        return None  # the op alone names a sequence
    seqs: tuple[object, ...] = m.seqs if m.seqs else every
    lane = lane_of(s)
    key = lane(op)
    lane_ops = [x for x in s.streams[(op.rank, op.stream)] if x.id < o and lane(x) == key]
    new_groups = dict(groups)
    for q in seqs:
        per_q = groups.get(q)
        g = per_q.get(t) if per_q is not None else None
        if per_q is None or g is None:
            return None
        if g.first.get(key) == o:
            return None
        if g.last.get(key) != o:
            continue
        prev = None
        for x in reversed(lane_ops):
            xm = x.meta
            xt = xm.step if xm.phase == "decode" else -1 if xm.phase == "prefill" else None
            if xt != t or (xm.phase == "decode" and xt is None) or x.kind is _SEND:
                continue
            if q in (xm.seqs if xm.seqs else every):
                prev = x.id
                break
        ng = _Step()
        ng.last, ng.first, ng.samples = dict(g.last), g.first, g.samples
        if prev is None:
            del ng.last[key]
            if not ng.last and not ng.first and not ng.samples:
                return None  # the step had no other op: it disappears
        else:
            ng.last[key] = prev
        per_new = dict(per_q)
        per_new[t] = ng
        new_groups[q] = per_new
    return meta, new_groups


@shared
def phase_obligations(s: Schedule, steps: PhaseSteps | None = None) -> list[OrderOb | SampleOb | MetaOb]:
    meta, groups = steps if steps is not None else phase_steps(s)
    obs: list[OrderOb | SampleOb | MetaOb] = list(meta)
    for q in sorted(groups, key=str):
        order = sorted(groups[q])
        seq = "the batch" if q == "*" else f"sequence {q}"
        for t0, t1 in zip(order, order[1:], strict=False):
            name0 = "prefill" if t0 < 0 else f"decode step {t0}"
            g0, g1 = groups[q][t0], groups[q][t1]
            before: dict[int, list[int]] = defaultdict(list)
            for lk, o in g0.last.items():
                before[lk[0]].append(o)
            after: dict[int, list[int]] = defaultdict(list)
            for lk, o in g1.first.items():
                after[lk[0]].append(o)
            for r in sorted(set(before) & set(after)):
                obs.append(OrderOb("phase", tuple(sorted(before[r])), tuple(sorted(after[r])),
                                   f"on rank {r}, decode step {t1} of {seq} overlaps {name0}: steps"
                                   " may overlap across ops within a step, never across steps"))
            if g0.samples and g1.first:
                obs.append(SampleOb("phase", tuple(g0.samples), tuple(sorted(g1.first.values())),
                                    f"decode step {t1} of {seq} starts before {name0} has sampled"
                                    " its token"))
    return obs


def unsampled_steps(s: Schedule, steps: PhaseSteps | None = None) -> list[str]:
    """Decode steps that follow a step with no op marked ``sample``: the
    token rule cannot be checked for them (said as a warning, not dropped)."""
    _, groups = steps if steps is not None else phase_steps(s)
    out = []
    for q in sorted(groups, key=str):
        order = sorted(groups[q])
        for t0, t1 in zip(order, order[1:], strict=False):
            if not groups[q][t0].samples:
                seq = "the batch" if q == "*" else f"sequence {q}"
                name0 = "prefill" if t0 < 0 else f"decode step {t0}"
                out.append(f"{name0} of {seq} has no op marked \"sample\": that decode step {t1} starts"
                           " from its token is not checked (only per-rank step order is)")
    return out


def _values(accs: tuple[Access, ...]) -> list[str] | None:
    """The values an op's accesses declare, sorted; None if any declares none."""
    vals = [a.value for a in accs]
    if not vals or any(v is None for v in vals):
        return None
    return sorted(v for v in vals if v is not None)


def carried_values(sender: Op) -> list[str] | None:
    """What a message carries, as the sender declares it: a send's read values;
    a broadcast root's read values, or its write values when it declares no
    read value.  None when the sender declares none."""
    got = _values(sender.reads)
    if got is None and sender.kind is Kind.BROADCAST:
        got = _values(sender.writes)
    return got


def message_obligations(s: Schedule, m: Matching) -> tuple[list[MetaOb], int]:
    """Values travel with messages: a recv receives what its matched send
    read, and a broadcast's non-root members what the root sent.  The values
    a receiver declares are assertions, checked here against its sender (a
    ``dataflow`` violation at the receiver).  Returns the violations and the
    number of receivers whose sender declares no value (taken on trust)."""
    obs: list[MetaOb] = []
    trusted = 0
    ops = s.ops
    for a, b in m.pairs:
        send, recv = ops[a], ops[b]
        if not recv.writes:
            continue
        carried = carried_values(send)
        if carried is None:
            trusted += 1
            continue
        declared = sorted(w.value or "" for w in recv.writes)
        if declared != carried:
            obs.append(MetaOb("dataflow", b, a,
                              f"{s.label(recv)} declares {_list(declared)} in {_regions(recv.writes)}, but its"
                              f" matched {s.label(send)} carried {_list(carried)} (FIFO matching pairs the"
                              f" n-th send with the n-th recv of one communicator and peer)"))
    for inst in m.instances:
        first = ops[inst.ops[0]]
        if first.kind is not Kind.BROADCAST:
            continue
        root = next(ops[o] for o in inst.ops if ops[o].rank == first.root)
        carried = carried_values(root)
        for o in inst.ops:
            member = ops[o]
            if o == root.id or not member.writes:
                continue
            if carried is None:
                trusted += 1
                continue
            declared = sorted(w.value or "" for w in member.writes)
            if declared != carried:
                obs.append(MetaOb("dataflow", o, root.id,
                                  f"{s.label(member)} declares {_list(declared)} in {_regions(member.writes)},"
                                  f" but the root {s.label(root)} broadcast {_list(carried)}"))
    return obs, trusted


def _list(values: list[str]) -> str:
    return ", ".join(repr(v) for v in values)


def _regions(accs: tuple[Access, ...]) -> str:
    return ", ".join(str(a.region) for a in accs)
