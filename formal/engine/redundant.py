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
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import z3  # type: ignore[import-untyped]

from ..ir import Kind, Meta, Op, Schedule
from ..result import PROPERTIES, Report, Verdict
from ..semantics.matching import match
from ..semantics.precedence import WHY, build_precedence, end, start
from .graph import PrecedenceGraph
from .z3backend import new_context

_EVENT, _SYNC = WHY.index("event"), WHY.index("sync")


@dataclass(frozen=True)
class Sync:
    """One sync: ``ops`` are its op ids (every member of a barrier).  Its
    label is made when first read (a large schedule has tens of thousands
    of syncs, and most are never printed)."""

    ops: tuple[int, ...]
    kind: str  # "wait", "host sync", "barrier", "ordering collective"
    text: str = ""  # the label, or "" to make it from the schedule's op label
    schedule: Schedule | None = field(default=None, compare=False, repr=False)

    @property
    def op(self) -> int:
        return self.ops[0]

    @cached_property
    def label(self) -> str:
        if self.text or self.schedule is None:
            return self.text
        return self.schedule.label(self.schedule.ops[self.op])


@dataclass(frozen=True)
class SyncVerdict:
    sync: Sync
    redundant: bool
    how: str  # "implied" (exact, on the graph), "graph", "re-check", "none"
    confirmed: bool  # a re-check of the schedule without it proved every property that was proved
    needed_for: str = ""  # the property that fails without it
    text: str = ""  # the sentence: what it orders, or what goes wrong without it ("" : made from ``witness``)
    cost: float | None = None  # how much longer the makespan is with it (durations given)
    # the obligation that fails without it, decided on the graph, and its schedule (for ``why``)
    witness: Any = field(default=None, compare=False, repr=False)
    schedule: Schedule | None = field(default=None, compare=False, repr=False)

    @cached_property
    def why(self) -> str:
        """The sentence (made when first read, for a verdict decided on the graph)."""
        if self.text or self.witness is None or self.schedule is None:
            return self.text
        from .check import _one_line
        w = self.witness.get()[1] if isinstance(self.witness, _Obligation) else self.witness
        return f"without it: {_one_line(self.schedule, w)} (decided on the graph)"


@dataclass(frozen=True)
class _Obligation:
    """An obligation of the pass, by its index, made only when read."""

    decider: Any = field(repr=False)
    index: int

    def get(self) -> tuple[str, Any]:
        got: tuple[str, Any] = self.decider._ob(self.index)
        return got


