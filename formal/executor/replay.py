"""Replay a counterexample from the engine on the explicit semantics.

The run is checked event by event (every start and end must be enabled when it
happens, in time order) and then the wrong observation the counterexample
claims is reproduced: a bad read, an overlap, an order inversion, a hang, a
cycle of waits or a broken metadata rule.

Replay is linear in the schedule: when no two events share a time (as in the
engine's runs), each event's enabling is checked directly against the times
of what it waits for, with no sorting; a bad read tracks memory only at the
points the read expects its value in.  A caller replaying several
counterexamples of one schedule passes ``model=build_model(schedule,
light=True)`` to build the model once.
"""

from __future__ import annotations

from collections.abc import Sequence
from heapq import heappop, heappush
from itertools import product
from operator import lt
from typing import Any, cast

from ..errors import SyncproofError
from ..ir import Region, Schedule
from ..ir.fileformat import resolve_region
from ..ir.region import FULL_LO
from ..result import Counterexample, Run
from .explicit import ACTIVE, ENDED, NOT_STARTED, NOTHING, Model, Point, _seq_keys, build_model, followers, quiesce

Event = tuple[str, int]

_KINDS = ("start", "end")


class _Realized:
    """An admissible run: for each op, a key of its start and of its end
    event (None: it never happens) that orders the events as they happen.
    The keys are the run's times when no two events share one, else the
    events' positions in the order the greedy tie-breaking picks."""

    __slots__ = ("ps", "pe")

    def __init__(self, ps: Sequence[int | None], pe: Sequence[int | None]) -> None:
        self.ps = ps
        self.pe = pe


_NONE_TYPE = type(None)
_INT_OR_NONE = frozenset({int, _NONE_TYPE})


def _tie_free_admissible(model: Model, run: Run) -> bool:
    """Is ``run`` admissible, with integer times and no two events at one
    time?  Then every event needs only the events before it in time, so this
    checks each event's enabling directly from the times, without ordering
    them.  False also when it cannot tell; :func:`_realize_in_order` decides
    those runs (and says why one is not admissible)."""
    n = model.n
    start, end = run.start, run.end
    if len(start) != n or len(end) != n:
        return False
    start_types = set(map(type, start))
    end_types = set(map(type, end))
    if not start_types <= _INT_OR_NONE or not end_types <= _INT_OR_NONE:
        return False
    events = 2 * n
    if _NONE_TYPE in start_types:
        events -= start.count(None)
    if _NONE_TYPE in end_types:
        events -= end.count(None)
    times = set(start)
    times.update(end)
    times.discard(None)
    if len(times) != events:
        return False  # two events share a time
    en = model.enabling
    if _NONE_TYPE not in start_types and _NONE_TYPE not in end_types:
        # every op starts and ends: compare the times in bulk
        starts, ends = cast("tuple[int, ...]", start), cast("tuple[int, ...]", end)
        at_start, at_end = starts.__getitem__, ends.__getitem__
        return (all(map(lt, starts, ends))
                and all(map(lt, map(at_end, en.stream_before), map(at_start, en.stream_after)))
                and not en.never_end
                and all(map(lt, map(at_end, en.records), map(at_end, en.waits)))
                and all(map(lt, map(at_start, en.peers), map(at_end, en.p2p)))
                and all(max(map(at_start, ids)) < min(map(at_end, ids)) for ids in en.instances))
    # start(o): o's previous op on its stream has ended before; end(o): o started before
    for s, e, p in zip(start, end, model.prev_on_stream, strict=True):
        if s is None:
            if e is not None:
                return False
            continue
        if e is not None and not s < e:
            return False
        if p is not None:
            pe = end[p]
            if pe is None or not pe < s:
                return False
    # end(o) of a wait or comm op: what it waits for has happened before
    for o in en.never_end:
        if end[o] is not None:
            return False
    for w, rec in zip(en.waits, en.records, strict=True):
        e = end[w]
        if e is not None:
            t = end[rec]
            if t is None or not t < e:
                return False
    for o, peer in zip(en.p2p, en.peers, strict=True):
        e = end[o]
        if e is not None:
            t = start[peer]
            if t is None or not t < e:
                return False
    for ids in en.instances:
        ended = [e for e in map(end.__getitem__, ids) if e is not None]
        if ended:
            # every member has started before the first member ends (a
            # member's own start is before its end)
            started = list(map(start.__getitem__, ids))
            if None in started or not max(cast("list[int]", started)) < min(ended):
                return False
    return True


