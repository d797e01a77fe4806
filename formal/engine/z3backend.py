"""The only module that talks to z3.

The base formula (every precedence of the schedule) is written as SMT-LIB
text and loaded with ``from_string`` (several times faster than building it
through the Python API).  Each property is then one ``check`` under an
assumption literal that implies "some obligation of this property is
violated" (a disjunction over per-obligation literals): no push/pop, and one
solver call per property answers for all of its obligations at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import z3  # type: ignore[import-untyped]

from ..errors import InternalError, UsageError
from ..ir import Schedule
from ..semantics.obligations import MetaOb, OrderOb, OverlapOb, ReadOb, SampleOb
from ..semantics.precedence import Edge, Precedence, end, start
from .graph import shortest_strict_cycle

AnyOb = ReadOb | OverlapOb | OrderOb | SampleOb | MetaOb

z3.set_param("smt.arith.solver", 1)


#: A developer's knob, for tests: ``SYNCPROOF_Z3_SEED=N`` gives z3's SMT and SAT
#: cores another random seed, so the solver returns other models (other
#: witness runs); every check and every new context read it.  Every verdict must stay the same and every sentence must
#: still name its culprits; the slow suite runs the sentence-pinning tests so.
SEED_VARIABLE = "SYNCPROOF_Z3_SEED"


def apply_seed() -> None:
    text = os.environ.get(SEED_VARIABLE, "")
    if not text:
        return
    if not (text.isascii() and text.isdigit() and len(text) <= 10 and int(text) < 2**32):
        raise UsageError(f"environment variable {SEED_VARIABLE} must be an integer from 0 to 4294967295,"
                         f" got {text[:40]!r}")
    z3.set_param("smt.random_seed", int(text))
    z3.set_param("sat.random_seed", int(text))


def new_context() -> z3.Context:
    """A new z3 context.  Made with z3's memory limit lifted and then set
    back: the limit is global, and under a limit smaller than a context
    ``Z3_mk_context`` fails and z3's Python layer crashes the process
    (``--memory 1`` was a segfault).  :data:`SEED_VARIABLE` applies here."""
    apply_seed()
    was = z3.get_param("memory_max_size")
    z3.set_param("memory_max_size", 0)
    try:
        return z3.Context()
    finally:
        z3.set_param("memory_max_size", was)

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
        self.ctx = new_context()
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
        """See :func:`violation`."""
        return violation(ob)

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
        return [text for text, _ in cases(ob)]

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


def violation(ob: AnyOb) -> tuple[str, set[int]]:
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


def cases(ob: AnyOb) -> list[tuple[str, set[int]]]:
    """The violation of ``ob`` as a disjunction of cases, each checked on
    its own, with the time points each uses: an order between two sets of
    ops fails iff one pair is out of order, and z3 refutes one precedence at
    a time much faster than their disjunction.  Other obligations are one
    case."""
    if isinstance(ob, OrderOb) and len(ob.before) * len(ob.after) > 1:
        return [(f"(< t{start(b)} t{end(a)})", {start(b), end(a)}) for a in ob.before for b in ob.after]
    if isinstance(ob, SampleOb) and len(ob.after) > 1:
        return [violation(SampleOb(ob.prop, ob.samples, (b,), ob.why)) for b in ob.after]
    return [violation(ob)]


# ------------------------------------------------------------- cone encoding
BATCH_CASES = 2000  # distinct cases asked in one solver, at most
SHORT_PATH = 8  # a path of at most this many edges is given edge by edge; a longer one as one checked fact

_ATOM = re.compile(r"\((<|>) t(\d+) t(\d+)\)")
_POINT = re.compile(r"t(\d+)")


_POSITIVE = re.compile(r"(?:[()\s]|and|or|true|false)*")


def atoms(text: str) -> tuple[tuple[int, int], ...]:
    """The strict comparisons of a violation's text, each as ``(x, y)``:
    ``t(x) < t(y)``.  The encoding needs the text to be built from them with
    ``and`` and ``or`` alone (docs/semantics.md): anything else is a bug."""
    if not _POSITIVE.fullmatch(_ATOM.sub("", text)):
        raise InternalError(f"a violation is not a positive formula of strict comparisons: {text[:200]}")
    out = []
    for op, a, b in _ATOM.findall(text):
        out.append((int(a), int(b)) if op == "<" else (int(b), int(a)))
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class Shape:
    """One case as z3 gets it, its points renamed ``x!0``, ``x!1``, ... in
    order of appearance: the violation and the constraints (support edges and
    checked path facts).  Two cases of the same shape are the same formula up
    to a renaming of variables, so z3's answer for one is its answer for the
    other."""

    violation: str
    constraints: tuple[str, ...]
    points: tuple[int, ...]  # the schedule's point of each x!j

    @property
    def key(self) -> str:
        return self.violation + ";" + ";".join(self.constraints)


def shape(text: str, paths: Sequence[tuple[int, int, bool, int]]) -> Shape:
    """The shape of the violation ``text`` on the constraints ``paths``
    (``(u, v, strict, kind)``: an edge, kind 0, or a checked fact, kind 1)."""
    names: dict[int, int] = {}

    def name(p: int) -> str:
        k = names.get(p)
        if k is None:
            k = names[p] = len(names)
        return f"x!{k}"

    renamed = _POINT.sub(lambda m: name(int(m.group(1))), text)
    cons = {f"({'<' if st else '<='} {name(u)} {name(v)})" for u, v, st, _ in paths}
    return Shape(renamed, tuple(sorted(cons)), tuple(names))


@dataclass(frozen=True)
class _Case:
    ob: int  # index of its obligation
    atoms: tuple[tuple[int, int], ...]  # its strict comparisons (x, y): t(x) < t(y), in schedule points
    shape: Shape

    @property
    def points(self) -> set[int]:
        return {p for a in self.atoms for p in a}


class ConeBackend:
    """The z3 engine's encoding (docs/semantics.md, "The z3 engine's
    encoding").  Each case of an obligation is checked on its *support*
    (``cone.Cones.support``: one path of precedence edges for each pair of
    its comparisons that a path can join; a long path as the one fact it
    proves, checked edge by edge), as its own formula (its own variables),
    many cases to a solver, each under its own literal and all first under
    one disjunction ("some case of the batch is violated"): one ``check``
    proves a whole batch.  A case of a shape already refuted is refuted (the
    same formula up to renaming).  A refutation on a subset of the
    schedule's edges is a refutation on all of them; a model is extended to
    a run of the whole schedule and checked (``Cones.run_from``), else the
    case is asked again on its complete region (``Cones.interval``)."""

    def __init__(self, prec: Precedence, *, timeout_s: float | None = None,
                 rlimit: int | None = None, memory_mb: int | None = None, guide: Schedule | None = None) -> None:
        """``guide``: the schedule of ``prec``, to build the graph engine's
        reachability as a hint for the path searches (``cone.Cones.support``)."""
        from .cone import Cones

        self.prec = prec
        self._guide_of = guide
        self.ctx = _shared_context()
        if memory_mb is not None:
            z3.set_param("memory_max_size", int(memory_mb))
        self.timeout_s, self.rlimit, self.memory_mb = timeout_s, rlimit, memory_mb
        self.cones = Cones(prec)
        self._whole: Z3Backend | None = None
        # Names are local to a solver (one batch): the same name in two solvers of the
        # shared context is the same constant, which is harmless, as no solver sees both.
        self.refuted: set[str] = set()  # keys of the shapes z3 refuted
        self.stats = {"cases": 0, "asked": 0, "batches": 0, "facts": 0}

    def check_base(self) -> Answer:
        """Does any execution exist?  A topological order of every point,
        checked against every edge, is an execution (a certificate, no
        solver needed); when the sort cannot place every point, z3 decides
        on the whole formula (and gives the cycle: :meth:`deadlock_cycle`)."""
        if self.cones.certificate() is not None:
            return Answer("sat")
        self._whole = Z3Backend(self.prec, timeout_s=self.timeout_s, rlimit=self.rlimit, memory_mb=self.memory_mb)
        return self._whole.check_base()

    def deadlock_cycle(self) -> tuple[list[Edge], str]:
        if self._whole is None:
            return [], "the schedule has an execution"
        return self._whole.deadlock_cycle()

    def _solver(self) -> z3.Solver:
        solver = z3.SimpleSolver(ctx=self.ctx)
        Z3Backend._limits(solver, self.timeout_s, self.rlimit)
        return solver

    def _check(self, solver: z3.Solver, *assumptions: z3.BoolRef) -> tuple[str, str]:
        r = solver.check(*assumptions)
        if r == z3.sat:
            return "sat", ""
        if r == z3.unsat:
            return "unsat", ""
        return "unknown", solver.reason_unknown()

    def _load(self, solver: z3.Solver, shapes: Sequence[Shape]) -> list[tuple[str, str]]:
        """Assert each shape with its own variables, under its own literal;
        per shape, the literal's name and the prefix of its variables."""
        parts: list[str] = []
        out = []
        for k, sh in enumerate(shapes):
            pre, lit = f"c{k}x", f"q{k}"
            out.append((lit, pre))
            parts += [f"(declare-fun {pre}{j} () Int)" for j in range(len(sh.points))]
            parts += [f"(assert {c.replace('x!', pre)})" for c in sh.constraints]
            parts.append(f"(declare-fun {lit} () Bool)")
            parts.append(f"(assert (=> {lit} {sh.violation.replace('x!', pre)}))")
        solver.from_string("\n".join(parts))
        return out

    def _true_atoms(self, solver: z3.Solver, case: _Case, pre: str) -> list[tuple[int, int]]:
        model = solver.model()
        index = {p: j for j, p in enumerate(case.shape.points)}
        t = {p: model.eval(z3.Int(f"{pre}{index[p]}", self.ctx), model_completion=True).as_long()
             for p in case.points}
        return [(x, y) for x, y in case.atoms if t[x] < t[y]]

    def _witness(self, solver: z3.Solver, case: _Case, pre: str) -> tuple[int, ...]:
        """The run of a violation: a run of the whole schedule with every
        comparison the model makes true (the violation, a positive formula
        of them, holds there too)."""
        run = self.cones.run_from(self._true_atoms(solver, case, pre))
        if run is not None:
            return run
        # The support lacked a path it should carry (a search bug): ask again
        # on the complete region, where a model always extends.
        cu, cv, cs = self.cones.u, self.cones.v, self.cones.strict
        region = [(cu[e], cv[e], cs[e], 0) for e in sorted(self.cones.interval(case.points))]
        text = case.shape.violation
        for j, p in enumerate(case.shape.points):  # back to the schedule's points, for the new shape
            text = re.sub(rf"x!{j}(?!\d)", f"t{p}", text)
        full = replace(case, shape=shape(text, region))
        again = self._solver()
        (lit, pre2), = self._load(again, [full.shape])
        status, reason = self._check(again, z3.Bool(lit, self.ctx))
        if status != "sat":
            raise _Refuted(status, reason)
        run = self.cones.run_from(self._true_atoms(again, full, pre2))
        if run is None:
            raise InternalError("a model of an obligation's complete region does not extend to a run of the"
                                " schedule (docs/semantics.md, 'The z3 engine's encoding')")
        return run

    def _cases(self, i: int, ob: AnyOb) -> list[_Case]:
        """The cases of obligation ``i``, each with its shape: the violation
        of the case on the support of all the obligation's comparisons (one
        search for all the cases; a superset of a case's own support is as
        good)."""
        parts = [(text, atoms(text)) for text, _ in cases(ob)]
        cons: list[tuple[int, int, bool, int]] = []
        cu, cv, cs = self.cones.u, self.cones.v, self.cones.strict
        for path in self.cones.support([a for _, ats in parts for a in ats], SHORT_PATH):
            if path.edges and len(path.edges) <= SHORT_PATH:
                cons += [(cu[e], cv[e], cs[e], 0) for e in path.edges]
                continue
            # a long path, as the one fact it proves: checked here when it lists its
            # edges, else checked edge by edge as the search grew it (Cones._graft)
            strict = self.cones.fact(path) if path.edges else path.strict if path.length > SHORT_PATH else None
            if strict is None:
                raise InternalError(f"the search gave a path from point {path.y} to {path.x} that the"
                                    " schedule's edges do not make")
            cons.append((path.y, path.x, strict, 1))
            self.stats["facts"] += 1
        return [_Case(i, ats, shape(text, cons)) for text, ats in parts]

    def _batches(self, obs: Sequence[AnyOb]) -> Iterator[tuple[list[_Case], list[Shape]]]:
        """The cases in obligation order, cut into batches, each with its
        distinct shapes not refuted before (cases of refuted shapes are left
        out: they are refuted)."""
        batch: list[_Case] = []
        fresh: dict[str, Shape] = {}
        for i, ob in enumerate(obs):
            for case in self._cases(i, ob):
                self.stats["cases"] += 1
                key = case.shape.key
                if key in self.refuted:
                    continue
                batch.append(case)
                fresh.setdefault(key, case.shape)
            if len(fresh) >= BATCH_CASES:
                yield batch, list(fresh.values())
                batch, fresh = [], {}
        if batch:
            yield batch, list(fresh.values())

    def find_violations(self, obs: Sequence[AnyOb], limit: int) -> tuple[list[Answer], str]:
        """As :meth:`Z3Backend.find_violations`: up to ``limit`` violated
        obligations, each with a run (in obligation order), and "unsat",
        "unknown: reason" or "limit"."""
        if self._guide_of is not None and self.cones.guide is None:
            from .graph import PrecedenceGraph

            graph = PrecedenceGraph(self._guide_of, self.prec)
            if graph.acyclic:
                self.cones.guide = graph.reach
        found: list[Answer] = []
        gave_up = ""
        done: set[int] = set()  # obligations found violated: their other cases are not needed
        for batch, shapes in self._batches(obs):
            if len(found) >= limit:
                return sorted(found, key=_index), "limit"
            unknown = self._batch(batch, shapes, limit, found, done)
            gave_up = gave_up or unknown
            if len(found) >= limit and any(c.ob not in done and c.shape.key not in self.refuted for c in batch):
                return sorted(found, key=_index), "limit"
        return sorted(found, key=_index), f"unknown: {gave_up}" if gave_up else "unsat"

    def _batch(self, batch: list[_Case], shapes: list[Shape], limit: int, found: list[Answer],
               done: set[int]) -> str:
        """Decide one batch: refuted shapes go to :attr:`refuted`, violations
        to ``found``.  Returns the solver's reason when it gave up on some case."""
        solver = self._solver()
        names = self._load(solver, shapes)
        self.stats["batches"] += 1
        self.stats["asked"] += len(shapes)
        lit_of = {sh.key: name for sh, name in zip(shapes, names, strict=True)}
        some = z3.Bool("some", self.ctx)
        solver.from_string(f"(declare-fun some () Bool)\n(assert (=> some (or {' '.join(lit for lit, _ in names)})))")
        violated: set[str] = set()  # shapes with a model: each case of them is asked on its own
        gave_up = ""
        while True:
            status, reason = self._check(solver, some)
            if status == "unknown":
                break
            if status == "unsat":  # every shape still on is refuted
                self.refuted.update(sh.key for sh in shapes if sh.key not in violated)
                break
            # Some shape has a model: the first case of the batch whose shape the model violates.
            model = solver.model()
            on = {key for key, (lit, _) in lit_of.items()
                  if key not in violated and z3.is_true(model.eval(z3.Bool(lit, self.ctx), model_completion=True))}
            case = next((c for c in batch if c.shape.key in on and c.ob not in done), None)
            key = case.shape.key if case is not None else next(iter(on))
            violated.add(key)
            if case is not None:
                region_gave_up = self._found(solver, case, lit_of[key][1], found, done)
                gave_up = gave_up or region_gave_up
            solver.add(z3.Not(z3.Bool(lit_of[key][0], self.ctx)))  # after the model is read: it drops it
            if len(found) >= limit:
                return gave_up
        if status == "unknown":
            gave_up = gave_up or reason
        # Cases left: of a violated shape (a model of their own), or every case when the solver gave up.
        for case in batch:
            key = case.shape.key
            if case.ob in done or key in self.refuted or (status == "unsat" and key not in violated):
                continue
            if len(found) >= limit:
                return gave_up
            one = self._solver()
            (lit, pre), = self._load(one, [case.shape])
            st, why = self._check(one, z3.Bool(lit, self.ctx))
            if st == "unsat":
                self.refuted.add(key)
            elif st == "sat":
                gave_up = gave_up or self._found(one, case, pre, found, done)
            elif not gave_up:
                gave_up = why
        return gave_up

    def _found(self, solver: z3.Solver, case: _Case, pre: str, found: list[Answer], done: set[int]) -> str:
        """Record the violation of ``case`` that ``solver``'s model shows,
        unless its complete region refutes it (then it is proved); the
        solver's reason if it gave up on that region."""
        try:
            run = self._witness(solver, case, pre)
        except _Refuted as r:  # refuted on its complete region (its shape is not): proved
            return r.reason if r.status == "unknown" else ""
        found.append(Answer("sat", index=case.ob, times=run))
        done.add(case.ob)
        return ""


_CONTEXT: list[z3.Context] = []


def _shared_context() -> z3.Context:
    """One z3 context for every cone backend of the process: making one costs
    milliseconds, and the choice engine checks a schedule per assignment."""
    if not _CONTEXT:
        _CONTEXT.append(new_context())
    return _CONTEXT[0]


def _index(a: Answer) -> int:
    return -1 if a.index is None else a.index


class _Refuted(Exception):
    """The complete region refuted (or gave up on) a case its support did not."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(status)
        self.status, self.reason = status, reason