@dataclass(frozen=True)
class RedundancyReport:
    schedule: Schedule
    proved: tuple[str, ...]
    verdicts: tuple[SyncVerdict, ...]
    makespan: float | None = None
    critical_path: tuple[int, ...] = ()
    checks: int = 0
    seconds: float = 0.0
    recheck_seconds: float = 0.0  # of ``seconds``: the re-checks of the schedule without one sync

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
            out.append(Sync((op.id,), "wait", "", s))
        elif k is Kind.SYNC:
            out.append(Sync((op.id,), "host sync", "", s))
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
    sync itself (its removal changes the rule's ops) answers None: re-check.

    Most syncs of a real schedule are needed, and most are needed by a read
    right after them on their own stream.  So each sync is first tried
    against the queries whose later op event shares the sync end's clock row
    (no other edge enters the stream between the sync and it): for those the
    answer without the sync is exact and cheap (only the sync end's other
    predecessors can carry the ordering in), and an obligation they flip is
    re-decided in full; only syncs this does not settle pay for the scan of
    every query."""

    def __init__(self, s: Schedule, props: Sequence[str], m: Any = None, prec: Any = None,
                 g: PrecedenceGraph | None = None) -> None:
        from ..semantics.memory import memory_view
        from ..semantics.obligations import (
            phase_obligations,
            phase_steps,
            race_obligations,
            rank_classes,
            read_obligations,
        )
        from .graph import one_query_obligations

        self.s = s
        if g is None or prec is None:
            m = match(s) if m is None else m
            prec = build_precedence(s, m).data
            g = PrecedenceGraph(s, prec)
        self.prec, self.g = prec, g
        self.real = g.reach  # the bound method: reachability in the whole graph
        self.ok = g.acyclic
        # the obligations, one list per property, and the reach queries that prove them
        self.lists: list[tuple[str, Sequence[Any]]] = []
        self.offsets: list[int] = []
        self.unproved = False
        self.has_phase = "phase" in props
        if not self.ok:
            return
        # called as the check calls them, so that inside memo.sharing() the check's results are reused
        mem = memory_view(s)
        classes = rank_classes(mem) if {"dataflow", "race"} & set(props) else None
        if "dataflow" in props:
            self.lists.append(("dataflow", read_obligations(mem, classes=classes)))
        if "race" in props:
            self.lists.append(("race", race_obligations(mem, classes=classes)))
        if "phase" in props:
            self.lists.append(("phase", phase_obligations(s, phase_steps(s))))
        qx_parts: list[np.ndarray] = []
        qy_parts: list[np.ndarray] = []
        qo_parts: list[np.ndarray] = []
        settled_parts: list[np.ndarray] = []
        base = 0
        for _prop, obs in self.lists:
            self.offsets.append(base)
            # the obligations one query proves, in bulk (as the graph engine's settled()):
            # their proving queries are the ones that hold
            idx, xs, ys = one_query_obligations(obs)
            settled = np.zeros(len(obs), dtype=bool)
            if len(idx):
                hold = g.reach_many(xs, ys)
                np.logical_or.at(settled, idx, hold)
                qx_parts.append(xs[hold])
                qy_parts.append(ys[hold])
                qo_parts.append(idx[hold] + base)
            rx: list[int] = []
            ry: list[int] = []
            ro: list[int] = []
            for i in np.flatnonzero(~settled).tolist():
                g.queries = []
                verdict, _ = g.decide(obs[i])
                if verdict != "proved":
                    self.unproved = True  # the graph could not prove it alone: every decision re-checks
                for x, y in g.queries:
                    rx.append(x)
                    ry.append(y)
                    ro.append(i + base)
            g.queries = None
            settled_parts.append(settled)
            qx_parts.append(np.asarray(rx, dtype=np.int64))
            qy_parts.append(np.asarray(ry, dtype=np.int64))
            qo_parts.append(np.asarray(ro, dtype=np.int64))
            base += len(obs)
        self.qx, self.qy, self.qo = _cat(qx_parts), _cat(qy_parts), _cat(qo_parts)
        # a settled obligation is proved by its holding queries alone: it fails iff all of them fail
        self.settled = np.concatenate(settled_parts) if settled_parts else np.zeros(0, dtype=bool)
        self.n_holding = np.bincount(self.qo, minlength=len(self.settled)) if len(self.qo) else \
            np.zeros(len(self.settled), dtype=np.int64)
        # queries grouped by the clock row of their later event, for the cheap first try
        qrow = g._row_of_a[self.qy] if len(self.qy) else np.zeros(0, dtype=np.int64)
        self.by_row = np.argsort(qrow, kind="stable")
        self.rows_sorted = qrow[self.by_row]
        # each point's predecessors in CSR form (the graph's), and which of those edges are sync edges
        why_csr = prec.why[np.argsort(prec.v, kind="stable")]
        self.sync_csr = (why_csr == _EVENT) | (why_csr == _SYNC)
        self.n_sync_in = np.bincount(prec.v[(prec.why == _EVENT) | (prec.why == _SYNC)], minlength=prec.n_points)
        self.n_op_points = 2 * len(s.ops)
        self.has_phase = "phase" in props

    def _into(self, v: int) -> list[int]:
        """The sources of the sync edges into point ``v``."""
        ptr, src = self.g._pred
        lo, hi = int(ptr[v]), int(ptr[v + 1])
        got: list[int] = src[lo:hi][self.sync_csr[lo:hi]].tolist()
        return got

    def _ob(self, i: int) -> tuple[str, Any]:
        """(property, obligation) of global obligation index ``i``."""
        k = int(np.searchsorted(np.asarray(self.offsets), i, side="right")) - 1
        prop, obs = self.lists[k]
        return prop, obs[i - self.offsets[k]]

    def _through(self, x: int, y: int, us: list[int], v: int) -> bool:
        r = self.real
        return (v == y or (y < self.n_op_points and r(v, y))) and any(x == u or r(x, u) for u in us)

    @staticmethod
    def _names(ob: Any, o: int) -> bool:
        return o in getattr(ob, "before", ()) or o in getattr(ob, "after", ()) or o in getattr(ob, "samples", ())

    def _first_try(self, o: int, v: int, us: list[int]) -> list[tuple[str, Any]]:
        """The obligations with a proving query that, exactly, fails without
        the sync: its later event is on the sync's stream after the sync's
        end, sharing that end's clock row (every path into it passes the
        end), and its earlier event reaches none of the end's predecessors
        but the sync's own edges."""
        g = self.g
        r = g.row_of[v]
        lo = int(np.searchsorted(self.rows_sorted, r, side="left"))
        hi = int(np.searchsorted(self.rows_sorted, r, side="right"))
        if lo == hi:
            return []
        sel = self.by_row[lo:hi]
        xs, ys = self.qx[sel], self.qy[sel]
        cv, pv = g.chain[v], g.pos[v]
        keep = (g._chain_a[ys] == cv) & (g._pos_a[ys] > pv) & (g._chain_a[xs] != cv)
        if not keep.any():
            return []
        sel, xs = sel[keep], xs[keep]
        ptr, src = g._pred
        gone = set(us)
        still = np.zeros(len(xs), dtype=bool)
        for p in src[ptr[v]:ptr[v + 1]].tolist():
            if p not in gone:
                still |= (xs == p) | g.reach_many(xs, np.full(len(xs), p, dtype=np.int64))
        out: list[tuple[str, Any]] = []
        for i in np.unique(self.qo[sel[~still]]).tolist():
            prop, ob = self._ob(i)
            if prop == "phase" and self._names(ob, o):
                continue  # the rule itself changes without the sync
            out.append((prop, ob))
        return out

    def needed_in_bulk(self, syncs: Sequence[Sync]) -> dict[int, tuple[str, Any]]:
        """The first try of :meth:`needed` for every wait and host sync at
        once, for the obligations one query proves (most of them): index
        into ``syncs`` -> a (property, obligation) that fails without it.
        Such an obligation fails exactly when every query that proves it
        fails, so no obligation is re-decided here; syncs not in the answer
        go through :meth:`needed`."""
        g = self.g
        if not self.ok or self.unproved or not len(self.qx):
            return {}
        ends: list[int] = []
        which: list[int] = []
        for k, sy in enumerate(syncs):
            if sy.kind in ("wait", "host sync") and self.n_sync_in[end(sy.op)]:
                ends.append(end(sy.op))
                which.append(k)
        if not ends:
            return {}
        v_a = np.asarray(ends, dtype=np.int64)
        # every sync end with sync edges is a merge point: it has a clock row of its own
        sync_of_row = np.full(int(g._row_of_a.max()) + 1, -1, dtype=np.int64)
        sync_of_row[g._row_of_a[v_a]] = np.arange(len(v_a))
        qs = np.flatnonzero(self.settled[self.qo])  # queries of settled obligations (all hold)
        xs, ys = self.qx[qs], self.qy[qs]
        k_of = sync_of_row[g._row_of_a[ys]]
        ok = k_of >= 0
        qs, xs, ys, k_of = qs[ok], xs[ok], ys[ok], k_of[ok]
        v = v_a[k_of]
        cv = g._chain_a[v]
        ok = (g._chain_a[ys] == cv) & (g._pos_a[ys] > g._pos_a[v]) & (g._chain_a[xs] != cv)
        qs, xs, k_of, v = qs[ok], xs[ok], k_of[ok], v[ok]
        if not len(qs):
            return {}
        # does the earlier event reach the sync end through a predecessor other than the sync's edges?
        # (the predecessors of each query's sync end, in CSR order, but the sync's own edges)
        ptr, src = g._pred
        kept_csr = ~self.sync_csr
        still = np.zeros(len(qs), dtype=bool)
        cnt = ptr[v + 1] - ptr[v]
        first = np.repeat(ptr[v], cnt)
        offs = np.arange(int(cnt.sum()), dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        at = first + offs
        ok = kept_csr[at]
        pq = np.repeat(np.arange(len(v), dtype=np.int64), cnt)[ok]
        pp = src[at[ok]]
        if len(pq):
            hit = (xs[pq] == pp) | g.reach_many(xs[pq], pp)
            np.logical_or.at(still, pq, hit)
        fq, fk = qs[~still], k_of[~still]
        if not len(fq):
            return {}
        # an obligation fails without the sync when every one of its holding queries fails
        ob = self.qo[fq]
        key = fk * (len(self.settled) + 1) + ob
        uniq, counts = np.unique(key, return_counts=True)
        obs_u = uniq % (len(self.settled) + 1)
        ks_u = uniq // (len(self.settled) + 1)
        full = counts == self.n_holding[obs_u]
        out: dict[int, tuple[str, Any]] = {}
        phase_from = self.offsets[[p for p, _ in self.lists].index("phase")] if self.has_phase else None
        for k, i in zip(ks_u[full].tolist(), obs_u[full].tolist(), strict=True):
            if which[k] in out:
                continue
            if phase_from is not None and i >= phase_from:
                prop, o = self._ob(i)
                if self._names(o, syncs[which[k]].op):
                    continue  # the rule itself changes without the sync
            out[which[k]] = (self._prop_of(i), _Obligation(self, i))
        return out

    def _prop_of(self, i: int) -> str:
        k = int(np.searchsorted(np.asarray(self.offsets), i, side="right")) - 1
        return self.lists[k][0]

    def needed(self, sy: Sync) -> tuple[str, Any] | bool | None:
        """(property, obligation) that fails without the sync; False: none
        does; None: not decidable here."""
        if not self.ok or sy.kind not in ("wait", "host sync"):
            return None
        o = sy.op
        v = end(o)
        us = self._into(v)
        if not us:
            return False
        if self.unproved:
            return None  # an obligation the graph could not prove alone
        first = self._first_try(o, v, us)
        if first:
            got = self._decide_without(first, us, v, stop_at_violation=True)
            if isinstance(got, tuple):
                return got
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
                prop, ob = self._ob(i)
                if prop == "phase" and self._names(ob, o):
                    names_it = True  # the phase rule names the sync itself: its removal changes the rule's ops
                    continue
                cone.append((prop, ob))
            if names_it or self._phase_names(o):
                # the phase obligations of the schedule without it that are new (the rule picks other
                # first and last ops on its lane) are decided too
                from ..semantics.obligations import phase_obligations, phase_steps, phase_steps_without
                old = self._phase_set()
                steps = phase_steps_without(self.s, phase_steps(self.s), o)
                new = phase_obligations(self.s, steps) if steps is not None else \
                    phase_obligations(without(self.s, [sy]))
                cone.extend(("phase", ob) for ob in new if ob not in old)
        if not cone:
            return False
        return self._decide_without(cone, us, v)

    def _decide_without(self, cone: list[tuple[str, Any]], us: list[int], v: int,
                        stop_at_violation: bool = False) -> tuple[str, Any] | bool | None:
        """Decide ``cone`` with reachability in the graph without the edges
        ``us -> v``: the first violated (property, obligation), or False when
        every one is proved, or None when one needs the solver."""
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
        unsure = False
        try:
            for prop, ob in cone:
                verdict, _ = g.decide(ob)
                if verdict == "violated":
                    return prop, ob
                if verdict != "proved":
                    if not stop_at_violation:
                        return None
                    unsure = True
        finally:
            del g.reach  # back to the class's method
        return None if unsure else False

    def _phase_set(self) -> set[Any]:
        got: set[Any] | None = getattr(self, "_phase_cache", None)
        if got is None:
            got = set()
            for prop, obs in self.lists:
                if prop == "phase":
                    got.update(obs)
            self._phase_cache = got
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


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _corridor(x: int, y: int, succ: list[list[int]], removed: set[tuple[int, int]], reach: Any,
              n_op_points: int) -> bool:
    """Is there a path from ``x`` to ``y`` that uses no edge of ``removed``?
    Only points that reach ``y`` are visited (aux points always); an op
    point that reaches ``y`` but none of the removed edges' sources has such
    a path already (any path of its reaches ``y`` without them)."""
    sources = {u for u, _ in removed}
    seen = {x}
    stack = [x]
    while stack:
        a = stack.pop()
        for b in succ[a]:
            if (a, b) in removed or b in seen:
                continue
            if b == y:
                return True
            if b < n_op_points:
                if not reach(b, y):
                    continue
                if b not in sources and not any(reach(b, u) for u in sources if u < n_op_points) and all(
                        u < n_op_points for u in sources):
                    return True
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
    from ..gcpause import gc_paused
    from ..semantics.memo import sharing

    # the pass decides on the check's own matching, precedence and obligations; it makes tens of
    # thousands of small objects with no cycles, so the cyclic collector waits (as in the check)
    with sharing(), gc_paused():
        return _find_redundant(s, properties, durations, confirm, graph, kw)


def _find_redundant(s: Schedule, properties: Iterable[str], durations: Mapping[int, float] | None, confirm: bool,
                    graph: bool, kw: Mapping[str, Any]) -> RedundancyReport:
    t0 = time.perf_counter()
    props = tuple(p for p in PROPERTIES if p in tuple(properties))
    base = _check(s, props, kw)
    proved = tuple(r.property for r in base.results if r.verdict is Verdict.PROVED)
    cands = syncs_of(s)
    checks = 1
    recheck = 0.0
    verdicts: list[SyncVerdict] = []
    graphs = _graph_of(s) if proved and "matching" in proved else None
    implied = _implied(s, cands, graphs) if graphs is not None else {}
    # a choice schedule superposes every branch: its makespan is not a run's
    span = makespan(s, durations) if durations is not None and not s.choices else None
    on_path = set(span[1]) if span is not None else set()
    decider = _GraphDecider(s, proved, *graphs) if graph and graphs is not None and not s.choices else None
    bulk = decider.needed_in_bulk(cands) if decider is not None else {}
    for k, sy in enumerate(cands):
        how = implied.get(sy.ops)
        if not proved:
            verdicts.append(SyncVerdict(sy, False, "none", False, "", "nothing is proved, so no sync can be judged"))
            continue
        rep: Report | None = None
        on_graph = bulk.get(k) or (decider.needed(sy) if decider is not None and how is None else None)
        cost = None
        if span is not None:  # the removed sync takes no time (a removed barrier is an empty compute)
            # a sync with no op on the critical path costs nothing: that path is still there without it
            cost = 0.0
            if on_path.intersection(sy.ops):
                gone = {**(durations or {}), **{o: 0.0 for o in sy.ops}}
                cost = span[0] - makespan(without(s, [sy]), gone)[0]
        if isinstance(on_graph, tuple):  # needed, decided exactly on the graph: no re-check
            prop, ob = on_graph
            verdicts.append(SyncVerdict(sy, False, "graph", False, prop, "", cost, ob, s))
            continue
        if on_graph is False and how is None:
            how = "graph"
        if how is None or confirm:
            t1 = time.perf_counter()
            rep = _check(without(s, [sy]), proved, kw)
            recheck += time.perf_counter() - t1
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
                            time.perf_counter() - t0, recheck)


