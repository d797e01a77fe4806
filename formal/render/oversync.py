"""Over-synchronization (issue 14) for people and programs: the redundancy
report of ``check --redundant``, the result of ``minimize``, and the
earliest-start run with its critical path (a Perfetto trace and a picture).

Times are microseconds.  A duration comes from a durations file (a JSON
object mapping op labels, or ``r<rank>#<index>``, to microseconds), else
from the engine's cost model (:data:`COST_MODEL`).  The earliest-start run
follows the rule of the engine's ``makespan``: on the precedence edges that
hold in every run (``data``: message edges are taken as non-blocking), an
op's end is its start plus its duration, and every other edge carries no
time; each op starts as early as those edges let it.  Each stream runs its
ops in order; nothing else limits how many run at once.

A sync's *cost* is the makespan with it minus the makespan without it (the
sync deleted: its own duration goes too).

No solver is imported when this module is: the functions that need the
engine (costs) import it when called.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, UserError
from ..inputs import finite_number
from ..ir import Kind, Schedule
from ..ir.ops import HOST_STREAM
from .dot import RED, _html, _q, _wrap, find_syncs, short_label

if TYPE_CHECKING:
    from ..engine.redundant import Minimized, MoveSuggestion, RedundancyReport, Sync, SyncVerdict

COST_MODEL = ("compute 10 us, host work 1 us, communication 5 us + 1 us per 1000 elements of its size;"
              " waits, records, host syncs and allocator calls 0 us")
TOP = 5  # syncs listed under "top syncs by cost"
ROW = 6  # ops per row of the critical path picture

#: The longest op duration a durations file may give: 10^15 us, about 32 years.
MAX_DURATION_US = 1e15


# ---------------------------------------------------------------- durations
def load_durations(path: str | Path, s: Schedule) -> dict[int, float]:
    """Op id -> microseconds, from a durations file: a key is an op's full
    label (every op with that label), a unique prefix of one, or
    ``r<rank>#<index>`` (which wins over a label the op shares).  Every
    problem is a :class:`UsageError` that names the file."""
    from ..errors import ScheduleError
    from ..inputs import parse_json, read_text

    p = Path(path)
    try:
        doc = parse_json(read_text(p, "op durations (a JSON object)"), str(p))
    except ScheduleError as exc:
        raise UsageError(f"durations file {exc}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"durations file {p}: must be a JSON object mapping op labels (or r<rank>#<index>) to"
                         f" microseconds, got {type(doc).__name__}")
    out: dict[int, float] = {}
    named: dict[int, str] = {}
    shared: dict[int, float] = {}  # from labels several ops have in common
    by_label: dict[str, list[int]] = {}
    for op in s.ops:
        by_label.setdefault(s.label(op), []).append(op.id)
    for key, value in doc.items():
        if not finite_number(value) or value < 0 or value > MAX_DURATION_US:
            raise UsageError(f"durations file {p}: {key!r}: a duration is a non-negative number of microseconds,"
                             f" at most {MAX_DURATION_US:.0e}, got {str(value)[:40]}")
        same = by_label.get(key.strip(), [])
        if len(same) > 1:  # every op with this label (one kernel, issued several times)
            for o in same:
                shared[o] = float(value)
            continue
        try:
            op = s.find(key)
        except UserError as exc:
            raise UsageError(f"durations file {p}: {exc}") from None
        if op.id in out:
            raise UsageError(f"durations file {p}: {key!r} and {named[op.id]!r} name the same op, {s.label(op)}")
        out[op.id], named[op.id] = float(value), key
    return {**shared, **out}


def durations_note(path: str | Path | None, durations: Mapping[int, float], s: Schedule) -> str:
    """Where the durations come from, in one line."""
    if path is None:
        return f"cost model: {COST_MODEL}"
    rest = len(s.ops) - len(durations)
    tail = f"; the other {rest} ops from the cost model: {COST_MODEL}" if rest else ""
    return f"durations: {path} ({len(durations)} ops){tail}"


# ---------------------------------------------------------------- the earliest-start run
@dataclass(frozen=True)
class Timing:
    """The earliest-start run: per op its start and end (``None`` for an op
    on a cycle of waits, which never runs), and its duration."""

    start: tuple[float | None, ...]
    end: tuple[float | None, ...]
    duration: tuple[float, ...]

    @property
    def makespan(self) -> float:
        return max((e for e in self.end if e is not None), default=0.0)

    @property
    def complete(self) -> bool:
        return all(e is not None for e in self.end)


def op_durations(s: Schedule, durations: Mapping[int, float] | None) -> tuple[float, ...]:
    from ..engine.redundant import default_duration  # the cost model lives in the engine

    d = durations or {}
    return tuple(float(d[op.id]) if op.id in d else default_duration(op) for op in s.ops)


def earliest_times(s: Schedule, durations: Mapping[int, float] | None = None) -> Timing:
    """Every op's earliest start and end (see the module text)."""
    from ..semantics.matching import match
    from ..semantics.precedence import WHY, build_precedence

    dur = op_durations(s, durations)
    prec = build_precedence(s, match(s)).data
    n, n_ops = prec.n_points, len(s.ops)
    op_why = WHY.index("op")
    succ: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    indeg = [0] * n
    for u, v, w in zip(prec.u.tolist(), prec.v.tolist(), prec.why.tolist(), strict=True):
        succ[u].append((v, dur[u // 2] if w == op_why and u < 2 * n_ops and v == u + 1 else 0.0))
        indeg[v] += 1
    t = [0.0] * n
    done = [False] * n
    queue = [p for p in range(n) if indeg[p] == 0]
    while queue:
        u = queue.pop()
        done[u] = True
        for v, w in succ[u]:
            t[v] = max(t[v], t[u] + w)
            indeg[v] -= 1
            if indeg[v] == 0:
                queue.append(v)
    starts = tuple(t[2 * o] if done[2 * o] else None for o in range(n_ops))
    ends = tuple(t[2 * o + 1] if done[2 * o + 1] else None for o in range(n_ops))
    return Timing(starts, ends, dur)


# ---------------------------------------------------------------- costs
@dataclass(frozen=True)
class Costs:
    """The makespan, a critical path (op ids) and each sync's cost."""

    makespan: float
    critical_path: tuple[int, ...]
    per_sync: dict[tuple[int, ...], float]
    note: str  # where the durations come from
    durations: dict[int, float]
    never_run: int = 0  # ops on or behind a cycle of waits (no run finishes: the makespan means little)


def removed_durations(durations: Mapping[int, float], syncs: Sequence[Sync]) -> dict[int, float]:
    """The durations of the schedule without ``syncs``: a removed sync takes no time."""
    out = dict(durations)
    for sy in syncs:
        for o in sy.ops:
            out[o] = 0.0
    return out


def sync_costs(s: Schedule, syncs: Sequence[Sync], durations: Mapping[int, float], note: str) -> Costs:
    """Each sync's cost: the makespan with it minus the makespan without it
    (computed for the syncs on the critical path; every other one costs 0)."""
    from ..engine.redundant import makespan, without

    span, path = makespan(s, durations)
    on_path = set(path)
    # a sync with no op on the critical path costs nothing: that path is still
    # there without it, as long (removing it touches only its own ops' edges)
    per = {sy.ops: (span - makespan(without(s, [sy]), removed_durations(durations, [sy]))[0]
                    if on_path.intersection(sy.ops) else 0.0) for sy in syncs}
    never = sum(1 for e in earliest_times(s, durations).end if e is None)
    return Costs(span, path, per, note, dict(durations), never)


def sync_id(s: Schedule, sy: Sync) -> str:
    """``r<rank>#<index>`` of the sync's (first) op: a key of a durations file."""
    op = s.ops[sy.op]
    return f"r{op.rank}#{op.index}"


def _us(x: float) -> str:
    return f"{x:g} us"


def clean_why(why: str, notes: bool = True) -> str:
    """The verdict's sentence without the notes about the placeholder event a
    removed wait is pointed at (``without`` in the engine), or, with
    ``notes=False``, without any note."""
    head, *rest = why.split(". Note: ")
    kept = [n for n in rest if notes and "__removed_sync_" not in n]
    return ". Note: ".join([head, *kept])


def _word(v: SyncVerdict) -> str:
    return "redundant" if v.redundant else "not judged" if v.how == "none" else "needed"


def _how(v: SyncVerdict) -> str:
    if v.how == "implied":
        return f"implied by other edges ({v.why})"
    if v.how == "graph":
        return ("no proved obligation needs an ordering only it gives (decided on the graph), and the schedule"
                " without it proves everything that was proved")
    return "the schedule without it proves everything that was proved"


def _sync_json(s: Schedule, sy: Sync, cost: float | None) -> dict[str, Any]:
    d: dict[str, Any] = {"label": sy.label, "id": sync_id(s, sy), "op_ids": list(sy.ops), "kind": sy.kind}
    if cost is not None:
        d["cost"] = cost
    return d


def _top(costs: Costs, syncs: Sequence[Sync]) -> list[tuple[Sync, float]]:
    ranked = sorted(((sy, costs.per_sync.get(sy.ops, 0.0)) for sy in syncs), key=lambda x: (-x[1], x[0].op))
    return [(sy, c) for sy, c in ranked if c > 0][:TOP]


# ---------------------------------------------------------------- check --redundant
def redundancy_text(rep: RedundancyReport, costs: Costs | None) -> str:
    s = rep.schedule
    n = len(rep.verdicts)
    red = len(rep.redundant)
    proved = ", ".join(rep.proved) or "nothing"
    unjudged = sum(1 for v in rep.verdicts if _word(v) == "not judged")
    tail = f", {unjudged} not judged" if unjudged else ""
    out = [f"  over-synchronization: {n} sync{'s' if n != 1 else ''}, {red} redundant, {n - red - unjudged} needed"
           f"{tail} (against what was proved: {proved}; {rep.checks} check{'s' if rep.checks != 1 else ''},"
           f" {rep.seconds:.2f} s)"]
    from ..result import PROPERTIES
    unproved = [p for p in PROPERTIES if p not in rep.proved]
    if rep.proved and unproved:
        out.append(f"  note: {', '.join(unproved)} {'is' if len(unproved) == 1 else 'are'} not proved, so a sync"
                   f" that only guards {'it' if len(unproved) == 1 else 'them'} shows as redundant here: fix the"
                   " violations first, then look again")
    on_path = set(costs.critical_path) if costs is not None else set()
    for v in rep.verdicts:
        sy = v.sync
        cost = costs.per_sync.get(sy.ops) if costs is not None else None
        tail = f"  cost {_us(cost)}" if cost is not None else ""
        if any(o in on_path for o in sy.ops):
            tail += "  (on the critical path)"
        out.append(f"    {_word(v):<10}  {sy.label}  [{sync_id(s, sy)}]{tail}")
        if v.redundant:
            confirmed = "confirmed by re-check" if v.confirmed else "not re-checked"
            out.append(f"                {_how(v)}; {confirmed}")
        elif v.needed_for:
            out.append(f"                needed for {v.needed_for}: {clean_why(v.why, notes=False)}")
        else:
            out.append(f"                {v.why}")
    if costs is not None:
        sync_ops = {o for ops in costs.per_sync for o in ops}
        k = sum(1 for o in costs.critical_path if o in sync_ops)
        if costs.never_run:
            out.append(f"  {costs.never_run} ops never run (a cycle of waits): no run finishes, so the makespan and"
                       " the costs below mean little")
        n_path = len(costs.critical_path)
        out.append(f"  makespan {_us(costs.makespan)}; critical path: {n_path} op{'s' if n_path != 1 else ''},"
                   f" {k} of them syncs ({costs.note})")
        top = _top(costs, [v.sync for v in rep.verdicts])
        if top:
            out.append("  top syncs by cost (makespan with minus without):")
            verdict = {v.sync.ops: v for v in rep.verdicts}
            for sy, c in top:
                word = _word(verdict[sy.ops])
                out.append(f"    {_us(c):>12}  {sy.label}  [{sync_id(s, sy)}]  {word}")
        else:
            out.append("  no sync lengthens the makespan")
    return "\n".join(out)


def redundancy_json(rep: RedundancyReport, costs: Costs | None) -> dict[str, Any]:
    s = rep.schedule
    on_path = set(costs.critical_path) if costs is not None else set()
    syncs = []
    for v in rep.verdicts:
        cost = costs.per_sync.get(v.sync.ops) if costs is not None else None
        d = _sync_json(s, v.sync, cost)
        d.update({"redundant": v.redundant, "verdict": _word(v), "how": v.how,
                  "decided": (_how(v) if v.redundant else ("on the graph, without it " if v.how == "graph" else
                                                           "the schedule without it fails ") + v.needed_for
                              if v.needed_for else v.why),
                  "confirmed": v.confirmed, "needed_for": v.needed_for or None, "why": clean_why(v.why),
                  "on_critical_path": any(o in on_path for o in v.sync.ops)})
        syncs.append(d)
    doc: dict[str, Any] = {"proved": list(rep.proved), "checks": rep.checks, "seconds": rep.seconds,
                           "count": len(rep.verdicts), "redundant_count": len(rep.redundant), "syncs": syncs}
    if costs is not None:
        doc["durations"] = costs.note
        doc["makespan"] = costs.makespan
        doc["never_run"] = costs.never_run
        doc["critical_path"] = [s.label(o) for o in costs.critical_path]
        doc["critical_path_ids"] = list(costs.critical_path)
        doc["top"] = [_sync_json(s, sy, c) for sy, c in _top(costs, [v.sync for v in rep.verdicts])]
    return doc


# ---------------------------------------------------------------- minimize
def _makespans(m: Minimized, s: Schedule, costs: Costs | None) -> tuple[float, float] | None:
    if costs is None:
        return None
    from ..engine.redundant import makespan, without

    after = makespan(without(s, m.removed), removed_durations(costs.durations, m.removed))[0]
    return costs.makespan, after


def minimized_text(m: Minimized, s: Schedule, costs: Costs | None, weights: str,
                   written: str | None = None, moves: Sequence[MoveSuggestion] = ()) -> str:
    n = len(m.kept) + len(m.removed)
    what = "fewest syncs" if weights == "count" else "cheapest syncs (each weighted by its own cost)"
    out = [f"{s.name} ({s.source}): {n} sync{'s' if n != 1 else ''}; {what} that keep every proved property"
           f" ({', '.join(m.proved) or 'nothing is proved'})"]
    if not m.proved:
        out.append("  nothing is proved, so every sync is kept")
    elif not m.optimal:
        out.append(f"  no verified optimum within {m.iterations} iterations: every sync is kept")
    elif not m.removed:
        out.append(f"  the given schedule is already minimal: no sync can be removed (optimal, verified by z3's"
                   f" optimizer and the engine; {m.iterations} iteration{'s' if m.iterations != 1 else ''})")
    else:
        out.append(f"  removes {len(m.removed)}, keeps {len(m.kept)}: optimal (z3's optimizer over keep-choices,"
                   f" the proposal checked by the engine; {m.iterations}"
                   f" iteration{'s' if m.iterations != 1 else ''}, {m.seconds:.2f} s)")
    cost = costs.per_sync if costs is not None else {}
    for word, group in (("removed", m.removed), ("kept", m.kept)):
        for sy in group:
            c = cost.get(sy.ops)
            tail = f"  cost {_us(c)}" if c is not None else ""
            out.append(f"    {word:<8} {sy.label}  [{sync_id(s, sy)}]{tail}")
    rc = m.report
    verdicts = ", ".join(f"{r.property} {r.verdict.value}" for r in rc.results)
    out.append(f"  minimized schedule: {rc.ops} ops, re-checked from scratch (every property that was proved):"
               f" {verdicts}")
    spans = _makespans(m, s, costs)
    if spans is not None and costs is not None:
        out.append(f"  makespan {_us(spans[0])} -> {_us(spans[1])} ({costs.note})")
    if written:
        out.append(f"  wrote {written}")
    out += moves_text(moves)
    return "\n".join(out)


def moves_text(moves: Sequence[MoveSuggestion]) -> list[str]:
    """The suggestions, worded as changes to try, not as results."""
    if not moves:
        return []
    out = ["  suggestions (changes to the minimized schedule, not results about it; each moved schedule was"
           " re-checked from scratch and proves every property that was proved):"]
    for mv in moves:
        n = len(mv.passed)
        out.append(f"    move {mv.sync.label} later, to just after {mv.after_label}: it stops holding back"
                   f" {n} op{'s' if n != 1 else ''} of its stream; makespan {_us(mv.makespan_before)} ->"
                   f" {_us(mv.makespan_after)} (-{_us(mv.gain)})")
    return out


def moves_json(moves: Sequence[MoveSuggestion]) -> list[dict[str, Any]]:
    return [{"sync": mv.sync.label, "op_ids": list(mv.sync.ops), "move_after": mv.after_label,
             "move_after_id": mv.after, "released": list(mv.passed), "makespan_before": mv.makespan_before,
             "makespan_after": mv.makespan_after, "gain": mv.gain, "rechecked_from_scratch": mv.checked,
             "kind": "suggestion"} for mv in moves]


def minimized_json(m: Minimized, s: Schedule, costs: Costs | None, weights: str,
                   written: str | None = None, moves: Sequence[MoveSuggestion] = ()) -> dict[str, Any]:
    cost = costs.per_sync if costs is not None else {}
    doc: dict[str, Any] = {
        "schedule": s.name, "source": s.source, "weights": weights, "proved": list(m.proved),
        "syncs": len(m.kept) + len(m.removed), "optimal": m.optimal,
        "already_minimal": bool(m.optimal and m.proved and not m.removed),
        "iterations": m.iterations, "seconds": m.seconds,
        "removed": [_sync_json(s, sy, cost.get(sy.ops)) for sy in m.removed],
        "kept": [_sync_json(s, sy, cost.get(sy.ops)) for sy in m.kept],
        "recheck": {"from_scratch": True, "ops": m.report.ops, "exit_code": m.report.exit_code,
                    "results": [{"property": r.property, "verdict": r.verdict.value} for r in m.report.results]},
        "written": written,
    }
    spans = _makespans(m, s, costs)
    if spans is not None and costs is not None:
        doc["makespan"] = {"before": spans[0], "after": spans[1], "durations": costs.note}
    doc["suggestions"] = moves_json(moves)
    return doc


# ---------------------------------------------------------------- the critical path: trace and picture
def critical_trace(s: Schedule, timing: Timing, costs: Costs) -> dict[str, Any]:
    """The earliest-start run as a Chrome/Perfetto trace (microseconds): one
    process per rank, one thread per stream; the critical path's ops are
    named ``[critical] ...``, carry ``args.critical`` and are red, and flow
    arrows (``cat: "critical"``) follow the path from op to op."""
    path = costs.critical_path
    on_path = set(path)
    sync_cost = {o: c for ops, c in costs.per_sync.items() for o in ops}
    events: list[dict[str, Any]] = []
    tids: dict[tuple[int, str], int] = {}
    for (rank, stream) in s.streams:
        tids[(rank, stream)] = sum(1 for (r, _) in tids if r == rank) + 1
    for rank in s.ranks:
        events.append({"ph": "M", "name": "process_name", "pid": rank, "tid": 0, "args": {"name": f"rank {rank}"}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": rank, "tid": 0,
                       "args": {"sort_index": rank}})
    for (rank, stream), tid in tids.items():
        events.append({"ph": "M", "name": "thread_name", "pid": rank, "tid": tid, "args": {"name": stream}})
        events.append({"ph": "M", "name": "thread_sort_index", "pid": rank, "tid": tid,
                       "args": {"sort_index": tid}})
    horizon = timing.makespan
    for op in s.ops:
        o = op.id
        tid = tids[(op.rank, op.stream)]
        name = short_label(s, o)
        args: dict[str, Any] = {"op": s.label(o), "id": o, "issue_index": op.index, "kind": str(op.kind),
                                "duration_us": timing.duration[o]}
        if o in sync_cost:
            args["sync_cost_us"] = sync_cost[o]
        st, en = timing.start[o], timing.end[o]
        if st is None or en is None:
            args["never_runs"] = True
            events.append({"ph": "i", "s": "t", "name": f"never runs: {name}", "cat": str(op.kind), "pid": op.rank,
                           "tid": tid, "ts": horizon, "args": args})
            continue
        ev: dict[str, Any] = {"ph": "X", "name": name, "cat": str(op.kind), "pid": op.rank, "tid": tid, "ts": st,
                              "dur": en - st, "args": args}
        if o in on_path:
            ev["name"] = "[critical] " + name
            args["critical"] = True
            ev["cname"] = "terrible"
        events.append(ev)
    flow_id = 0

    def flow(a: int, b: int, name: str, cat: str) -> None:
        nonlocal flow_id
        sa, ea, sb, eb = timing.start[a], timing.end[a], timing.start[b], timing.end[b]
        if sa is None or ea is None or sb is None or eb is None:
            return
        flow_id += 1
        opa, opb = s.ops[a], s.ops[b]
        events.append({"ph": "s", "id": flow_id, "name": name, "cat": cat, "pid": opa.rank,
                       "tid": tids[(opa.rank, opa.stream)], "ts": ea})
        events.append({"ph": "f", "bp": "e", "id": flow_id, "name": name, "cat": cat, "pid": opb.rank,
                       "tid": tids[(opb.rank, opb.stream)], "ts": max(sb, min(ea, eb))})

    syncs = find_syncs(s)
    for rec, wt in syncs.events:
        flow(rec, wt, f"event {s.ops[wt].event}", "event")
    for snd, rcv in syncs.p2p:
        flow(snd, rcv, f"send -> recv ({s.ops[snd].channel})", "p2p")
    for a, b in zip(path, path[1:], strict=False):
        flow(a, b, "critical path", "critical")
    meta = {"schedule": s.name, "time_unit": "microseconds (the earliest-start run)", "makespan_us": costs.makespan,
            "durations": costs.note, "critical_path": [s.label(o) for o in path]}
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": meta}


def _link_why(s: Schedule, a: int, b: int) -> str:
    """What orders b after a on the critical path, in a word."""
    oa, ob = s.ops[a], s.ops[b]
    if (oa.rank, oa.stream) == (ob.rank, ob.stream):
        return "stream"
    if oa.kind is Kind.RECORD and ob.kind is Kind.WAIT:
        return f"event {ob.event}"
    if oa.kind is Kind.SEND and ob.kind is Kind.RECV:
        return "send -> recv"
    if ob.kind is Kind.SYNC:
        return "host sync"
    if oa.kind.is_collective and ob.kind.is_collective:
        return "collective"
    if oa.rank == ob.rank and HOST_STREAM in (oa.stream, ob.stream):
        return "host order"
    return "waits for"


def critical_dot(s: Schedule, timing: Timing, costs: Costs) -> str:
    """The critical path as a chain in rows (read left to right, top to
    bottom): each op with its lane, duration and times; the syncs on it red,
    with their cost."""
    path = costs.critical_path
    sync_cost = {o: c for ops, c in costs.per_sync.items() for o in ops}
    title = (f"critical path of {_html(s.name)}: makespan {_us(costs.makespan)}, {len(path)} ops"
             f"<br/>{_html(_wrap(costs.note, 110)).replace(chr(10), '<br/>')}")
    lines = ["digraph critical {", "  rankdir=TB;", "  nodesep=0.3;", "  ranksep=0.5;",
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, fillcolor="#ffffff"];',
             '  edge [fontname="Helvetica", fontsize=9, color="#8c8c8c"];',
             f"  label=<{title}>;", "  labelloc=t;"]
    for o in path:
        op = s.ops[o]
        st, en = timing.start[o], timing.end[o]
        when = f"{st:g} -> {en:g} us" if st is not None and en is not None else "never runs"
        text = [f"r{op.rank}/{op.stream}", _wrap(short_label(s, o), 32), f"{_us(timing.duration[o])} ({when})"]
        attrs = []
        if o in sync_cost:
            text.append(f"sync, cost {_us(sync_cost[o])}")
            attrs += [f'color="{RED}"', 'fillcolor="#fde0e0"', f'fontcolor="{RED}"', "penwidth=2.2"]
        attrs.insert(0, f"label={_q(chr(10).join(text))}")
        lines.append(f"  o{o} [{', '.join(attrs)}];")
    # the chain in rows of ROW ops, read left to right, top to bottom
    for i in range(0, len(path), ROW):
        lines.append("  { rank=same; " + " ".join(f"o{o};" for o in path[i:i + ROW]) + " }")
    for a, b in zip(path, path[1:], strict=False):
        lines.append(f"  o{a} -> o{b} [label={_q(_link_why(s, a, b))}];")
    for i in range(0, len(path) - ROW, ROW):  # keep the rows in order
        lines.append(f"  o{path[i]} -> o{path[i + ROW]} [style=invis];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_critical(s: Schedule, costs: Costs, out_dir: Path, stem: str) -> list[Path]:
    """``<stem>.critical.trace.json``, ``<stem>.critical.dot`` and its
    pictures (``.svg``, ``.png``) when Graphviz can draw; returns the paths."""
    from .picture import FORMATS, PictureError, render

    out_dir.mkdir(parents=True, exist_ok=True)
    timing = earliest_times(s, costs.durations)
    trace = out_dir / f"{stem}.critical.trace.json"
    trace.write_text(json.dumps(critical_trace(s, timing, costs)) + "\n", encoding="utf-8")
    dot = critical_dot(s, timing, costs)
    dot_path = out_dir / f"{stem}.critical.dot"
    dot_path.write_text(dot, encoding="utf-8")
    paths = [trace, dot_path]
    for fmt in FORMATS:
        try:
            data = render(dot, fmt)
        except PictureError as exc:
            print(f"syncproof: note: no picture of the critical path: {exc}; wrote {dot_path.name}", file=sys.stderr)
            break
        pic = out_dir / f"{stem}.critical.{fmt}"
        pic.write_bytes(data)
        paths.append(pic)
    return paths
