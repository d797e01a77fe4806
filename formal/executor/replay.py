"""Replay a counterexample from the engine on the operational model.

The run is checked event by event under the setting of the counterexample's
property (``deadlock``: messages of capacity 0 unless eager, serial progress
unless the schedule asserts concurrent progress; the other properties:
buffered messages unless rendezvous, concurrent progress): every start and
end must be enabled when it happens, in time order.  Then the wrong
observation the counterexample claims is reproduced: a bad read, an overlap,
an order inversion, a hang, a cycle of waits, a message that carried other
values than its receiver declares, or a broken metadata rule.

Replay is linear in the schedule: when no two events share a time (as in the
engine's runs), each event's enabling is checked directly against the times
of what it waits for, with no sorting; a bad read tracks memory only at the
points the read expects its value in.  A caller replaying several
counterexamples of one schedule passes ``model=build_model(schedule,
light=True)`` to build the model once.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from heapq import heappop, heappush
from itertools import compress, product
from operator import is_not, lt
from typing import Any, cast

from ..errors import SyncproofError
from ..ir import Interval, Kind, Region, Schedule
from ..ir.fileformat import resolve_region
from ..ir.region import FULL_LO
from ..result import Counterexample, Run
from .explicit import NOTHING, Model, build_model, effective_writes, memory_blocks, sequence_keys
from .matching import match, message_of
from .mechanism import DATA, DEADLOCK, REASON_TEXT, STREAM, Enabling, Index, fire_all, setting_for

Event = tuple[str, int]

_KINDS = ("start", "end")
_PUT = Kind.PUT
_NONE_TYPE = type(None)
_INT_OR_NONE = frozenset({int, _NONE_TYPE})


class _Realized:
    """An admissible run: for each op, a key of its start and of its end
    event (None: it never happens) that orders the events as they happen.
    The keys are the run's times when no two events share one, else the
    events' positions in the order the greedy tie-breaking picks."""

    __slots__ = ("ps", "pe", "happened")

    def __init__(self, ps: Sequence[int | None], pe: Sequence[int | None],
                 happened: bytearray | None = None) -> None:
        self.ps = ps
        self.pe = pe
        self.happened = happened  # the events that happened, when they differ from the run's (a partial run)


def _tie_free_admissible(en: Enabling, run: Run) -> bool:
    """Is ``run`` admissible under ``en``, with integer times and no two
    events at one time?  Then every event needs only the events before it in
    time, so this checks each condition directly from the times, without
    ordering the events.  False also when it cannot tell;
    :func:`_realize_in_order` decides those runs (and says why one is not
    admissible)."""
    n = en.n
    start, end = run.start, run.end
    if len(start) != n or len(end) != n:
        return False
    start_types = set(map(type, start))
    end_types = set(map(type, end))
    if not start_types <= _INT_OR_NONE or not end_types <= _INT_OR_NONE:
        return False
    events = 2 * n
    partial = _NONE_TYPE in start_types or _NONE_TYPE in end_types
    if partial:
        events -= start.count(None) + end.count(None)
    times = set(start)
    times.update(end)
    times.discard(None)
    if len(times) != events:
        return False  # two events share a time
    t_of: list[int | None] = list(start)
    t_of.extend(end)
    at = t_of.__getitem__
    if not partial:
        tt = cast("list[int]", t_of)
        if not all(map(lt, cast("tuple[int, ...]", start), cast("tuple[int, ...]", end))) or en.never:
            return False
        for before, after in en.pairs.values():
            if not all(map(lt, map(tt.__getitem__, before), map(tt.__getitem__, after))):
                return False
        return all(max(map(tt.__getitem__, mem)) < min(map(tt.__getitem__, deps))
                   for mem, deps in zip(en.bar_members, en.bar_deps, strict=True))
    for s, e in zip(start, end, strict=True):
        if e is not None and (s is None or not s < e):
            return False
    for c in en.never:
        if t_of[c] is not None:
            return False
    for before, after in en.pairs.values():
        for b, a in zip(before, after, strict=True):
            ta = t_of[a]
            if ta is not None:
                tb = t_of[b]
                if tb is None or not tb < ta:
                    return False
    for mem, deps in zip(en.bar_members, en.bar_deps, strict=True):
        happened = [t for t in map(at, deps) if t is not None]
        if happened:
            ms = list(map(at, mem))
            if None in ms or not max(cast("list[int]", ms)) < min(happened):
                return False
    return True