def _graph_of(s: Schedule) -> tuple[Any, Any, PrecedenceGraph]:
    """The matching, the data precedence and its graph, made once for the pass."""
    from .graph import graph_of

    m = match(s)
    prec = build_precedence(s, m).data
    return m, prec, graph_of(s, prec)


def _implied(s: Schedule, cands: list[Sync], graphs: tuple[Any, Any, PrecedenceGraph] | None = None
             ) -> dict[tuple[int, ...], str]:
    """The waits and host syncs whose every ordering edge already holds
    through other edges (exact: removing one changes no reachability)."""
    _m, prec, g = graphs if graphs is not None else _graph_of(s)
    if not g.acyclic:
        return {}
    single = [sy for sy in cands if len(sy.ops) == 1]
    if not single:
        return {}
    ends = np.asarray([end(sy.op) for sy in single], dtype=np.int64)
    is_end = np.zeros(prec.n_points, dtype=bool)
    is_end[ends] = True
    into_end = is_end[prec.v]
    u_all, v_all, w_all = prec.u[into_end], prec.v[into_end], prec.why[into_end]
    ordering = (w_all == _EVENT) | (w_all == _SYNC)
    n_in = np.bincount(v_all, minlength=prec.n_points)
    n_ord = np.bincount(v_all[ordering], minlength=prec.n_points)
    # an ordering edge u -> end(o) is implied at once when u already reaches the sync's start
    ou, ov = u_all[ordering], v_all[ordering]
    early = (ou != ov - 1) & g.reach_many(ou, ov - 1)
    n_early = np.bincount(ov[early], minlength=prec.n_points)
    out: dict[tuple[int, ...], str] = {}
    # the rest need a look at each edge: every edge early, or an end with more than two predecessors
    look = (n_ord[ends] == 0) | (n_early[ends] == n_ord[ends]) | (n_in[ends] > 2)
    into: dict[int, list[tuple[int, int]]] = {}  # end point of a sync -> its (source point, why) edges
    if look.any():
        wanted = set(ends[look].tolist())
        for u, v, w in zip(u_all.tolist(), v_all.tolist(), w_all.tolist(), strict=True):
            if v in wanted:
                into.setdefault(v, []).append((u, w))
    for sy in (single[i] for i in np.flatnonzero(look).tolist()):
        o = sy.op
        e = end(o)
        incoming = into.get(e, [])
        ordering_l = [(u, w) for u, w in incoming if w in (_EVENT, _SYNC)]
        if not ordering_l:
            out[sy.ops] = "it orders nothing: no record of its event (or nothing it waits for) is issued before it"
            continue
        others = [u for u, _ in incoming]
        via: list[str] = []
        for u, _ in ordering_l:
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
    ctx = new_context()
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


