"""The only module that talks to z3.

The base formula (every precedence of the schedule) is written as SMT-LIB
text and loaded with ``from_string`` (several times faster than building it
through the Python API).  Each property is then one ``check`` under an
assumption literal that implies "some obligation of this property is
violated" (a disjunction over per-obligation literals): no push/pop, and one
solver call per property answers for all of its obligations at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import z3  # type: ignore[import-untyped]

from ..semantics.obligations import MetaOb, OrderOb, OverlapOb, ReadOb, SampleOb
from ..semantics.precedence import Edge, Precedence, end, start
from .graph import shortest_strict_cycle

AnyOb = ReadOb | OverlapOb | OrderOb | SampleOb | MetaOb

z3.set_param("smt.arith.solver", 1)

_DEFINE = re.compile(r"\(define-fun t(\d+) \(\) Int\s+(\(- \d+\)|\d+)\)")


@dataclass(frozen=True)
class Answer:
    status: str  # "sat", "unsat", "unknown"
    reason: str = ""
    index: int | None = None  # which obligation is violated (sat only)
    times: tuple[int, ...] = ()  # a model: one time per point (sat only)


class Z3Backend:
    def __init__(self, prec: Precedence, *, timeout_s: float | None = None,
                 rlimit: int | None = None, memory_mb: int | None = None) -> None:
        self.prec = prec
        self.ctx = z3.Context()
        if memory_mb is not None:
            z3.set_param("memory_max_size", int(memory_mb))
        self.solver = z3.SimpleSolver(ctx=self.ctx)
        self._limits(self.solver, timeout_s, rlimit)
        self.timeout_s, self.rlimit = timeout_s, rlimit
        self.solver.from_string(self._base_text(prec.edges))
        self._n_lits = 0

    @staticmethod
    def _limits(solver: z3.Solver, timeout_s: float | None, rlimit: int | None) -> None:
        if timeout_s is not None:
            solver.set("timeout", max(1, int(timeout_s * 1000)))
        if rlimit is not None:
            solver.set("rlimit", int(rlimit))

    def _base_text(self, edges: Sequence[Edge]) -> str:
        """Edges in reverse topological order of their sources: z3's arithmetic
        solver then propagates far less (DESIGN.md measured ~19x on the base)."""
        from .graph import topological_order

        n = self.prec.n_points
        succ: list[list[int]] = [[] for _ in range(n)]
        for e in edges:
            succ[e.u].append(e.v)
        rank = [0] * n
        for i, p in enumerate(topological_order(n, succ)):
            rank[p] = i + 1  # points on a cycle keep 0
        ordered = sorted(edges, key=lambda e: rank[e.u], reverse=True)
        parts = [f"(declare-fun t{p} () Int)" for p in range(n)]
        for e in ordered:
            parts.append(f"(assert ({'<' if e.strict else '<='} t{e.u} t{e.v}))")
        return "\n".join(parts)

    # ----------------------------------------------------------- helpers
    def _times(self, model: z3.ModelRef) -> tuple[int, ...]:
        """Every point's time in ``model``, read from its SMT-LIB text (much
        faster than evaluating each constant through the API).  A point the
        model leaves free is unconstrained; 0 is as good as any value."""
        times = [0] * self.prec.n_points
        for m in _DEFINE.finditer(model.sexpr()):
            p = int(m.group(1))
            if p < len(times):
                val = m.group(2)
                times[p] = -int(val[3:-1]) if val.startswith("(-") else int(val)
        return tuple(times)

    def _check(self, *assumptions: z3.BoolRef) -> tuple[str, str]:
        r = self.solver.check(*assumptions)
        if r == z3.sat:
            return "sat", ""
        if r == z3.unsat:
            return "unsat", ""
        return "unknown", self.solver.reason_unknown()

    # ----------------------------------------------------------- formulas
    def violation(self, ob: AnyOb) -> tuple[str, set[int]]:
        """SMT-LIB text of a formula true exactly in the executions where ``ob``
        fails, and the time points it uses.  Only strict comparisons: a
        witness is then a tie-free interleaving."""
        used: set[int] = set()

        def s_(o: int) -> str:
            used.add(start(o))
            return f"t{start(o)}"

        def e_(o: int) -> str:
            used.add(end(o))
            return f"t{end(o)}"

        def or_(xs: list[str]) -> str:
            return "false" if not xs else xs[0] if len(xs) == 1 else f"(or {' '.join(xs)})"

        def and_(xs: list[str]) -> str:
            return "true" if not xs else xs[0] if len(xs) == 1 else f"(and {' '.join(xs)})"

        if isinstance(ob, ReadOb):
            sr = s_(ob.read)
            torn = [f"(and (< {sr} {e_(b)}) (< {e_(b)} {e_(m)}))" for b in ob.bad for m in ob.until or (ob.read,)]
            stale_parts = [
                or_([f"(> {e_(g)} {sr})"] + [f"(and (< {e_(g)} {e_(b)}) (< {e_(b)} {sr}))" for b in ob.bad])
                for g in ob.good
            ]
            if ob.init_good:
                stale_parts.append(or_([f"(< {e_(b)} {sr})" for b in ob.bad]))
            return or_([and_(stale_parts)] + torn), used
        if isinstance(ob, OverlapOb):  # each access lasts until its op (or every op of its *_until) ended
            return or_([f"(and (< {s_(ob.a)} {e_(mb)}) (< {s_(ob.b)} {e_(ma)}))"
                        for ma in ob.a_until or (ob.a,) for mb in ob.b_until or (ob.b,)]), used
        if isinstance(ob, OrderOb):
            pairs = [f"(< {s_(b)} {e_(a)})" for a in ob.before for b in ob.after]
            return or_(pairs), used
        if isinstance(ob, SampleOb):
            return or_([and_([f"(< {s_(b)} {e_(g)})" for g in ob.samples]) for b in ob.after]), used
        return "true", used  # MetaOb: broken by the metadata alone

    # ----------------------------------------------------------- queries
    def check_base(self) -> Answer:
        """Does any execution exist?  (No model: the status is all that is used.)"""
        status, reason = self._check()
        return Answer(status, reason)

    def find_violations(self, obs: Sequence[AnyOb], limit: int) -> tuple[list[Answer], str]:
        """Up to ``limit`` violated obligations, each with a witness.  Each
        obligation is one ``check`` under its own assumption literal (faster
        here than one disjunction over all of them).  Returns the answers and
        a final status: "unsat" when every other obligation is proved,
        "unknown: reason" when the solver gave up on one, "limit" when it
        stopped after ``limit`` violations."""
        parts: list[str] = []
        names: list[tuple[int, str]] = []  # (obligation, literal) in order
        for i, ob in enumerate(obs):  # the time points were declared with the base formula
            for text in self._cases(ob):
                self._n_lits += 1
                name = f"q{self._n_lits}"
                names.append((i, name))
                parts.append(f"(declare-fun {name} () Bool)")
                parts.append(f"(assert (=> {name} {text}))")
        if parts:
            self.solver.from_string("\n".join(parts))
        found: list[Answer] = []
        gave_up = ""
        done = -1  # the last obligation found violated: its other cases are not needed
        for k, (i, name) in enumerate(names):
            if i == done:
                continue
            q = z3.Bool(name, self.ctx)
            status, reason = self._check(q)
            # Decided (proved, or its witness kept): switch the case off for
            # good, so later checks need not branch on it.
            self.solver.add(z3.Not(q))
            if status == "sat":
                found.append(Answer("sat", index=i, times=self._times(self.solver.model())))
                done = i
                if len(found) >= limit:
                    return found, "limit" if any(j > i for j, _ in names[k + 1:]) else "unsat"
            elif status == "unknown" and not gave_up:
                gave_up = reason
        return found, f"unknown: {gave_up}" if gave_up else "unsat"

    def _cases(self, ob: AnyOb) -> list[str]:
        """The violation of ``ob`` as a disjunction of cases, each checked on
        its own: an order between two sets of ops fails iff one pair is out of
        order, and z3 refutes one precedence at a time much faster than their
        disjunction.  Other obligations are one case."""
        if isinstance(ob, OrderOb) and len(ob.before) * len(ob.after) > 1:
            return [f"(< t{start(b)} t{end(a)})" for a in ob.before for b in ob.after]
        if isinstance(ob, SampleOb) and len(ob.after) > 1:
            return [self.violation(SampleOb(ob.prop, ob.samples, (b,), ob.why))[0] for b in ob.after]
        return [self.violation(ob)[0]]

    def deadlock_cycle(self) -> tuple[list[Edge], str]:
        """After ``check_base`` said unsat: the edges of a shortest cycle of
        waits, taken from an unsat core of the tracked precedence edges."""
        solver = z3.SimpleSolver(ctx=self.ctx)
        self._limits(solver, self.timeout_s, self.rlimit)
        edges = self.prec.edges
        parts = [f"(declare-fun t{p} () Int)" for p in range(self.prec.n_points)]
        for i, ed in enumerate(edges):
            parts.append(f"(declare-fun k{i} () Bool)")
            parts.append(f"(assert (=> k{i} ({'<' if ed.strict else '<='} t{ed.u} t{ed.v})))")
        solver.from_string("\n".join(parts))
        trackers = [z3.Bool(f"k{i}", self.ctx) for i in range(len(edges))]
        r = solver.check(*trackers)
        if r != z3.unsat:
            return [], f"core extraction gave {r}: {solver.reason_unknown()}"
        core = {str(c) for c in solver.unsat_core()}
        core_edges = [edges[i] for i in range(len(edges)) if f"k{i}" in core]
        return shortest_strict_cycle(core_edges), ""