def _realize(model: Model, run: Run, setting: str) -> _Realized | str:
    """The run's events as keys that order them, or why the run is not admissible."""
    if run.known is not None:
        return _realize_partial(model, run, setting)
    en = model.enabling(setting)
    if _tie_free_admissible(en, run):
        return _Realized(run.start, run.end)
    got = _realize_in_order(model, run, setting)
    if isinstance(got, str):
        return got
    _, ps, pe = got
    return _Realized(ps, pe)


def why_not(model: Model, ix: Index, happened: Sequence[int], c: int) -> str:
    """Why event ``c`` (``o``: start of op o, ``n + o``: its end) is not enabled."""
    n = model.n
    label = model.label
    o = c % n
    if c < n:
        if happened[c]:
            return "it has already started"
    else:
        if not happened[o]:
            return "it has not started"
        if happened[c]:
            return "it has already ended"
        if c in ix.never:
            return "it is unmatched and can never end"
    missing: list[tuple[int, int]] = [(d, why) for d, why in ix.pred_reasons(c) if not happened[d]]
    en = ix.en
    for k in ix.bars_of(c):
        missing.extend((d, en.bar_why[k]) for d in en.bar_members[k] if not happened[d])
    if not missing:
        return ""
    d, why = min(missing, key=lambda dw: (dw[1], dw[0]))
    verb = "started" if d < n else "ended"
    if why == STREAM:
        return f"the previous op on its stream, {label(d % n)}, has not ended"
    return f"{label(d % n)} has not {verb} ({REASON_TEXT[why]})"


def _not_enabled(model: Model, ix: Index, happened: Sequence[int], t: object, c: int) -> str:
    n = model.n
    return (f"at time {t}, the {_KINDS[c >= n]} of {model.label(c % n)} is not enabled: "
            f"{why_not(model, ix, happened, c)}")


def _realize_in_order(model: Model, run: Run, setting: str = DATA
                      ) -> tuple[list[int], list[int | None], list[int | None]] | str:
    """The run's events in the order they happen (``o`` codes the start of op
    ``o``, ``n + o`` its end) and each op's start and end positions in that
    order, or why the run is not admissible.  Events at equal times (which a
    run should not have) are ordered greedily: the first enabled start (in op
    order), else the first enabled end, again and again."""
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
    pairs: list[tuple[Any, int]] = [(t, o) for o, t in enumerate(start) if t is not None]
    pairs.extend((t, n + o) for o, t in enumerate(end) if t is not None)
    pairs.sort()
    codes = [c for _, c in pairs]
    times = [t for t, _ in pairs]

    en = model.enabling(setting)
    ix = en.index()
    need = ix.needs()
    left = [len(m) for m in en.bar_members]
    succ, so = ix.succ, ix.succ_offs
    memb, mo = ix.member_of, ix.member_offs
    happened = bytearray(2 * n)
    ps: list[int | None] = [None] * n
    pe: list[int | None] = [None] * n
    order: list[int] = []

    def fire(c: int) -> list[int]:
        """Fire ``c``; returns the events whose last condition it met."""
        happened[c] = 1
        if c < n:
            ps[c] = len(order)
        else:
            pe[c - n] = len(order)
        order.append(c)
        freed: list[int] = []
        for d in succ[so[c]:so[c + 1]]:
            need[d] -= 1
            if need[d] == 0:
                freed.append(d)
        for k in memb[mo[c]:mo[c + 1]]:
            left[k] -= 1
            if left[k] == 0:
                for d in en.bar_deps[k]:
                    need[d] -= 1
                    if need[d] == 0:
                        freed.append(d)
        if c < n:
            need[n + c] -= 1
            if need[n + c] == 0:
                freed.append(n + c)
        return freed

    total = len(codes)
    i = 0
    while i < total:
        t = times[i]
        j = i + 1
        while j < total and times[j] == t:
            j += 1
        if j == i + 1:
            c = codes[i]
            if need[c] != 0:
                return _not_enabled(model, ix, happened, t, c)
            fire(c)
        else:
            # events at one time: fire them greedily, starts first
            pending = set(codes[i:j])
            starts = [c for c in pending if c < n and need[c] == 0]
            ends = [c for c in pending if c >= n and need[c] == 0]
            starts.sort()
            ends.sort()
            while pending:
                if starts:
                    pick = heappop(starts)
                elif ends:
                    pick = heappop(ends)
                else:
                    return _not_enabled(model, ix, happened, t, min(pending))
                pending.discard(pick)
                for d in fire(pick):
                    if d in pending:
                        heappush(starts if d < n else ends, d)
        i = j
    return order, ps, pe