# ---------------------------------------------------------------- suggestions: a wait moved later
@dataclass(frozen=True)
class MoveSuggestion:
    """A sync the schedule does not have: ``sync`` moved later in its rank's
    program, to just after ``after`` (an op of its own stream).  It is a
    suggestion about another schedule, not a result about the given one;
    ``checked`` says that the moved schedule, re-checked from scratch,
    proves every property the given one proves."""

    sync: Sync
    after: int  # op id (in the given schedule) that the sync is moved after
    after_label: str
    passed: tuple[str, ...]  # labels of the ops the sync no longer holds back
    makespan_before: float
    makespan_after: float
    checked: bool
    schedule: Schedule = field(repr=False, compare=False)  # the moved schedule

    @property
    def gain(self) -> float:
        return self.makespan_before - self.makespan_after


def moved(s: Schedule, o: int, after: int) -> tuple[Schedule, dict[int, int]]:
    """``s`` with op ``o`` moved to just after op ``after`` of the same rank
    (later in its program), loaded and validated from scratch; and the map
    from old op ids to new ones."""
    from ..ir.fileformat import op_to_dict, schedule_from_dict, schedule_to_dict

    rank = s.ops[o].rank
    order = [op.id for op in s.by_rank[rank] if op.id != o]
    order.insert(order.index(after) + 1, o)
    doc = schedule_to_dict(s)
    doc["ranks"] = {str(r): [op_to_dict(s.ops[i]) for i in (order if r == rank else
                                                          [op.id for op in s.by_rank[r]])] for r in s.ranks}
    new = schedule_from_dict(doc, s.source)
    ids: dict[int, int] = {}
    for r in s.ranks:
        old_ids = order if r == rank else [op.id for op in s.by_rank[r]]
        for old, op in zip(old_ids, new.by_rank[r], strict=True):
            ids[old] = op.id
    return new, ids


