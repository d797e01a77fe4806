"""The only module that talks to z3.

The base formula (every precedence of the schedule) is written as SMT-LIB
text and loaded with ``from_string`` (several times faster than building it
through the Python API).  Each property is then one ``check`` under an
assumption literal that implies "some obligation of this property is
violated" (a disjunction over per-obligation literals): no push/pop, and one
solver call per property answers for all of its obligations at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import z3  # type: ignore[import-untyped]

from ..semantics.obligations import MetaOb, OrderOb, OverlapOb, ReadOb, SampleOb
from ..semantics.precedence import Edge, Precedence, end, start
from .graph import shortest_strict_cycle

AnyOb = ReadOb | OverlapOb | OrderOb | SampleOb | MetaOb

z3.set_param("smt.arith.solver", 1)


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
        self.t = [z3.Int(f"t{p}", self.ctx) for p in range(prec.n_points)]
        self._n_lits = 0

    @staticmethod
    def _limits(solver: z3.Solver, timeout_s: float | None, rlimit: int | None) -> None:
        if timeout_s is not None:
            solver.set("timeout", max(1, int(timeout_s * 1000)))
        if rlimit is not None:
            solver.set("rlimit", int(rlimit))

    def _base_text(self, edges: Sequence[Edge]) -> str:
        parts = [f"(declare-fun t{p} () Int)" for p in range(self.prec.n_points)]
        for e in reversed(edges):
            parts.append(f"(assert ({'<' if e.strict else '<='} t{e.u} t{e.v}))")
        return "\n".join(parts)

    # ----------------------------------------------------------- helpers
    def _fresh(self, prefix: str) -> z3.BoolRef:
        self._n_lits += 1
        return z3.Bool(f"{prefix}{self._n_lits}", self.ctx)

    def _times(self, model: z3.ModelRef) -> tuple[int, ...]:
        out = []
        for v in self.t:
            val = model.eval(v, model_completion=True)
            out.append(val.as_long())  # type: ignore[attr-defined]
        return tuple(out)

    def _check(self, *assumptions: z3.BoolRef) -> tuple[str, str]:
        r = self.solver.check(*assumptions)
        if r == z3.sat:
            return "sat", ""
        if r == z3.unsat:
            return "unsat", ""
        return "unknown", self.solver.reason_unknown()

    # ----------------------------------------------------------- formulas
    def s(self, o: int) -> z3.ArithRef:
        return self.t[start(o)]

    def e(self, o: int) -> z3.ArithRef:
        return self.t[end(o)]

    def violation(self, ob: AnyOb) -> z3.BoolRef:
        """A formula true exactly in the executions where ``ob`` fails.
        Only strict comparisons: a witness is then a tie-free interleaving."""
        ctx = self.ctx
        if isinstance(ob, ReadOb):
            r = ob.read
            sr, er = self.s(r), self.e(r)
            torn = [z3.And(sr < self.e(b), self.e(b) < er) for b in ob.bad]
            stale_parts = [
                z3.Or(self.e(g) > sr, *[z3.And(self.e(g) < self.e(b), self.e(b) < sr) for b in ob.bad])
                for g in ob.good
            ]
            if ob.init_good:
                stale_parts.append(z3.Or(*[self.e(b) < sr for b in ob.bad]) if ob.bad else z3.BoolVal(False, ctx))
            stale = z3.And(*stale_parts) if stale_parts else z3.BoolVal(True, ctx)
            return z3.Or(stale, *torn)
        if isinstance(ob, OverlapOb):
            return z3.And(self.s(ob.a) < self.e(ob.b), self.s(ob.b) < self.e(ob.a))
        if isinstance(ob, OrderOb):
            if len(ob.before) == 1 and len(ob.after) == 1:
                return self.s(ob.after[0]) < self.e(ob.before[0])
            pivot = z3.Int(f"pivot{self._n_lits + 1}", ctx)
            self._n_lits += 1
            return z3.And(z3.Or(*[self.e(a) > pivot for a in ob.before]),
                          z3.Or(*[self.s(b) <= pivot for b in ob.after]))
        if isinstance(ob, SampleOb):
            return z3.Or(*[z3.And(*[self.s(b) < self.e(g) for g in ob.samples]) for b in ob.after])
        return z3.BoolVal(True, ctx)  # MetaOb: broken by the metadata alone

    # ----------------------------------------------------------- queries
    def check_base(self) -> Answer:
        status, reason = self._check()
        if status == "sat":
            return Answer("sat", times=self._times(self.solver.model()))
        return Answer(status, reason)

    def find_violations(self, obs: Sequence[AnyOb],
                        limit: int) -> tuple[list[Answer], str]:
        """Up to ``limit`` violated obligations, each with a witness.
        Returns the answers and a final status: "unsat" when every other
        obligation is proved, "unknown: reason" when the solver gave up,
        "limit" when it stopped after ``limit`` violations."""
        lits = []
        for ob in obs:
            q = self._fresh("q")
            self.solver.add(z3.Implies(q, self.violation(ob)))
            lits.append(q)
        remaining = list(range(len(obs)))
        found: list[Answer] = []
        while remaining:
            if len(found) >= limit:
                return found, "limit"
            p = self._fresh("p")
            self.solver.add(z3.Implies(p, z3.Or(*[lits[i] for i in remaining])))
            status, reason = self._check(p)
            if status == "unsat":
                return found, "unsat"
            if status == "unknown":
                return found, f"unknown: {reason}"
            model = self.solver.model()
            idx = next(i for i in remaining if z3.is_true(model.eval(lits[i], model_completion=True)))
            found.append(Answer("sat", index=idx, times=self._times(model)))
            remaining.remove(idx)
        return found, "unsat"

    def deadlock_cycle(self) -> tuple[list[Edge], str]:
        """After ``check_base`` said unsat: the edges of a shortest cycle of
        waits, taken from an unsat core of the tracked precedence edges."""
        solver = z3.SimpleSolver(ctx=self.ctx)
        self._limits(solver, self.timeout_s, self.rlimit)
        edges = self.prec.edges
        trackers = [z3.Bool(f"k{i}", self.ctx) for i in range(len(edges))]
        for k, ed in zip(trackers, edges, strict=True):
            u, v = self.t[ed.u], self.t[ed.v]
            solver.add(z3.Implies(k, u < v if ed.strict else u <= v))
        r = solver.check(*trackers)
        if r != z3.unsat:
            return [], f"core extraction gave {r}: {solver.reason_unknown()}"
        core = {str(c) for c in solver.unsat_core()}
        core_edges = [edges[i] for i in range(len(edges)) if f"k{i}" in core]
        return shortest_strict_cycle(core_edges), ""
