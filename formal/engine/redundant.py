"""Over-synchronization (issue 14): which syncs a schedule does not need,
what each costs, and the fewest syncs that keep every proof.

A *sync* is an op whose only effect is ordering: an event wait, a host sync
(``sync``), a barrier, or a collective that moves no data (no reads, no
writes).  Removing one is modelled without renumbering ops: a wait or host
sync is pointed at an event nobody records (a no-op in CUDA, docs/semantics.md
rule 3), a barrier or ordering-only collective becomes an empty compute on its
stream (on every member).  Every property is a statement about all runs, and
removing a sync only adds runs, so a property that fails with a set of syncs
kept fails with any subset of it: the good sets are closed upwards.

* :func:`find_redundant` decides each sync on its own: *implied* when every
  ordering it adds already holds through other edges (exact, on the graph:
  then removing it changes no reachability at all), otherwise by checking the
  schedule without it.  Every claim of "redundant" is confirmed by such a
  re-check, and the report says so.
* :func:`minimize` finds the fewest (or cheapest) syncs that keep every
  proved property, exactly: z3's optimizer proposes a set, the engine checks
  the schedule with only those syncs, and each counterexample run adds the
  clause "keep one of the removed syncs this run violates" (the run is an
  execution of every schedule that keeps none of them, so every good set
  satisfies the clause).  The first proposal that checks is optimal.
* :func:`makespan` gives, from op durations (declared, or a cost model per
  kind and size), the earliest finish of every op when each stream runs its
  ops in order and every other edge holds; a sync's cost is how much the
  makespan grows with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import z3  # type: ignore[import-untyped]

from ..ir import Kind, Meta, Op, Schedule
from ..result import PROPERTIES, Report, Verdict
from ..semantics.matching import match
from ..semantics.precedence import WHY, build_precedence, end, start
from .graph import PrecedenceGraph

_EVENT, _SYNC = WHY.index("event"), WHY.index("sync")


@dataclass(frozen=True)
class Sync:
    """One sync: ``ops`` are its op ids (every member of a barrier)."""

    ops: tuple[int, ...]
    kind: str  # "wait", "host sync", "barrier", "ordering collective"
    label: str

    @property
    def op(self) -> int:
        return self.ops[0]


@dataclass(frozen=True)
class SyncVerdict:
    sync: Sync
    redundant: bool
    how: str  # "implied" (exact, on the graph), "re-check", "no-op"
    confirmed: bool  # a re-check of the schedule without it proved every property that was proved
    needed_for: str = ""  # the property that fails without it
    why: str = ""  # the sentence: what it orders, or what goes wrong without it
    cost: float | None = None  # how much longer the makespan is with it (durations given)


@dataclass(frozen=True)
class RedundancyReport:
    schedule: Schedule
    proved: tuple[str, ...]
    verdicts: tuple[SyncVerdict, ...]
    makespan: float | None = None
    critical_path: tuple[int, ...] = ()
    checks: int = 0
    seconds: float = 0.0

    @property
    def redundant(self) -> tuple[SyncVerdict, ...]:
        return tuple(v for v in self.verdicts if v.redundant)


# ---------------------------------------------------------------- syncs and their removal
def syncs_of(s: Schedule) -> list[Sync]:
    """Every sync of the schedule, in op order (a barrier once, for all its members)."""
    out: list[Sync] = []
    m = None
    instances: dict[int, tuple[int, ...]] = {}
    vias = {c.via for c in s.choices if c.via is not None}
    for op in s.ops:
        k = op.kind
        if k is Kind.WAIT:
            out.append(Sync((op.id,), "wait", s.label(op)))
        elif k is Kind.SYNC:
            out.append(Sync((op.id,), "host sync", s.label(op)))
        elif k.is_collective and (k is Kind.BARRIER or (not op.reads and not op.writes)):
            if m is None:
                m = match(s)
                for inst in m.instances:
                    for o in inst.ops:
                        instances[o] = inst.ops
            members = instances.get(op.id)
            if members is None or members[0] != op.id:
                continue  # unmatched (matching reports it) or not the instance's first member
            if any(s.ops[o].reads or s.ops[o].writes for o in members):
                continue  # some member moves data: not an ordering-only collective
            if any(s.ops[o].batch is not None for o in members):
                continue  # a part of a group call: it goes with the call
            if op.name and op.name in vias:
                continue  # it computes a derived choice's value (its via): not only ordering
            kind = "barrier" if k is Kind.BARRIER else "ordering collective"
            out.append(Sync(members, kind, f"{k}#{s.seq_numbers[op.id]}({op.group}) on ranks "
                                             + ", ".join(str(s.ops[o].rank) for o in members)))
    return out


def without(s: Schedule, removed: Iterable[Sync]) -> Schedule:
    """``s`` with the syncs removed, op ids unchanged: waits and host syncs
    wait for an event nobody records (no-ops), barriers become empty computes."""
    ops = list(s.ops)
    for sy in removed:
        for o in sy.ops:
            op = ops[o]
            # no metadata either: the phase rule must not see it (as if it were deleted)
            if op.kind is Kind.WAIT or op.kind is Kind.SYNC:
                ops[o] = replace(op, event=f"__removed_sync_{o}", target=None, of=None, meta=Meta())
            else:
                ops[o] = replace(op, kind=Kind.COMPUTE, name=op.name or f"removed {op.kind}", group=None, root=None,
                                 size=None, dtype=None, comm=None, batch=None, completion=None, counts=None,
                                 recv_counts=None, meta=Meta())
    return replace(s, ops=tuple(ops))


def write_without(s: Schedule, removed: Iterable[Sync]) -> Schedule:
    """The schedule a user would write without the syncs: their ops deleted
    (renumbered), loaded and validated from scratch."""
    from ..ir.fileformat import op_to_dict, schedule_from_dict, schedule_to_dict

    gone = {o for sy in removed for o in sy.ops}
    doc = schedule_to_dict(s)
    doc["ranks"] = {str(r): [op_to_dict(op) for op in s.by_rank[r] if op.id not in gone] for r in s.ranks}
    return schedule_from_dict(doc, s.source)


# ---------------------------------------------------------------- deciding on the graph
class _GraphDecider:
    """Re-decides, for one sync at a time, only the obligations whose proof
    asked for an ordering that may run through the sync's edges, with
    reachability taken in the graph without those edges.  The graph engine
    decides every obligation from reachability alone, so this is exact; an
    obligation the graph sent to z3, a barrier, or a phase rule naming the
    sync itself (its removal changes the rule's ops) answers None: re-check."""

    def __init__(self, s: Schedule, props: Sequence[str]) -> None:
        from ..semantics.memory import memory_view
        from ..semantics.obligations import phase_obligations, race_obligations, read_obligations

        self.s = s
        m = match(s)
        self.prec = build_precedence(s, m).data
        self.g = PrecedenceGraph(s, self.prec)
        self.real = self.g.reach  # the bound method: reachability in the whole graph
        self.ok = self.g.acyclic
        # (property, obligation, the reach queries of its proof; [(-1, -1)] when the graph could not prove it)
        self.obs: list[tuple[str, Any, list[tuple[int, int]]]] = []
        if not self.ok:
            return
        mem = memory_view(s)
        lists: list[tuple[str, Any]] = []
        if "dataflow" in props:
            lists.append(("dataflow", read_obligations(mem)))
        if "race" in props:
            lists.append(("race", race_obligations(mem)))
        if "phase" in props:
            lists.append(("phase", phase_obligations(s)))
        g = self.g
        for prop, obs in lists:
            for ob in obs:
                g.queries = []
                verdict, _ = g.decide(ob)
                self.obs.append((prop, ob, list(g.queries) if verdict == "proved" else [(-1, -1)]))
        g.queries = None
        qx: list[int] = []
        qy: list[int] = []
        qo: list[int] = []
        self.unproved = False
        for i, (_, _, qs) in enumerate(self.obs):
            if qs and qs[0][0] < 0:
                self.unproved = True  # some obligation needed z3: every decision goes to a re-check
            for x, y in qs:
                qx.append(x)
                qy.append(y)
                qo.append(i)
        self.qx = np.asarray(qx, dtype=np.int64)
        self.qy = np.asarray(qy, dtype=np.int64)
        self.qo = np.asarray(qo, dtype=np.int64)
        self.into: dict[int, list[int]] = {}
        for u, v, w in zip(self.prec.u.tolist(), self.prec.v.tolist(), self.prec.why.tolist(), strict=True):
            if w in (_EVENT, _SYNC):
                self.into.setdefault(v, []).append(u)
        self.n_op_points = 2 * len(s.ops)
        self.has_phase = "phase" in props

    def _through(self, x: int, y: int, us: list[int], v: int) -> bool:
        r = self.real
        return (v == y or (y < self.n_op_points and r(v, y))) and any(x == u or r(x, u) for u in us)

    def needed(self, sy: Sync) -> tuple[str, Any] | bool | None:
        """(property, obligation) that fails without the sync; False: none
        does; None: not decidable here."""
        if not self.ok or sy.kind not in ("wait", "host sync"):
            return None
        o = sy.op
        v = end(o)
        us = self.into.get(v, [])
        if not us:
            return False
        if self.unproved:
            return None  # an obligation the graph could not prove alone
        cone: list[tuple[str, Any]] = []
        g0 = self.g
        qx, qy = self.qx, self.qy
        if len(qx):
            # the queries with a path through the sync: y after its end, x before one of its sources
            after = (qy == v) | g0.reach_many(np.full(len(qy), v, dtype=np.int64), qy)
            before = np.zeros(len(qx), dtype=bool)
            for u in us:
                before |= (qx == u) | g0.reach_many(qx, np.full(len(qx), u, dtype=np.int64))
            names_it = False
            for i in np.unique(self.qo[after & before]).tolist():
                prop, ob, _ = self.obs[i]
                if o in getattr(ob, "before", ()) or o in getattr(ob, "after", ()) or o in getattr(ob, "samples", ()):
                    names_it = True  # the phase rule names the sync itself: its removal changes the rule's ops
                    continue
                cone.append((prop, ob))
            if names_it or self._phase_names(o):
                # the phase obligations of the schedule without it that are new (the rule picks other
                # first and last ops on its lane) are decided too
                from ..semantics.obligations import phase_obligations
                old = self._phase_set()
                cone.extend(("phase", ob) for ob in phase_obligations(without(self.s, [sy])) if ob not in old)
        if not cone:
            return False
        g = self.g
        real = self.real
        cache: dict[tuple[int, int], bool] = {}
        succ = self._succ()
        removed = {(u, v) for u in us}

        def reach_without(x: int, y: int) -> bool:
            if not real(x, y):
                return False
            if not self._through(x, y, us, v):
                return True
            key = (x, y)
            got = cache.get(key)
            if got is None:
                got = cache[key] = _corridor(x, y, succ, removed, real, self.n_op_points)
            return got

        g.reach = reach_without  # type: ignore[method-assign]
        try:
            for prop, ob in cone:
                verdict, _ = g.decide(ob)
                if verdict != "proved":
                    return (prop, ob) if verdict == "violated" else None
        finally:
            del g.reach  # back to the class's method
        return False

    def _phase_set(self) -> set[Any]:
        got: set[Any] | None = getattr(self, "_phase_cache", None)
        if got is None:
            got = self._phase_cache = {ob for prop, ob, _ in self.obs if prop == "phase"}
        return got

    def _phase_names(self, o: int) -> bool:
        """Does some phase obligation name op ``o``?"""
        named: set[int] | None = getattr(self, "_named", None)
        if named is None:
            named = self._named = {x for ob in self._phase_set() for x in (
                *getattr(ob, "before", ()), *getattr(ob, "after", ()), *getattr(ob, "samples", ()))}
        return self.has_phase and o in named

    def _succ(self) -> list[list[int]]:
        got: list[list[int]] | None = getattr(self, "_succ_cache", None)
        if got is None:
            got = self._succ_cache = self.g.succ
        return got


def _corridor(x: int, y: int, succ: list[list[int]], removed: set[tuple[int, int]], reach: Any,
              n_op_points: int) -> bool:
    """Is there a path from ``x`` to ``y`` that uses no edge of ``removed``?
    Only points that reach ``y`` are visited (aux points always)."""
    seen = {x}
    stack = [x]
    while stack:
        a = stack.pop()
        for b in succ[a]:
            if (a, b) in removed or b in seen:
                continue
            if b == y:
                return True
            if b < n_op_points and not reach(b, y):
                continue
            seen.add(b)
            stack.append(b)
    return False


# ---------------------------------------------------------------- deciding one sync at a time
def _check(s: Schedule, props: Sequence[str], kw: Mapping[str, Any]) -> Report:
    from .check import check_schedule
    return check_schedule(s, props, max_cex=1, **kw)


def _failed(rep: Report) -> list[str]:
    return [r.property for r in rep.results if r.verdict is not Verdict.PROVED]


def find_redundant(s: Schedule, properties: Iterable[str] = PROPERTIES, *, durations: Mapping[int, float] | None = None,
                   confirm: bool = True, graph: bool = True, **kw: Any) -> RedundancyReport:
    """Decide every sync of ``s`` on its own (see the module text).
    ``graph=False`` decides every sync by re-checking (the reference the
    graph decision is tested against)."""
    t0 = time.perf_counter()
    props = tuple(p for p in PROPERTIES if p in tuple(properties))
    base = _check(s, props, kw)
    proved = tuple(r.property for r in base.results if r.verdict is Verdict.PROVED)
    cands = syncs_of(s)
    checks = 1
    verdicts: list[SyncVerdict] = []
    implied = _implied(s, cands) if proved and "matching" in proved else {}
    # a choice schedule superposes every branch: its makespan is not a run's
    span = makespan(s, durations) if durations is not None and not s.choices else None
    decider = _GraphDecider(s, proved) if graph and proved and "matching" in proved and not s.choices else None
    for sy in cands:
        how = implied.get(sy.ops)
        if not proved:
            verdicts.append(SyncVerdict(sy, False, "none", False, "", "nothing is proved, so no sync can be judged"))
            continue
        rep: Report | None = None
        on_graph = decider.needed(sy) if decider is not None and how is None else None
        cost = None
        if span is not None:  # the removed sync takes no time (a removed barrier is an empty compute)
            gone = {**(durations or {}), **{o: 0.0 for o in sy.ops}}
            cost = span[0] - makespan(without(s, [sy]), gone)[0]
        if isinstance(on_graph, tuple):  # needed, decided exactly on the graph: no re-check
            from .check import _one_line
            prop, ob = on_graph
            verdicts.append(SyncVerdict(sy, False, "graph", False, prop,
                                        f"without it: {_one_line(s, ob)} (decided on the graph)", cost))
            continue
        if on_graph is False and how is None:
            how = "graph"
        if how is None or confirm:
            rep = _check(without(s, [sy]), proved, kw)
            checks += 1
        bad = _failed(rep) if rep is not None else []
        if how is not None and bad:
            from ..errors import InternalError
            raise InternalError(f"{sy.label} is implied by other edges, yet the schedule without it fails {bad[0]}")
        if how == "graph" and bad:
            from ..errors import InternalError
            raise InternalError(f"the graph finds {sy.label} unneeded, yet the schedule without it fails {bad[0]}")
        if not bad:
            if how == "graph":
                verdicts.append(SyncVerdict(sy, True, "graph", rep is not None, "", "no proved obligation needs an"
                                            " ordering only it gives (decided on the graph)", cost))
                continue
            why = how or "the schedule without it proves every property that was proved"
            verdicts.append(SyncVerdict(sy, True, "implied" if how is not None else "re-check", rep is not None,
                                        "", why, cost))
        else:
            assert rep is not None
            r = rep.result(bad[0])
            sentence = r.counterexample.sentence if r.counterexample is not None else r.reason
            if "__removed_sync_" in sentence:  # a note about the stand-in event of the removal itself
                sentence = sentence.split(". Note: ")[0]
            verdicts.append(SyncVerdict(sy, False, "re-check", True, bad[0], f"without it: {sentence}", cost))
    return RedundancyReport(s, proved, tuple(verdicts), span[0] if span else None, span[1] if span else (), checks,
                            time.perf_counter() - t0)


def _implied(s: Schedule, cands: list[Sync]) -> dict[tuple[int, ...], str]:
    """The waits and host syncs whose every ordering edge already holds
    through other edges (exact: removing one changes no reachability)."""
    m = match(s)
    prec = build_precedence(s, m).data
    g = PrecedenceGraph(s, prec)
    if not g.acyclic:
        return {}
    into: dict[int, list[tuple[int, int]]] = {}  # end point of a sync -> its (source point, why) edges
    for u, v, w in zip(prec.u.tolist(), prec.v.tolist(), prec.why.tolist(), strict=True):
        into.setdefault(v, []).append((u, w))
    out: dict[tuple[int, ...], str] = {}
    for sy in cands:
        if len(sy.ops) != 1:
            continue
        o = sy.op
        e = end(o)
        incoming = into.get(e, [])
        ordering = [(u, w) for u, w in incoming if w in (_EVENT, _SYNC)]
        if not ordering:
            out[sy.ops] = "it orders nothing: no record of its event (or nothing it waits for) is issued before it"
            continue
        others = [u for u, _ in incoming]
        via: list[str] = []
        for u, _ in ordering:
            if start(o) != u and g.reach(u, start(o)):
                via.append(f"{s.label(u // 2)} already ends before it starts")
                continue
            alt = [p for p in others if p != u and p != start(o) and g.reach(u, p)]
            if not alt:
                break
            via.append(f"{s.label(u // 2)} already ends before {s.label(alt[0] // 2)}, which it also waits for")
        else:
            out[sy.ops] = "implied: " + "; ".join(via)
    return out


# ---------------------------------------------------------------- cost
def default_duration(op: Op) -> float:
    """A simple cost model (microseconds), for when no durations are given:
    compute 10; communication 5 plus 1 per 1000 elements of its size; host
    work 1; waits, records, host syncs and allocator calls 0."""
    k = op.kind
    if k is Kind.COMPUTE:
        return 1.0 if op.on_host else 10.0
    if k.is_comm or k is Kind.PUT:
        return 5.0 + (op.size or 0) / 1000.0
    return 0.0


def makespan(s: Schedule, durations: Mapping[int, float] | None = None) -> tuple[float, tuple[int, ...]]:
    """The earliest time every op can finish when each takes its duration
    (``durations[op id]``, else :func:`default_duration`) and every data edge
    holds; and a critical path (op ids) that attains it.  Infinite (and no
    path) when the data edges have a cycle: no run finishes."""
    m = match(s)
    prec = build_precedence(s, m).data
    n = prec.n_points
    n_ops = len(s.ops)
    if not n_ops:
        return 0.0, ()
    dur = [float(durations[o.id]) if durations and o.id in durations else default_duration(o) for o in s.ops]
    op_why = WHY.index("op")
    succ: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    indeg = [0] * n
    for u, v, w in zip(prec.u.tolist(), prec.v.tolist(), prec.why.tolist(), strict=True):
        # an op's end is its start plus its duration; every other edge carries no time
        succ[u].append((v, dur[u // 2] if w == op_why and u < 2 * n_ops and v == u + 1 else 0.0))
        indeg[v] += 1
    t = [0.0] * n
    best = [-1] * n
    queue = [p for p in range(n) if indeg[p] == 0]
    while queue:
        u = queue.pop()
        for v, w in succ[u]:
            if best[v] < 0 or t[u] + w > t[v]:
                t[v], best[v] = t[u] + w, u
            indeg[v] -= 1
            if indeg[v] == 0:
                queue.append(v)
    if any(d > 0 for d in indeg):  # a cycle of waits: some ops never run
        return float("inf"), ()
    last = max(range(2 * n_ops), key=lambda p: t[p])
    path: list[int] = []
    p = last
    while p >= 0:
        if p < 2 * n_ops and (not path or path[-1] != p // 2):
            path.append(p // 2)
        p = best[p]
    return t[last], tuple(reversed(path))


# ---------------------------------------------------------------- the fewest syncs
@dataclass(frozen=True)
class Minimized:
    schedule: Schedule  # the schedule with only the kept syncs (ops deleted), re-checked from scratch
    kept: tuple[Sync, ...]
    removed: tuple[Sync, ...]
    optimal: bool
    iterations: int
    report: Report  # the re-check of ``schedule``
    proved: tuple[str, ...]
    seconds: float = 0.0


def _violated_syncs(s: Schedule, removed: Sequence[Sync], rep: Report) -> set[int]:
    """Indexes (into ``removed``) of the syncs some counterexample run of
    ``rep`` (a check of ``s`` without them, same op ids) violates: keeping one
    of them would exclude that run.  ``s`` is the schedule with every sync."""
    out: set[int] = set()
    prec = build_precedence(s, match(s)).data
    edges: dict[int, list[tuple[int, bool]]] = {}
    for u, v, w, st in zip(prec.u.tolist(), prec.v.tolist(), prec.why.tolist(), prec.strict.tolist(), strict=True):
        if w in (_EVENT, _SYNC):
            edges.setdefault(v // 2, []).append((u, bool(st)))
    any_run = False
    for r in rep.results:
        cex = r.counterexample
        if r.verdict is not Verdict.VIOLATED or cex is None or cex.run is None:
            continue
        starts, ends = cex.run.start, cex.run.end

        def t(p: int, starts: Any = starts, ends: Any = ends) -> float | None:
            x = starts[p // 2] if p % 2 == 0 else ends[p // 2]
            return None if x is None else float(x)
        any_run = True
        for i, sy in enumerate(removed):
            if sy.kind in ("barrier", "ordering collective"):
                for a in sy.ops:
                    for b in sy.ops:
                        ta, tb = t(start(a)), t(end(b))
                        if a != b and (ta is None or tb is None or ta >= tb):
                            out.add(i)
                continue
            for u, strict in edges.get(sy.op, []):
                tu, tv = t(u), t(end(sy.op))
                if tu is None or tv is None or tu > tv or (strict and tu == tv):
                    out.add(i)
    if not any_run:
        return set(range(len(removed)))
    return out


def minimize(s: Schedule, properties: Iterable[str] = PROPERTIES, *, weights: Mapping[tuple[int, ...], float] | None
             = None, max_iterations: int = 500, **kw: Any) -> Minimized:
    """The fewest syncs (or, with ``weights``, the cheapest) that keep every
    property ``s`` proves (see the module text)."""
    t0 = time.perf_counter()
    props = tuple(p for p in PROPERTIES if p in tuple(properties))
    base = _check(s, props, kw)
    proved = tuple(r.property for r in base.results if r.verdict is Verdict.PROVED)
    cands = syncs_of(s)
    ctx = z3.Context()
    keep = [z3.Bool(f"keep{i}", ctx) for i in range(len(cands))]
    clauses: list[z3.BoolRef] = []
    # a sync whose removal alone breaks a proof is in every good set (they are closed upwards)
    if proved:
        for i, sy in enumerate(cands):
            if _failed(_check(without(s, [sy]), proved, kw)):
                clauses.append(keep[i])
    it = 0
    optimal = False
    chosen: list[int] = list(range(len(cands)))
    while it < max_iterations and cands and proved:
        it += 1
        opt = z3.Optimize(ctx=ctx)
        opt.add(*clauses)
        for i, k in enumerate(keep):
            w = weights.get(cands[i].ops, 1.0) if weights is not None else 1.0
            opt.add_soft(z3.Not(k), max(1, int(round(w * 1000))))
        if opt.check() != z3.sat:
            break
        model = opt.model()
        chosen = [i for i, k in enumerate(keep) if z3.is_true(model.eval(k, model_completion=True))]
        removed = [cands[i] for i in range(len(cands)) if i not in chosen]
        rep = _check(without(s, removed), proved, kw)
        if not _failed(rep):
            optimal = True
            break
        hit = _violated_syncs(s, removed, rep)
        idx = [i for i in range(len(cands)) if i not in chosen]
        clauses.append(z3.Or([keep[idx[j]] for j in sorted(hit)]) if hit else z3.Or([keep[i] for i in idx]))
    kept = tuple(cands[i] for i in chosen)
    removed_t = tuple(c for i, c in enumerate(cands) if i not in chosen)
    if not optimal:  # nothing verified: keep every sync
        kept, removed_t = tuple(cands), ()
    out = write_without(s, removed_t)
    final = _check(out, proved, kw)
    if _failed(final):
        from ..errors import InternalError
        raise InternalError(f"the minimized schedule of {s.name} fails {_failed(final)} when re-checked from scratch")
    return Minimized(out, kept, removed_t, optimal or not cands, it, final, proved, time.perf_counter() - t0)


__all__ = ["Minimized", "RedundancyReport", "Sync", "SyncVerdict", "default_duration", "find_redundant", "makespan",
           "minimize", "syncs_of", "without", "write_without"]