def _realize(model: Model, run: Run) -> _Realized | str:
    """The run's events as keys that order them, or why the run is not admissible."""
    if _tie_free_admissible(model, run):
        return _Realized(run.start, run.end)
    got = _realize_in_order(model, run)
    if isinstance(got, str):
        return got
    _, ps, pe = got
    return _Realized(ps, pe)


def _not_enabled(model: Model, status: list[int], t: object, kind: str, o: int) -> str:
    return (f"at time {t}, the {kind} of {model.label(o)} is not enabled: "
            f"{model.why_not(status, kind, o)}")


def _realize_in_order(model: Model, run: Run
                      ) -> tuple[list[int], list[int | None], list[int | None]] | str:
    """The run's events in the order they happen (``o`` codes the start of op
    ``o``, ``n + o`` its end) and each op's start and end positions in that
    order, or why the run is not admissible.  Events at equal times (which a
    run should not have) are ordered greedily, starts first."""
    n = model.n
    start, end = run.start, run.end
    if len(start) != n or len(end) != n:
        return f"the run gives times for {len(start)}/{len(end)} ops but the schedule has {n}"
    for o, e in enumerate(end):
        if e is not None:
            s = start[o]
            if s is None:
                return f"{model.label(o)} ends at {e} but never starts"
            if e < s:
                return f"{model.label(o)} ends at {e} before it starts at {s}"
    # sort the events by (time, start before end, op)
    codes: list[int]
    times: list[Any]
    types = set(map(type, start))
    types.update(map(type, end))
    if types <= _INT_OR_NONE:
        ts = [t for t in start if t is not None]
        ts.extend(t for t in end if t is not None)
        tmin = min(ts, default=0)
        m = 2 * n
        keys = [(t - tmin) * m + o for o, t in enumerate(start) if t is not None]
        keys.extend((t - tmin) * m + n + o for o, t in enumerate(end) if t is not None)
        keys.sort()
        codes = [k % m for k in keys]
        times = [k // m + tmin for k in keys]
    else:  # times that are not plain ints: sort them as they are
        pairs: list[tuple[Any, int]] = [(t, o) for o, t in enumerate(start) if t is not None]
        pairs.extend((t, n + o) for o, t in enumerate(end) if t is not None)
        pairs.sort()
        codes = [c for _, c in pairs]
        times = [t for t, _ in pairs]

    # Check each event's enabling in turn.  Events at one time (which a run
    # should not have) go greedily: the first enabled start (in op order),
    # else the first enabled end, again and again.
    status = [NOT_STARTED] * n
    ps: list[int | None] = [None] * n
    pe: list[int | None] = [None] * n
    prev = model.prev_on_stream
    deps = model.end_deps
    order: list[int] | None = None  # the events as they fire, once a time has several
    fol: tuple[list[int | None], dict[int, list[int]]] | None = None
    total = len(codes)
    last = total - 1
    skip = 0
    for i, c in enumerate(codes):
        if i < skip:
            continue
        if i < last and times[i + 1] == times[i]:
            if order is None:
                order = codes[:i]
            if fol is None:
                fol = followers(model)
            j = i + 2
            while j < total and times[j] == times[i]:
                j += 1
            why = _fire_together(model, fol, codes[i:j], times[i], status, ps, pe, order)
            if why:
                return why
            skip = j
            continue
        if order is None:
            pos = i
        else:
            pos = len(order)
            order.append(c)
        if c < n:
            p = prev[c]
            if status[c] != NOT_STARTED or (p is not None and status[p] != ENDED):
                return _not_enabled(model, status, times[i], "start", c)
            status[c] = ACTIVE
            ps[c] = pos
        else:
            o = c - n
            d = deps[o]
            if status[o] != ACTIVE or d is None:
                return _not_enabled(model, status, times[i], "end", o)
            for p, need in d:
                if status[p] < need:
                    return _not_enabled(model, status, times[i], "end", o)
            status[o] = ENDED
            pe[o] = pos
    return (codes if order is None else order), ps, pe


def _fire_together(model: Model, fol: tuple[list[int | None], dict[int, list[int]]], group: list[int],
                   t: object, status: list[int], ps: list[int | None], pe: list[int | None],
                   order: list[int]) -> str:
    """Fire the events ``group`` (sorted: the starts by op, then the ends by
    op) of time ``t`` greedily: the first enabled start, else the first
    enabled end, again and again; append them to ``order``.  The enabled
    events wait in two heaps, and firing one re-examines only the events it
    can enable (``fol`` is :func:`followers` of the model).  Returns why an
    event is never enabled, or ""."""
    n = model.n
    next_on_stream, waiters = fol
    can_start, can_end = model.can_start, model.can_end
    pending = set(group)
    starts = [c for c in group if c < n and can_start(status, c)]
    ends = [c for c in group if c >= n and can_end(status, c - n)]
    queued = set(starts)
    queued.update(ends)
    while pending:
        if starts:
            pick = heappop(starts)
        elif ends:
            pick = heappop(ends)
        else:
            c = min(pending)
            return _not_enabled(model, status, t, _KINDS[c >= n], c % n)
        pending.discard(pick)
        if pick < n:
            o = pick
            status[o] = ACTIVE
            ps[o] = len(order)
            maybe = [n + o]
        else:
            o = pick - n
            status[o] = ENDED
            pe[o] = len(order)
            nxt = next_on_stream[o]
            maybe = [] if nxt is None else [nxt]
        order.append(pick)
        maybe.extend(n + w for w in waiters.get(o, ()))
        for c in maybe:
            if c in pending and c not in queued:
                if c < n:
                    if can_start(status, c):
                        queued.add(c)
                        heappush(starts, c)
                elif can_end(status, c - n):
                    queued.add(c)
                    heappush(ends, c)
    return ""


def realize(model: Model, run: Run) -> tuple[list[Event] | None, str]:
    """The run's events in the order they happen, or None and why the run is
    not admissible.  Events at equal times (which a run should not have) are
    ordered greedily, starts first."""
    got = _realize_in_order(model, run)
    if isinstance(got, str):
        return None, got
    n = model.n
    return [("start", c) if c < n else ("end", c - n) for c in got[0]], ""


def _meta_rule(model: Model, a: int | None, b: int | None) -> tuple[bool, str]:
    if a is None:
        return False, "the observation names no op"
    schedule = model.schedule
    x = schedule.ops[a]
    if b is None and x.meta.phase == "decode" and x.meta.sp is not None:
        return True, ""
    if b is not None:
        y = schedule.ops[b]
        if (x.meta.phase == y.meta.phase == "decode" and x.meta.step == y.meta.step
                and set(_seq_keys(x)) & set(_seq_keys(y))
                and x.meta.tokens is not None and y.meta.tokens is not None and x.meta.tokens != y.meta.tokens):
            return True, ""
    if b is None:
        return False, f"{model.label(a)} breaks no phase metadata rule"
    return False, f"{model.label(a)} and {model.label(b)} break no phase metadata rule together"


def _conflict(model: Model, a: int, b: int) -> bool:
    """Do ops a and b share a point of one rank, one of them writing it?"""
    ops = model.schedule.ops
    if a == b or ops[a].rank != ops[b].rank:
        return False
    ra = {pt for pt, _ in model.read_pts[a]}
    wa = {pt for pt, _ in model.write_pts[a]}
    rb = {pt for pt, _ in model.read_pts[b]}
    wb = {pt for pt, _ in model.write_pts[b]}
    return bool(wa & (rb | wb)) or bool(ra & wb)


def replay(schedule: Schedule, cex: Counterexample, *, model: Model | None = None) -> tuple[bool, str]:
    """``(True, "")`` when the counterexample reproduces on the explicit
    semantics, else ``(False, sentence)`` saying what did not.

    ``model`` is ``build_model(schedule, light=True)``, for a caller that
    replays several counterexamples of one schedule and builds it once; by
    default replay builds it."""
    if model is None:
        model = build_model(schedule, light=True)
    elif model.schedule is not schedule:
        raise ValueError("replay: the model was built for another schedule")
    obs = cex.observation
    n = model.n
    label = model.label
    for name in ("a", "b"):
        op = getattr(obs, name)
        if op is not None and not 0 <= op < n:
            return False, f"the observation names op {op}, which does not exist"

    if obs.kind == "meta":
        return _meta_rule(model, obs.a, obs.b)

    if obs.kind == "cycle":
        if model.matching.unmatched:
            return False, f"{label(min(model.matching.unmatched))} is unmatched, so this is no cycle of waits"
        final = quiesce(model, (NOT_STARTED,) * n)
        stuck = {o for o in range(n) if final[o] != ENDED}
        if not stuck:
            return False, "a complete run exists: every op ends"
        for step in cex.cycle:
            if step.op not in stuck:
                return False, f"{label(step.op)} is in the cycle but a maximal run ends it"
        return True, ""

    run = cex.run
    if run is None:
        return False, f"a {obs.kind!r} observation needs a run"
    got = _realize(model, run)
    if isinstance(got, str):
        return False, f"the run is not admissible: {got}"
    ps, pe = got.ps, got.pe

    if obs.kind == "hang":
        if run.complete:
            return False, "the run is complete, so nothing hangs"
        final = quiesce(model, tuple(ENDED if e is not None else ACTIVE if s is not None else NOT_STARTED
                                     for s, e in zip(run.start, run.end, strict=True)))
        stuck = {o for o in range(n) if final[o] != ENDED}
        if stuck != set(obs.blocked):
            extra = sorted(stuck - set(obs.blocked))
            missing = sorted(set(obs.blocked) - stuck)
            parts = []
            if extra:
                parts.append("also blocked: " + "; ".join(label(o) for o in extra))
            if missing:
                parts.append("not blocked: " + "; ".join(label(o) for o in missing))
            return False, "the ops that never end differ from the observation (" + ", ".join(parts) + ")"
        return True, ""

    a, b = obs.a, obs.b
    if obs.kind == "order":
        if a is None or b is None:
            return False, "an order observation needs ops a and b"
        sb, ea = ps[b], pe[a]
        if sb is not None and (ea is None or sb < ea):
            return True, ""
        return False, f"{label(b)} does not start before {label(a)} ends"

    if obs.kind == "overlap":
        if a is None or b is None:
            return False, "an overlap observation needs ops a and b"
        if not _conflict(model, a, b):
            return False, f"{label(a)} and {label(b)} do not conflict"
        sa, sb = ps[a], ps[b]
        if sa is None or sb is None:
            return False, f"{label(a)} and {label(b)} do not both start"
        both = max(sa, sb)
        ea, eb = pe[a], pe[b]
        if (ea is None or both < ea) and (eb is None or both < eb):
            return True, ""
        return False, f"{label(a)} and {label(b)} are never active at the same moment"

    if obs.kind == "read":
        return _replay_read(model, cex, ps, pe)

    return False, f"unknown observation kind {obs.kind!r}"


def _holds(region: Region, axes: tuple[str, ...]) -> list[tuple[int, int] | None]:
    """Per axis of the region's buffer: the interval ``(lo, hi)``, or None for
    a full axis."""
    out: list[tuple[int, int] | None] = []
    for axis in axes:
        iv = region.interval(axis)
        out.append(None if iv.lo == FULL_LO else (iv.lo, iv.hi))
    return out


def _in_region(points: set[Point], rank: int, region: Region, axes: tuple[str, ...]) -> list[Point]:
    """The points of ``points`` (inside the modelled universe) that
    ``region_points(..., rank, region)`` holds.  Inside the universe, a full
    axis holds every coordinate and a finite one the coordinates of its
    interval, so this needs no universe."""
    ivs = _holds(region, axes)
    return [pt for pt in points if pt[0] == rank and pt[1] == region.buffer
            and all(iv is None or iv[0] <= c < iv[1] for c, iv in zip(pt[2], ivs, strict=True))]


class _Tracked:
    """The points a bad read is about (of one rank and buffer, inside the
    universe), and which of them a region holds, found either by listing the
    region's part within the points' bounding box or by testing each point,
    whichever is less work."""

    def __init__(self, points: set[Point], rank: int, buffer: str, axes: tuple[str, ...]) -> None:
        self.points = points
        self.rank = rank
        self.buffer = buffer
        self.axes = axes
        coords = [pt[2] for pt in points]
        self.box = [(min(cs), max(cs) + 1) for cs in zip(*coords, strict=True)] if coords else []

    def held_by(self, region: Region) -> list[Point]:
        if region.buffer != self.buffer or not self.points:
            return []
        ranges: list[range] = []
        size = 1
        for iv, (blo, bhi) in zip(_holds(region, self.axes), self.box, strict=True):
            r = range(blo, bhi) if iv is None else range(max(iv[0], blo), min(iv[1], bhi))
            ranges.append(r)
            size *= len(r)
        if size <= len(self.points):
            return [pt for coords in product(*ranges) if (pt := (self.rank, self.buffer, coords)) in self.points]
        return _in_region(self.points, self.rank, region, self.axes)


def _replay_read(model: Model, cex: Counterexample,
                 ps: Sequence[int | None], pe: Sequence[int | None]) -> tuple[bool, str]:
    """Reproduce a bad read.  Memory matters only at the points the read
    expects the value in, so only they are tracked: their initial contents,
    and the writes to them in the order the run ends the writers."""
    schedule = model.schedule
    obs = cex.observation
    a = obs.a
    if a is None:
        return False, "a read observation needs op a"
    label = model.label
    try:
        region = resolve_region(obs.region, schedule.buffer_map, "replay")
    except SyncproofError as exc:
        return False, f"the observation's region does not parse: {exc}"
    op = schedule.ops[a]
    expected = obs.expected
    axes = schedule.buffer_map[region.buffer].axis_names
    wanted = {pt for pt, v in model.read_pts[a] if v == expected}
    points: set[Point] = set(_in_region(wanted, op.rank, region, axes))
    if not points:
        return False, f"{label(a)} does not read {obs.region} expecting {expected}"
    sa = ps[a]
    if sa is None:
        return False, f"{label(a)} never starts in the run"
    ea = pe[a]
    tracked = _Tracked(points, op.rank, region.buffer, axes)
    mem: dict[Point, str] = {}
    for init in schedule.init:
        if init.applies_to(op.rank):
            for pt in tracked.held_by(init.region):
                mem[pt] = init.value
    # only the ops whose writes reach the read's region on its rank can matter,
    # and only at the run's positions of their ends
    ends: list[tuple[int, int]] = []
    for w in schedule.by_rank[op.rank]:
        if w.writes and any(acc.region.overlaps(region) for acc in w.writes):
            i = pe[w.id]
            if i is not None:
                ends.append((i, w.id))
    ends.sort()
    wrong = False
    at_start: set[str] | None = None
    for i, o in ends:
        if i > sa and at_start is None:
            at_start = {mem.get(pt, NOTHING) for pt in points}
            wrong = any(v != expected for v in at_start)
        overwrites = at_start is not None and o != a and (ea is None or i < ea)
        for acc in schedule.ops[o].writes:
            val = acc.value
            if val is None:
                continue
            for pt in tracked.held_by(acc.region):
                if overwrites and val != expected:
                    wrong = True
                mem[pt] = val
    if at_start is None:
        at_start = {mem.get(pt, NOTHING) for pt in points}
        wrong = any(v != expected for v in at_start)
    if not wrong:
        return False, (f"{label(a)} sees {expected} in {obs.region} at its start and nobody overwrites"
                       " it while it runs")
    if obs.seen and obs.seen[0] not in at_start:
        return False, (f"{label(a)} sees {', '.join(sorted(at_start))} in {obs.region} at its start,"
                       f" not {obs.seen[0]}")
    return True, ""