def suggest_moves(s: Schedule, properties: Iterable[str] = PROPERTIES, *, durations: Mapping[int, float] | None = None,
                  limit: int = 8, **kw: Any) -> tuple[MoveSuggestion, ...]:
    """For each wait or host sync on the critical path (at most ``limit``):
    the latest place after it on its own stream that it can move to with
    every property ``s`` proves still proved, when that shortens the
    makespan.  Each step of the search is a check from scratch; the place
    found is the latest of a doubling-then-bisecting search (moving a sync
    later releases more ops, so good places come first), and only the moved
    schedule that is reported is claimed to check."""
    props = tuple(p for p in PROPERTIES if p in tuple(properties))
    base = _check(s, props, kw)
    proved = tuple(r.property for r in base.results if r.verdict is Verdict.PROVED)
    if not proved or s.choices:
        return ()
    span, path = makespan(s, durations)
    if span == float("inf"):
        return ()
    on_path = [o for o in path if s.ops[o].kind in (Kind.WAIT, Kind.SYNC)]
    by_op = {sy.op: sy for sy in syncs_of(s) if sy.kind in ("wait", "host sync")}
    out: list[MoveSuggestion] = []
    for o in on_path[:limit]:
        sy = by_op.get(o)
        if sy is None:
            continue
        op = s.ops[o]
        later = [x.id for x in s.streams[(op.rank, op.stream)] if x.index > op.index]
        if not later:
            continue
        cache: dict[int, tuple[bool, Schedule, dict[int, int]] | None] = {}

        def good(k: int, o: int = o, later: list[int] = later,
                 cache: dict[int, tuple[bool, Schedule, dict[int, int]] | None] = cache) -> bool:
            if k not in cache:
                try:
                    new, ids = moved(s, o, later[k])
                except Exception:  # noqa: BLE001  a move the format refuses is no suggestion
                    cache[k] = None
                    return False
                cache[k] = (not _failed(_check(new, proved, kw)), new, ids)
            got = cache[k]
            return got is not None and got[0]

        if not good(0):
            continue
        lo, step = 0, 1  # lo: a good place; find a bad one above it, then bisect
        hi = len(later)
        while lo + step < len(later):
            if good(lo + step):
                lo += step
                step *= 2
            else:
                hi = lo + step
                break
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if good(mid):
                lo = mid
            else:
                hi = mid
        got = cache[lo]
        assert got is not None
        _, new, ids = got
        nd = {ids[i]: d for i, d in durations.items()} if durations else None
        after_span = makespan(new, nd)[0]
        if after_span < span:
            out.append(MoveSuggestion(sy, later[lo], s.label(s.ops[later[lo]]),
                                      tuple(s.label(s.ops[i]) for i in later[:lo + 1]), span, after_span, True, new))
    return tuple(out)


__all__ = ["Minimized", "MoveSuggestion", "RedundancyReport", "Sync", "SyncVerdict", "default_duration",
           "find_redundant", "makespan", "minimize", "moved", "suggest_moves", "syncs_of", "without", "write_without"]