def _realize_partial(model: Model, run: Run, setting: str) -> _Realized | str:
    """A partial run (``run.known``: the ops whose times it gives) completed
    into an admissible run, or why none exists.

    The known ops' events (and their absence: a known op with no end never
    ends) are pinned: they happen in the order of their times, each only when
    its turn comes, and it must be enabled then.  Every other event happens
    as soon as it is enabled.  As no event is ever disabled, this finds an
    admissible run whenever one with the pinned events in that order exists
    (an unpinned event that the full run had before a pinned one is enabled
    by then, and firing an event early never hurts): the run the report was
    cut from is one.  What a replay looks at (the observation's ops, the
    writers of a bad read, a weak collective's members) is pinned when the
    report is written (:func:`replay_needs`), so the observation is judged on
    the stored times."""
    n = model.n
    start, end = run.start, run.end
    known = run.known or ()
    if len(start) != n or len(end) != n:
        return f"the run gives times for {len(start)}/{len(end)} ops but the schedule has {n}"
    pinned = bytearray(2 * n)
    turns: list[tuple[int, int, int]] = []
    for o in known:
        if not 0 <= o < n:
            return f"the run gives times for op {o}, which does not exist"
        pinned[o] = pinned[n + o] = 1
        s, e = start[o], end[o]
        if e is not None and s is None:
            return f"{model.label(o)} ends at {e} but never starts"
        if s is not None:
            if e is not None and e < s:
                return f"{model.label(o)} ends at {e} before it starts at {s}"
            turns.append((s, 0, o))
        if e is not None:
            turns.append((e, 1, n + o))
    turns.sort()
    en = model.enabling(setting)
    ix = en.index()
    need = ix.needs()
    left = [len(m) for m in en.bar_members]
    succ, so = ix.succ, ix.succ_offs
    memb, mo = ix.member_of, ix.member_offs
    happened = bytearray(2 * n)
    ps: list[int | None] = [None] * n
    pe: list[int | None] = [None] * n
    count = 0
    ready = [c for c in range(2 * n) if need[c] == 0 and not pinned[c]]

    def met(d: int) -> None:
        need[d] -= 1
        if need[d] == 0 and not pinned[d]:
            ready.append(d)

    def fire(c: int) -> None:
        nonlocal count
        happened[c] = 1
        if c < n:
            ps[c] = count
        else:
            pe[c - n] = count
        count += 1
        for d in succ[so[c]:so[c + 1]]:
            met(d)
        for k in memb[mo[c]:mo[c + 1]]:
            left[k] -= 1
            if left[k] == 0:
                for d in en.bar_deps[k]:
                    met(d)
        if c < n:
            met(n + c)

    def drain() -> None:
        while ready:
            c = ready.pop()
            if not happened[c]:
                fire(c)

    drain()
    for t, _, c in turns:
        if need[c] != 0:
            return _not_enabled(model, ix, happened, t, c)
        fire(c)
        drain()
    return _Realized(ps, pe, happened)


