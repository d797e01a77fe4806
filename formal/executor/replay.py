"""Replay a counterexample from the engine on the explicit semantics.

The run is checked event by event (every start and end must be enabled when it
happens, in time order) and then the wrong observation the counterexample
claims is reproduced: a bad read, an overlap, an order inversion, a hang, a
cycle of waits or a broken metadata rule.
"""

from __future__ import annotations

from itertools import groupby

from ..errors import SyncproofError
from ..ir import Schedule
from ..ir.fileformat import resolve_region
from ..result import Counterexample, Run
from .explicit import ACTIVE, ENDED, NOT_STARTED, NOTHING, Model, Point, Status, _seq_keys, build_model, quiesce

Event = tuple[str, int]


def realize(model: Model, run: Run) -> tuple[list[Event] | None, str]:
    """The run's events in the order they happen, or None and why the run is
    not admissible.  Events at equal times (which a run should not have) are
    ordered greedily, starts first."""
    n = model.n
    if len(run.start) != n or len(run.end) != n:
        return None, f"the run gives times for {len(run.start)}/{len(run.end)} ops but the schedule has {n}"
    timed: list[tuple[int, int, str, int]] = []
    for o in range(n):
        s, e = run.start[o], run.end[o]
        if s is not None:
            timed.append((s, 0, "start", o))
        if e is not None:
            if s is None:
                return None, f"{model.label(o)} ends at {e} but never starts"
            if e < s:
                return None, f"{model.label(o)} ends at {e} before it starts at {s}"
            timed.append((e, 1, "end", o))
    timed.sort()
    status = [NOT_STARTED] * n
    order: list[Event] = []
    for t, grp in groupby(timed, key=lambda x: x[0]):
        pending = [(kind, o) for _, _, kind, o in grp]
        while pending:
            cur = status
            pick = next((ev for ev in pending if ev[0] == "start" and model.can_start(cur, ev[1])), None)
            if pick is None:
                pick = next((ev for ev in pending if ev[0] == "end" and model.can_end(cur, ev[1])), None)
            if pick is None:
                kind, o = pending[0]
                return None, (f"at time {t}, the {kind} of {model.label(o)} is not enabled: "
                              f"{model.why_not(cur, kind, o)}")
            pending.remove(pick)
            status[pick[1]] = ACTIVE if pick[0] == "start" else ENDED
            order.append(pick)
    return order, ""


def _status_after(n: int, order: list[Event]) -> Status:
    status = [NOT_STARTED] * n
    for kind, o in order:
        status[o] = ACTIVE if kind == "start" else ENDED
    return tuple(status)


def _positions(n: int, order: list[Event]) -> tuple[list[int | None], list[int | None]]:
    ps: list[int | None] = [None] * n
    pe: list[int | None] = [None] * n
    for i, (kind, o) in enumerate(order):
        (ps if kind == "start" else pe)[o] = i
    return ps, pe


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


def replay(schedule: Schedule, cex: Counterexample) -> tuple[bool, str]:
    """``(True, "")`` when the counterexample reproduces on the explicit
    semantics, else ``(False, sentence)`` saying what did not."""
    model = build_model(schedule, light=True)
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
    order, why = realize(model, run)
    if order is None:
        return False, f"the run is not admissible: {why}"
    ps, pe = _positions(n, order)

    if obs.kind == "hang":
        if run.complete:
            return False, "the run is complete, so nothing hangs"
        final = quiesce(model, _status_after(n, order))
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
        inf = 2 * len(order) + 1
        ea, eb = pe[a], pe[b]
        if max(sa, sb) < min(inf if ea is None else ea, inf if eb is None else eb):
            return True, ""
        return False, f"{label(a)} and {label(b)} are never active at the same moment"

    if obs.kind == "read":
        return _replay_read(model, cex, order, ps, pe)

    return False, f"unknown observation kind {obs.kind!r}"


def _replay_read(model: Model, cex: Counterexample, order: list[Event],
                 ps: list[int | None], pe: list[int | None]) -> tuple[bool, str]:
    from .explicit import initial_memory, region_points

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
    in_region = set(region_points(schedule, model.universes, op.rank, region))
    points: set[Point] = {pt for pt, v in model.read_pts[a] if v == obs.expected and pt in in_region}
    if not points:
        return False, f"{label(a)} does not read {obs.region} expecting {obs.expected}"
    sa = ps[a]
    if sa is None:
        return False, f"{label(a)} never starts in the run"
    ea = pe[a]
    mem: dict[Point, str] = initial_memory(schedule, model.universes)
    # only the ops whose writes reach the read's region on its rank can matter
    touching = {w.id for w in schedule.ops if w.rank == op.rank
                and any(acc.region.overlaps(region) for acc in w.writes)}
    at_start: set[str] = set()
    wrong = False
    for i, (kind, o) in enumerate(order):
        if i == sa:
            at_start = {mem.get(pt, NOTHING) for pt in points}
            wrong = wrong or any(v != obs.expected for v in at_start)
        if kind == "end" and o in touching:
            for pt, val in model.write_pts[o]:
                if o != a and pt in points and i > sa and (ea is None or i < ea) and val != obs.expected:
                    wrong = True
                mem[pt] = val
    if not wrong:
        return False, (f"{label(a)} sees {obs.expected} in {obs.region} at its start and nobody overwrites"
                       " it while it runs")
    if obs.seen and obs.seen[0] not in at_start:
        return False, (f"{label(a)} sees {', '.join(sorted(at_start))} in {obs.region} at its start,"
                       f" not {obs.seen[0]}")
    return True, ""