def replay_needs(schedule: Schedule, cex: Counterexample) -> set[int]:
    """The ops whose times a replay of ``cex`` looks at: a partial run that
    keeps at least these (:attr:`Run.known`) replays as the full run does.
    The observation's ops, the culprits, the cycle and the missing order; a
    weak collective's instance (its read lasts until every member ends); for
    a bad read, every op that writes the read's region on its rank."""
    n = len(schedule.ops)
    obs = cex.observation
    need: set[int] = set(cex.culprits)
    need.update(o for o in (obs.a, obs.b) if o is not None)
    for st in cex.cycle:
        need.update((st.op, st.next_op))
    if cex.missing_edge is not None:
        need.update(cex.missing_edge)
    need = {o for o in need if 0 <= o < n}
    ops = schedule.ops
    if any(ops[o].completion == "weak" and ops[o].kind.is_collective for o in need):
        instance = match(schedule).instance
        for o in list(need):
            need.update(instance.get(o, ()))
    if obs.kind == "read" and obs.a is not None and 0 <= obs.a < n:
        rank = ops[obs.a].rank
        writers = [w for w in schedule.by_rank[rank] if w.writes and w.kind is not _PUT]
        writers.extend(w for w in ops if w.kind is _PUT and w.peer == rank and w.writes)
        try:
            region: Region | None = resolve_region(obs.region, schedule.buffer_map, "replay")
        except SyncproofError:
            region = None  # replay will say the region does not parse; keep every writer
        if region is not None:  # the writers _replay_read looks at: a write that overlaps the read's region
            blocks = memory_blocks(schedule)

            def in_block(r: Region) -> Region:
                name = blocks.get((rank, r.buffer))
                return r if name is None else replace(r, buffer=name)

            target = in_block(region)
            writers = [w for w in writers if any(in_block(acc.region).overlaps(target) for acc in w.writes)]
        need.update(w.id for w in writers)
    return need


def partial_run(run: Run, keep: set[int] | frozenset[int]) -> Run:
    """``run`` cut to the ops ``keep`` (a partial run: see :attr:`Run.known`)."""
    known = tuple(sorted(keep))
    start: list[int | None] = [None] * len(run.start)
    end: list[int | None] = [None] * len(run.end)
    for o in known:
        start[o], end[o] = run.start[o], run.end[o]
    return Run(tuple(start), tuple(end), known)


def realize(model: Model, run: Run, setting: str = DATA) -> tuple[list[Event] | None, str]:
    """The run's events in the order they happen, or None and why the run is
    not admissible under ``setting``.  Events at equal times (which a run
    should not have) are ordered greedily, starts first."""
    got = _realize_in_order(model, run, setting)
    if isinstance(got, str):
        return None, got
    n = model.n
    return [("start", c) if c < n else ("end", c - n) for c in got[0]], ""


def _happened(n: int, run: Run) -> bytearray:
    h = bytearray(2 * n)
    for o in compress(range(n), map(is_not, run.start, [None] * n)):
        h[o] = 1
    for o in compress(range(n), map(is_not, run.end, [None] * n)):
        h[n + o] = 1
    return h


def _meta_rule(model: Model, a: int | None, b: int | None) -> tuple[bool, str]:
    if a is None:
        return False, "the observation names no op"
    schedule = model.schedule
    x = schedule.ops[a]
    if b is None and x.meta.phase == "decode" and x.meta.sp is not None:
        return True, ""
    if b is not None:
        y = schedule.ops[b]
        keys = sequence_keys(schedule)
        if (x.meta.phase == y.meta.phase == "decode" and x.meta.step is not None and x.meta.step == y.meta.step
                and set(keys(x)) & set(keys(y))
                and x.meta.tokens is not None and y.meta.tokens is not None and x.meta.tokens != y.meta.tokens):
            return True, ""
    if b is None:
        return False, f"{model.label(a)} breaks no phase metadata rule"
    return False, f"{model.label(a)} and {model.label(b)} break no phase metadata rule together"


def _norm(values: Sequence[str | None]) -> Counter[str]:
    """A multiset of values as text; the ways to write "no value" are one."""
    return Counter("*" if v in (None, "", "*", "None", NOTHING) else str(v) for v in values)


def _message(model: Model, a: int | None, b: int | None, expected: str,
             seen: tuple[str, ...]) -> tuple[bool, str]:
    """A receiver ``a`` whose declared values differ from what its matched
    sender ``b`` carried."""
    if a is None or b is None:
        return False, "a message observation needs ops a (the receiver) and b (the sender)"
    label = model.label
    msg = message_of(model.schedule, model.matching, a)
    if msg is None:
        return False, f"{label(a)} receives no message (it is no matched recv or non-root broadcast member)"
    if msg.sender != b:
        return False, f"{label(a)} receives from {label(msg.sender)}, not from {label(b)}"
    if msg.carried is None:
        return False, f"{label(b)} declares no value, so {label(a)}'s values are taken on trust"
    if not msg.mismatch:
        return False, f"{label(a)} declares the values {label(b)} carried"
    if _norm(expected.split(", ") if expected else []) != _norm(msg.declared):
        return False, f"{label(a)} declares {', '.join(msg.declared) or 'no value'}, not {expected}"
    if _norm(seen) != _norm(msg.carried):
        return False, f"{label(b)} carried {', '.join(msg.carried)}, not {', '.join(seen)}"
    return True, ""


def _accesses(model: Model, o: int) -> tuple[list[tuple[int, Region]], list[tuple[int, Region]]]:
    """Op ``o``'s reads and writes as ``(rank, region of its block)``: the
    memory they touch (a put writes its target's memory).  Regions, not
    points: work does not grow with a region's size."""
    op = model.schedule.ops[o]
    reads = [(op.rank, _in_block(model, op.rank, acc.region)) for acc in op.reads]
    writes = [(rank, _in_block(model, rank, region))
              for rank, region, _ in effective_writes(model.schedule, model.matching, o)]
    return reads, writes


def _touch(xs: list[tuple[int, Region]], ys: list[tuple[int, Region]]) -> bool:
    return any(rx == ry and x.overlaps(y) for rx, x in xs for ry, y in ys)


def _conflicts(model: Model, a: int, b: int) -> tuple[bool, bool, bool]:
    """Do ops a and b conflict with a write of both / a write of a and a read
    of b / a read of a and a write of b?  (Every axis's modelled universe
    holds a point outside each finite interval, so two regions share a
    modelled point exactly when their boxes overlap.)"""
    if a == b:
        return False, False, False
    ra, wa = _accesses(model, a)
    rb, wb = _accesses(model, b)
    return _touch(wa, wb), _touch(wa, rb), _touch(ra, wb)


def _read_end(model: Model, o: int, pe: Sequence[int | None]) -> int | None:
    """Where op ``o``'s read of its input ends: its end, or for a weak
    collective the last end of its instance (None: never)."""
    inst = model.weak.get(o)
    if inst is None:
        return pe[o]
    ends = [pe[m] for m in inst]
    return None if None in ends else max(cast("list[int]", ends))


def replay(schedule: Schedule, cex: Counterexample, *, model: Model | None = None) -> tuple[bool, str]:
    """``(True, "")`` when the counterexample reproduces on the operational
    model, else ``(False, sentence)`` saying what did not.

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
    setting = setting_for(cex.property)

    if obs.kind == "meta":
        return _meta_rule(model, obs.a, obs.b)

    if obs.kind == "message":
        ok, why = _message(model, obs.a, obs.b, obs.expected, obs.seen)
        if ok and cex.run is not None:
            got = _realize(model, cex.run, setting)
            if isinstance(got, str):
                return False, f"the run is not admissible: {got}"
        return ok, why

    if obs.kind == "cycle":
        return _cycle(model, cex)

    run = cex.run
    if run is None:
        return False, f"a {obs.kind!r} observation needs a run"

    if obs.kind == "hang":
        if run.complete:
            return False, "the run is complete, so nothing hangs"
        # matching: the hang is the same whatever the setting says; accept it at either
        tries = (DEADLOCK, DATA) if cex.property == "matching" else (setting,)
        why = ""
        for st in tries:
            ok, why = _hang(model, run, st, set(obs.blocked))
            if ok:
                return True, ""
        return False, why

    got = _realize(model, run, setting)
    if isinstance(got, str):
        return False, f"the run is not admissible: {got}"
    ps, pe = got.ps, got.pe

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
        ww, wr, rw = _conflicts(model, a, b)
        if not (ww or wr or rw):
            return False, f"{label(a)} and {label(b)} do not conflict"
        sa, sb = ps[a], ps[b]
        if sa is None or sb is None:
            return False, f"{label(a)} and {label(b)} do not both start"
        both = max(sa, sb)
        ea, eb = pe[a], pe[b]
        # the interval of each access that takes part in a conflict
        for conflict, end_a, end_b in ((ww, ea, eb), (wr, ea, _read_end(model, b, pe)),
                                       (rw, _read_end(model, a, pe), eb)):
            if conflict and (end_a is None or both < end_a) and (end_b is None or both < end_b):
                return True, ""
        return False, f"{label(a)} and {label(b)} are never active at the same moment"

    if obs.kind == "read":
        return _replay_read(model, cex, ps, pe)

    return False, f"unknown observation kind {obs.kind!r}"


def _hang(model: Model, run: Run, setting: str, blocked: set[int]) -> tuple[bool, str]:
    got = _realize(model, run, setting)
    if isinstance(got, str):
        return False, f"the run is not admissible: {got}"
    n = model.n
    label = model.label
    now = got.happened if got.happened is not None else _happened(n, run)
    final = fire_all(model.enabling(setting), now)
    stuck = {o for o in range(n) if not final[n + o]}
    if stuck != blocked:
        return False, _blocked_differ(label, stuck, blocked)
    return True, ""


def _blocked_differ(label: Callable[[int], str], stuck: set[int], blocked: set[int]) -> str:
    """Why a replayed hang does not match its observation: which ops differ."""
    parts = []
    if stuck - blocked:
        parts.append("also blocked: " + "; ".join(label(o) for o in sorted(stuck - blocked)))
    if blocked - stuck:
        parts.append("not blocked: " + "; ".join(label(o) for o in sorted(blocked - stuck)))
    return "the ops that never end differ from the observation (" + ", ".join(parts) + ")"


def _cycle(model: Model, cex: Counterexample) -> tuple[bool, str]:
    """A deadlock: at capacity 0 and serial progress, the run (a partial run,
    when given) is admissible, nothing further can happen after it, and the
    ops on the cycle never end."""
    n = model.n
    label = model.label
    if model.matching.unmatched:
        return False, f"{label(min(model.matching.unmatched))} is unmatched, so this is no cycle of waits"
    en = model.enabling(DEADLOCK)
    run = cex.run
    if run is None:
        final = model.final(DEADLOCK)
    else:
        got = _realize(model, run, DEADLOCK)
        if isinstance(got, str):
            return False, f"the run is not admissible: {got}"
        now = got.happened if got.happened is not None else _happened(n, run)
        final = fire_all(en, now)
        if final != now:
            c = next(c for c in range(2 * n) if final[c] and not now[c])
            return False, (f"the run is not maximal: the {_KINDS[c >= n]} of {label(c % n)} can still happen"
                           " after it")
    stuck = {o for o in range(n) if not final[n + o]}
    if not stuck:
        return False, "a complete run exists: every op ends"
    for step in cex.cycle:
        for o in (step.op, step.next_op):
            if o not in stuck:
                return False, f"{label(o)} is in the cycle but a maximal run ends it"
    blocked = set(cex.observation.blocked)
    if blocked and blocked != stuck:
        return False, _blocked_differ(label, stuck, blocked)
    return True, ""


def _clip(model: Model, region: Region) -> Region | None:
    """``region`` with every full axis cut to the axis's modelled universe
    (the points the executor models), or None when nothing is left."""
    box = []
    for axis, iv in region.box:
        if iv.lo == FULL_LO:
            lo, hi = model.universes[(region.buffer, axis)]
            if lo >= hi:
                return None
            iv = Interval(lo, hi)
        box.append((axis, iv))
    return Region(region.buffer, tuple(box))


class _Cells:
    """The memory a bad read is about, as cells instead of points.

    ``boxes`` are where the read expects its value (regions of one block on
    one rank); ``cuts`` are the regions that are written there (init entries
    and writes).  Every axis is cut at every bound of them, so each cut
    region holds a cell whole or not at all, and one value per cell is
    memory exactly.  A cell is named by its lowest corner.  The work grows
    with the number of regions, never with their sizes (a region of 2^40
    elements is one cell)."""

    def __init__(self, boxes: list[Region], cuts: list[Region], axes: tuple[str, ...]) -> None:
        self.axes = axes
        self.buffer = boxes[0].buffer if boxes else ""
        lo = [min(b.interval(a).lo for b in boxes) for a in axes]
        hi = [max(b.interval(a).hi for b in boxes) for a in axes]
        self.bounds: list[list[int]] = []
        for k, axis in enumerate(axes):
            marks = {lo[k], hi[k]}
            for r in (*boxes, *cuts):
                iv = r.interval(axis)
                marks.update(x for x in (iv.lo, iv.hi) if lo[k] < x < hi[k])
            self.bounds.append(sorted(marks))
        self.cells: set[tuple[int, ...]] = set()
        for b in boxes:
            self.cells.update(self._corners(b))

    def _corners(self, region: Region) -> list[tuple[int, ...]]:
        ranges: list[list[int]] = []
        for axis, marks in zip(self.axes, self.bounds, strict=True):
            iv = region.interval(axis)
            i, j = bisect_left(marks, iv.lo), bisect_left(marks, iv.hi)
            ranges.append(marks[i:min(j, len(marks) - 1)])  # the last mark is no cell's corner
        return list(product(*ranges))

    def held_by(self, region: Region | None) -> list[tuple[int, ...]]:
        """The cells ``region`` holds (it must be one of the cuts, or hold none partly)."""
        if region is None or region.buffer != self.buffer or not self.cells:
            return []
        return [c for c in self._corners(region) if c in self.cells]


def _in_block(model: Model, rank: int, region: Region) -> Region:
    """``region`` on ``rank`` as a region of the block that holds its buffer
    there (a buffer that reuses a freed block touches that block's memory)."""
    blocks = model.blocks
    if not blocks:
        return region
    name = blocks.get((rank, region.buffer))
    return region if name is None else replace(region, buffer=name)


def _clip_in_block(model: Model, rank: int, region: Region) -> Region | None:
    clipped = _clip(model, region)
    return _in_block(model, rank, clipped) if clipped is not None else None


def _replay_read(model: Model, cex: Counterexample,
                 ps: Sequence[int | None], pe: Sequence[int | None]) -> tuple[bool, str]:
    """Reproduce a bad read.  Memory matters only at the points the read
    expects the value in, so only they are tracked: their initial contents,
    and the writes to them (as they land: puts in their target's memory,
    messages with what they carried) in the order the run ends the writers."""
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
    rank = op.rank
    expected = obs.expected
    axes = schedule.buffer_map[region.buffer].axis_names
    # memory is per block: the observation names the block (or a buffer that holds it)
    looked = _clip_in_block(model, rank, region)
    region = _in_block(model, rank, region)
    boxes: list[Region] = []
    for acc in op.reads:
        if acc.value == expected and looked is not None:
            mine = _clip_in_block(model, rank, acc.region)
            part = mine.intersect(looked) if mine is not None else None
            if part is not None:
                boxes.append(part)
    if not boxes:
        return False, f"{label(a)} does not read {obs.region} expecting {expected}"
    sa = ps[a]
    if sa is None:
        return False, f"{label(a)} never starts in the run"
    ea = _read_end(model, a, pe)
    inits = [(_clip_in_block(model, rank, init.region), init.value)
             for init in schedule.init if init.applies_to(rank)]
    # only the ops whose writes land in the read's region on its rank can
    # matter (its rank's ops, and puts to it), at the run's positions of their ends
    writers = [w for w in schedule.by_rank[rank] if w.writes and w.kind is not _PUT]
    writers.extend(w for w in schedule.ops if w.kind is _PUT and w.peer == rank and w.writes)
    ends: list[tuple[int, int, list[tuple[Region | None, str]]]] = []
    for w in writers:
        if any(_in_block(model, rank, acc.region).overlaps(region) for acc in w.writes):
            i = pe[w.id]
            if i is not None:
                lands = [(_clip_in_block(model, rank, wregion), val)
                         for wrank, wregion, val in effective_writes(schedule, model.matching, w.id)
                         if wrank == rank]
                ends.append((i, w.id, lands))
    ends.sort(key=lambda e: (e[0], e[1]))
    cuts = [r for r, _ in inits if r is not None]
    cuts.extend(r for _, _, lands in ends for r, _ in lands if r is not None)
    tracked = _Cells(boxes, cuts, axes)
    points = tracked.cells
    mem: dict[tuple[int, ...], str] = {}
    for init_region, value in inits:
        for pt in tracked.held_by(init_region):
            mem[pt] = value
    wrong = False
    at_start: set[str] | None = None
    for i, o, lands in ends:
        if i > sa and at_start is None:
            at_start = {mem.get(pt, NOTHING) for pt in points}
            wrong = any(v != expected for v in at_start)
        overwrites = at_start is not None and o != a and (ea is None or i < ea)
        for wregion, val in lands:
            for pt in tracked.held_by(wregion):
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
