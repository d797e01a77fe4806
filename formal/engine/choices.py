"""Checking a choice schedule for every assignment (DESIGN.md section 2c;
docs/semantics.md, "Choices").

Two methods, and the report says which one decided:

* **enumeration**: every assignment's selected schedule is checked by the
  plain engine.  Exact; used when the space is small.
* **symbolic**: ``matching`` by z3 (``divergence.py``: does some assignment
  make two members issue different sequences?), without enumerating; then
  the other properties by a reduction that checks a few selected schedules
  (*rows*) and is exact under conditions it verifies on them:

  1. the ops other ranks depend on (communication, puts) have guards that
     name no rank-local choice, so under one value of the uniform choices
     (``sigma``: group and job choices and derived values in guards,
     enumerated) every rank issues the same communication;
  2. every edge between two ranks joins communication ops (events, host and
     allocator rules stay on a rank);
  3. for every rank, each of its local variants (the values of the
     rank-local choices its guards read) orders its communication ops among
     themselves alike: the same reachability, with the same strictness, on
     the data edges and on all edges (its *interface closure*).

  Under 1-3 the reachability between two ops of ranks r and s depends only
  on r's and s's variants, and every obligation names ops of one rank (a
  read and the writers of that rank's memory; two accesses to one memory;
  the last and first ops of two steps on a rank) except the phase rule's
  "after the previous token is sampled", which adds the ranks that sample.
  So a set of rows in which every rank takes each of its variants
  (strength 1), and, for the sampling rule, every pair (or triple) of ranks
  every combination (a covering array), meets every obligation of every
  assignment in some row, with the same truth value.  Where a condition
  fails the method says so and answers ``unknown``, or enumerates when the
  space is small enough.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import z3  # type: ignore[import-untyped]

from ..errors import InternalError, UsageError, UserError
from ..ir import Schedule
from ..ir.choices import Assignment, Choice, Key, all_assignments, free_keys, owner_of, space_size, uses
from ..ir.expr import Call, Value
from ..ir.select import Selection, is_cross_rank, select
from ..result import PROPERTIES, PropertyResult, Report, Verdict
from ..semantics.matching import match
from ..semantics.precedence import DATA, build_precedence
from .divergence import Divergence, Encoder, find_divergence, new_solver
from .z3backend import new_context

ENUM_LIMIT = 256  # auto: enumerate spaces up to this many assignments
FALLBACK_ENUM_LIMIT = 4096  # when the reduction does not apply
SIGMA_LIMIT = 4096  # uniform cases
VARIANT_LIMIT = 64  # local variants of one rank
ROW_LIMIT = 2000
METHODS = ("auto", "enumerate", "symbolic")


def space_text(s: Schedule) -> str:
    """The number of assignments as a product of powers: ``3^128``, ``2 x 4^2``."""
    per: dict[int, int] = defaultdict(int)
    for c, _ in free_keys(s.choices, s.ranks):
        per[c.domain_size ** (c.length or 1)] += 1
    if not per:
        return "1"
    return " x ".join(f"{b}^{e}" if e > 1 else str(b) for b, e in sorted(per.items()))


@dataclass
class _Tally:
    """The verdict so far of one property over the schedules checked."""

    prop: str
    violated: PropertyResult | None = None
    unknown: PropertyResult | None = None
    proved: PropertyResult | None = None
    obligations: int = 0
    seconds: float = 0.0

    def add(self, r: PropertyResult, sel: Selection) -> None:
        self.obligations = max(self.obligations, r.obligations)
        self.seconds += r.seconds
        tagged = replace(r, assignment=sel.assignment.text(), assignment_json=tuple(sel.assignment.to_json()),
                         selection=sel.schedule)
        if r.verdict is Verdict.VIOLATED:
            if self.violated is None:
                self.violated = tagged
        elif r.verdict is Verdict.UNKNOWN:
            if self.unknown is None:
                self.unknown = tagged
        elif self.proved is None:
            self.proved = r


def check_choices(s: Schedule, properties: Iterable[str] = PROPERTIES, *, method: str = "auto",
                  **kw: Any) -> Report:
    """Check ``properties`` of the choice schedule ``s`` for every assignment;
    ``kw`` go to the plain engine (engine, timeout, rlimit, memory_mb,
    max_cex, replay)."""
    props = tuple(properties)
    if method not in METHODS:
        raise UsageError(f"unknown choices method {method!r}; choose from {', '.join(METHODS)}")
    t0 = time.perf_counter()
    total = space_size(s.choices, s.ranks)
    if method == "enumerate" or (method == "auto" and total <= ENUM_LIMIT):
        if total > 1_000_000:
            raise UsageError(f"{s.source}: {space_text(s)} assignments are too many to enumerate; use"
                             " the symbolic method")
        return _enumerate(s, props, total, t0, "", kw)
    return _Symbolic(s, props, total, t0, kw).run()


def _plain(sel: Selection, props: tuple[str, ...], kw: dict[str, Any]) -> Report:
    from .check import check_schedule
    return check_schedule(sel.schedule, props, **kw)


def _enumerate(s: Schedule, props: tuple[str, ...], total: int, t0: float, why: str,
               kw: dict[str, Any]) -> Report:
    tallies = {p: _Tally(p) for p in props}
    warnings: list[str] = []
    n = 0
    for a in all_assignments(s.choices, s.ranks):
        sel = select(s, a)
        rep = _plain(sel, props, kw)
        n += 1
        for w in rep.warnings:
            if w not in warnings and len(warnings) < 20:
                warnings.append(w)
        for r in rep.results:
            tallies[r.property].add(r, sel)
        if all(t.violated is not None for t in tallies.values()):
            break
    m = tallies.get("matching")
    if m is not None and m.violated is not None and m.violated.counterexample is not None:
        div = find_divergence(s, timeout_s=kw.get("timeout"), rlimit=kw.get("rlimit")).found
        if div is not None and div.local:
            cex = m.violated.counterexample
            m.violated = replace(m.violated, counterexample=replace(
                cex, sentence=f"{cex.sentence}. {_local_cause(div)}"))
    how = f"enumeration: {n} of {total} assignment{'s' if total != 1 else ''} checked one by one" + (
        " (every property already had a counterexample)" if n < total else "") + (f"; {why}" if why else "")
    results = tuple(_final(tallies[p], f"for all {total} assignments") for p in props)
    return Report(s.name, s.source, len(s.ops), results, kw.get("engine", "hybrid"), time.perf_counter() - t0,
                  tuple(warnings), (), how, space_text(s))


def _final(t: _Tally, every: str, unknown_reason: str = "") -> PropertyResult:
    if t.violated is not None:
        return t.violated
    if unknown_reason:
        return PropertyResult(t.prop, Verdict.UNKNOWN, unknown_reason, obligations=t.obligations,
                              seconds=t.seconds)
    if t.unknown is not None:
        u = t.unknown
        rest = u.reason.removeprefix("not checked: ")
        head = "not checked: " if rest != u.reason else ""
        return replace(u, reason=f"{head}under {u.assignment}, {rest}")
    if t.proved is None:
        return PropertyResult(t.prop, Verdict.UNKNOWN, "no assignment was checked", seconds=t.seconds)
    p = t.proved
    return PropertyResult(t.prop, Verdict.PROVED, f"{p.reason}, {every}", obligations=t.obligations,
                          more=p.more, seconds=t.seconds)


# ---------------------------------------------------------------- the symbolic method
class _Symbolic:
    def __init__(self, s: Schedule, props: tuple[str, ...], total: int, t0: float, kw: dict[str, Any]) -> None:
        self.s, self.props, self.total, self.t0, self.kw = s, props, total, t0, kw
        self.by_name = {c.name: c for c in s.choices}
        self.gm = s.group_map
        self.warnings: list[str] = []

    def report(self, results: dict[str, PropertyResult], how: str) -> Report:
        ordered = tuple(results[p] for p in self.props)
        return Report(self.s.name, self.s.source, len(self.s.ops), ordered, self.kw.get("engine", "hybrid"),
                      time.perf_counter() - self.t0, tuple(self.warnings), (), how, space_text(self.s))

    def run(self) -> Report:
        s, props = self.s, self.props
        div = find_divergence(s, timeout_s=self.kw.get("timeout"), rlimit=self.kw.get("rlimit"))
        q = f"{div.queries} quer{'y' if div.queries == 1 else 'ies'}"
        how = f"symbolic: z3 decided matching for all {space_text(s)} assignments ({q})"
        if div.found is not None:
            return self._diverged(div.found, how)
        if div.unknown:
            results = {p: PropertyResult(p, Verdict.UNKNOWN, f"the solver gave up on the divergence check"
                                         f" ({div.unknown})") for p in props}
            return self.report(results, how)
        problem = self._reduction_blocker()
        if problem:
            return self._fallback(problem, how)
        return self._rows(how)

    # ---- matching fails for some assignment
    def _readable(self, d: Divergence) -> Assignment:
        """The z3 model with every other rank's local values copied from the
        second rank of the pair: one rank then stands out from the rest,
        which is how such bugs show up ("15 ranks wait for rank 3")."""
        ref, m = d.ranks
        vals = d.assignment.map
        out: list[tuple[Key, Any]] = []
        for (name, owner), v in d.assignment.values:
            c = self.by_name[name]
            if c.scope == "rank" and isinstance(owner, int) and owner not in (ref, m):
                v = vals.get((name, m), v)
            out.append(((name, owner), v))
        return Assignment(tuple(out))

    def _diverged(self, d: Divergence, how: str) -> Report:
        sel = rep = None
        nice = self._readable(d)
        if nice != d.assignment:
            try:
                cand = select(self.s, nice)
                crep = _plain(cand, self.props, self.kw)
                if "matching" not in self.props or crep.result("matching").verdict is Verdict.VIOLATED:
                    sel, rep, d = cand, crep, replace(d, assignment=nice)
            except UserError:
                pass
        if sel is None or rep is None:
            sel = select(self.s, d.assignment)
            rep = _plain(sel, self.props, self.kw)
        m = rep.result("matching") if "matching" in self.props else None
        if m is not None and m.verdict is not Verdict.VIOLATED:
            raise InternalError(f"z3 found a divergence on {d.where} under {d.assignment.text()}, but the selected"
                                f" schedule matches ({m.verdict}: {m.reason})")
        cause = self._cause(d)
        results: dict[str, PropertyResult] = {}
        for r in rep.results:
            tagged = replace(r, assignment=d.assignment.text(), assignment_json=tuple(d.assignment.to_json()),
                             selection=sel.schedule)
            if r.property == "matching" and r.counterexample is not None:
                cex = r.counterexample
                tagged = replace(tagged, counterexample=replace(cex, sentence=f"{cex.sentence}. {cause}"))
            if r.verdict is not Verdict.VIOLATED and r.property != "matching":
                tagged = PropertyResult(r.property, Verdict.UNKNOWN,
                                        "not checked: under some assignment the ranks do not issue matching"
                                        " communication (see matching), so not every assignment has a"
                                        " complete execution")
            results[r.property] = tagged
        return self.report(results, how)

    def _cause(self, d: Divergence) -> str:
        if d.local:
            return _local_cause(d)
        names = ", ".join(d.choices) or "no choice"
        return f"On {d.where}, rank {d.ranks[0]} and rank {d.ranks[1]} issue different sequences (choices: {names})"

    # ---- when the reduction applies
    def _local(self, name: str) -> bool:
        c = self.by_name.get(name)
        return c is not None and c.free and c.scope == "rank"

    def _reduction_blocker(self) -> str:
        """Why condition 1 fails (a cross-rank op's guard reads a rank-local
        or gathered choice), or ""."""
        for op in self.s.ops:
            oc = op.choice
            if oc is None or oc.when is None:
                continue
            names = uses(oc.when, self.by_name)
            gathered = [n for n in sorted(names) if self.by_name[n].derived == "gathers"]
            if gathered:
                return (f"{self.s.label(op)} is issued only when {oc.when}, which reads {', '.join(gathered)}"
                        " (other ranks' local values, gathered): the reduction covers guards on local and shared"
                        " values only")
            if not is_cross_rank(op):
                continue
            bad = [n for n in sorted(names) if self._local(n) or self.by_name[n].derived == "gathers"]
            if bad:
                return (f"{self.s.label(op)} is issued only when {oc.when}, which reads {', '.join(bad)}"
                        " (a rank-local value); z3 proved that the ranks still agree on it, but the reduction"
                        " needs communication to depend on shared values only")
        return ""

    def _fallback(self, problem: str, how: str, tallies: dict[str, _Tally] | None = None) -> Report:
        matching_ok = PropertyResult("matching", Verdict.PROVED,
                                     f"every member of every group issues the same communication, for all"
                                     f" {space_text(self.s)} assignments (decided by z3)")
        if self.total <= FALLBACK_ENUM_LIMIT:
            rep = _enumerate(self.s, self.props, self.total, self.t0, f"the reduction does not apply: {problem}",
                             self.kw)
            return rep
        results = {p: PropertyResult(p, Verdict.UNKNOWN, f"not decided for every assignment: {problem};"
                                     f" {space_text(self.s)} assignments are too many to enumerate")
                   for p in self.props}
        if "matching" in results:
            results["matching"] = matching_ok
        for p, tl in (tallies or {}).items():
            if tl.violated is not None:  # a real counterexample found before the reduction stopped
                results[p] = tl.violated
        return self.report(results, how + f"; the reduction does not apply: {problem}")

    # ---- the rows
    def _sigma_keys(self) -> list[tuple[str, Any, list[Any]]]:
        """The uniform values guards read: (kind, key, domain) with kind
        "free" (key a Key) or "derived" (key a choice name)."""
        names: set[str] = set()
        for op in self.s.ops:
            if op.choice is not None and op.choice.when is not None:
                names |= uses(op.choice.when, self.by_name)
        out: list[tuple[str, Any, list[Any]]] = []
        for c, key in free_keys(self.s.choices, self.s.ranks):
            if c.name in names and c.scope != "rank":
                out.append(("free", key, _values(c)))
        for c in self.s.choices:
            if c.derived == "value" and c.name in names:
                out.append(("derived", c.name, self._derived_values(c)))
        return out

    def _derived_values(self, c: Choice) -> list[Any]:
        assert isinstance(c.value, Call)
        fn = c.value.fn
        if fn in ("any", "all"):
            return [False, True]
        n = len(self.gm[c.groups[0]])
        if fn == "count":
            return list(range(n + 1))
        # sum/max/min: the values z3 says are reachable (at most 64)
        ctx = new_context()
        enc = Encoder(self.s, ctx)
        t = enc.term(_var_of(c), self.gm[c.groups[0]][0])
        sol = new_solver(ctx)
        sol.add(*enc.domain)
        vals: list[Any] = []
        while sol.check() == z3.sat and len(vals) <= 64:
            v = sol.model().eval(t, model_completion=True)
            vals.append(v.as_long())
            sol.add(t != v)
        if len(vals) > 64:
            raise _TooMany(f"{c.name} takes more than 64 values")
        return vals

    def _rows(self, how: str) -> Report:
        s, props = self.s, self.props
        tallies = {p: _Tally(p) for p in props}
        try:
            sigma_keys = self._sigma_keys()
        except _TooMany as exc:
            return self._fallback(str(exc), how)
        n_sigma = 1
        for _, _, dom in sigma_keys:
            n_sigma *= len(dom)
        if n_sigma > SIGMA_LIMIT:
            return self._fallback(f"the shared choices in guards take {n_sigma} combinations (more than"
                                  f" {SIGMA_LIMIT})", how)
        rows_checked = 0
        cases = 0
        blocker = ""
        for combo in itertools.product(*[dom for _, _, dom in sigma_keys]):
            sigma = {(kind, key): v for (kind, key, _), v in zip(sigma_keys, combo, strict=True)}
            res = self._case(sigma, tallies)
            if res is None:
                continue  # no assignment gives these shared values
            n_rows, why = res
            cases += 1
            rows_checked += n_rows
            if why:
                blocker = why
                break
            if all(t.violated is not None for t in tallies.values()):
                break
        if blocker:
            return self._fallback(blocker, how, tallies)
        how += (f"; the other properties by a reduction: {cases} shared case{'s' if cases != 1 else ''},"
                f" {rows_checked} selected schedule{'s' if rows_checked != 1 else ''} checked, each rank's local"
                " variants ordering its communication alike")
        results = {p: _final(tallies[p], f"for all {space_text(s)} assignments") for p in props}
        return self.report(results, how)

    def _variants(self, sigma: dict[tuple[str, Any], Any]) -> dict[int, list[dict[Key, Any]]]:
        """Per rank: the assignments of the rank-local choices its guards read."""
        per: dict[int, set[str]] = defaultdict(set)
        for op in self.s.ops:
            if op.choice is not None and op.choice.when is not None:
                for n in uses(op.choice.when, self.by_name):
                    if self._local(n):
                        per[op.rank].add(n)
        out: dict[int, list[dict[Key, Any]]] = {}
        for r in self.s.ranks:
            names = sorted(per.get(r, ()))
            doms = [_values(self.by_name[n]) for n in names]
            size = 1
            for d in doms:
                size *= len(d)
            if size > VARIANT_LIMIT:
                raise _TooMany(f"rank {r}'s guards read local choices with {size} combinations (more than"
                               f" {VARIANT_LIMIT})")
            out[r] = [{(n, r): v for n, v in zip(names, combo, strict=True)} for combo in itertools.product(*doms)]
        return out

    def _case(self, sigma: dict[tuple[str, Any], Any], tallies: dict[str, _Tally]) -> tuple[int, str] | None:
        """Check the rows of one shared case; (rows, why the reduction fails
        or ""), or None when the case is infeasible."""
        try:
            variants = self._variants(sigma)
        except _TooMany as exc:
            return 0, str(exc)
        derived = {k: v for (kind, k), v in sigma.items() if kind == "derived"}
        free_sigma = {k: v for (kind, k), v in sigma.items() if kind == "free"}
        strength, why = self._strength()
        if why:
            return 0, why
        try:
            rows = _Rows(self.s, variants, derived, free_sigma, strength).build()
        except _TooManyRows:
            return 0, ("the phase rule's sampling needs every pair of ranks' local variants covered, and more"
                       " than 2000 pairs had to be asked of z3 one by one under the derived values")
        if rows is None:
            return None
        if len(rows) > ROW_LIMIT:
            return 0, f"{len(rows)} rows would be needed (more than {ROW_LIMIT})"
        closures: dict[tuple[int, int], Any] = {}
        seqs_seen: set[frozenset[Any]] = set()
        for row in rows:
            a = self._assignment(free_sigma, row, variants)
            sel = select(self.s, a)
            rep = _plain(sel, self.props, self.kw)
            for w in rep.warnings:
                if w not in self.warnings and len(self.warnings) < 20:
                    self.warnings.append(w)
            for r in rep.results:
                tallies[r.property].add(r, sel)
            why = self._closures(sel, row, variants, closures)
            if why:
                return len(rows), why
            if "phase" in self.props and any(op.meta.phase is not None and not op.meta.seqs
                                             for op in sel.schedule.ops):
                seqs_seen.add(frozenset(q for op in sel.schedule.ops if op.meta.phase is not None
                                        for q in op.meta.seqs))
                if len(seqs_seen) > 1:
                    return len(rows), ("the set of sequences in the batch depends on rank-local choices, and the"
                                       " phase rule gives ops without sequences to every sequence")
        return len(rows), ""

    def _strength(self) -> tuple[int, str]:
        if "phase" not in self.props:
            return 1, ""
        samplers: dict[object, set[int]] = defaultdict(set)
        varying = self._varying_ranks()
        for op in self.s.ops:
            if op.meta.sample and op.rank in varying:
                qs: tuple[object, ...] = op.meta.seqs or ("*",)
                for q in qs:
                    samplers[q].add(op.rank)
        if "*" in samplers:
            for q in list(samplers):
                samplers[q] |= samplers["*"]
        k = max((len(v) for v in samplers.values()), default=0)
        if k > 2:
            return 0, (f"the token of one sequence is sampled on {k} ranks whose guards read rank-local choices;"
                       " the reduction covers at most two")
        return 1 + k, ""

    def _varying_ranks(self) -> set[int]:
        out: set[int] = set()
        for op in self.s.ops:
            if op.choice is not None and op.choice.when is not None and any(
                    self._local(n) for n in uses(op.choice.when, self.by_name)):
                out.add(op.rank)
        return out

    def _assignment(self, free_sigma: dict[Any, Any], row: dict[int, int],
                    variants: dict[int, list[dict[Key, Any]]]) -> Assignment:
        chosen: dict[Key, Any] = dict(free_sigma)
        for r, i in row.items():
            if r >= 0:
                chosen.update(variants[r][i])
        extra = row.get(-1)  # the values of local choices no guard reads (from the constraint solver)
        vals: list[tuple[Key, Any]] = []
        for c, key in free_keys(self.s.choices, self.s.ranks):
            if key in chosen:
                v = chosen[key]
            elif isinstance(extra, dict) and key in extra:
                v = extra[key]
            else:
                v = c.domain[0]
                if c.length is not None:
                    v = tuple([v] * c.length)
            vals.append((key, v))
        return Assignment(tuple(vals))

    def _closures(self, sel: Selection, row: dict[int, int], variants: dict[int, list[dict[Key, Any]]],
                  seen: dict[tuple[int, int], Any]) -> str:
        """Conditions 2 and 3 on one row; the reason they fail, or ""."""
        need = [r for r, i in row.items() if r >= 0 and len(variants.get(r, ())) > 1 and (r, i) not in seen]
        s = sel.schedule
        m = match(s)
        full = build_precedence(s, m)
        n_ops = len(s.ops)
        rank_of = np.full(full.n_points, -1, dtype=np.int64)
        ranks = np.fromiter((op.rank for op in s.ops), dtype=np.int64, count=n_ops)
        rank_of[0:2 * n_ops:2] = ranks
        rank_of[1:2 * n_ops:2] = ranks
        iface = np.zeros(full.n_points, dtype=bool)
        cross = np.fromiter((is_cross_rank(op) for op in s.ops), dtype=bool, count=n_ops)
        iface[0:2 * n_ops:2] = cross
        iface[1:2 * n_ops:2] = cross
        u, v = full.u, full.v
        ru, rv = rank_of[u], rank_of[v]
        between = ru != rv
        bad = between & (((ru >= 0) & ~iface[u]) | ((rv >= 0) & ~iface[v]))
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            a, b = int(full.a[k]), int(full.b[k])
            return (f"{s.label(a)} and {s.label(b)} are ordered across ranks by an op that is not communication;"
                    " the reduction needs every edge between ranks to join communication ops")
        if not need:
            return ""
        internal = ~between & (ru >= 0)
        idx = np.flatnonzero(internal)
        by_rank: dict[int, list[int]] = defaultdict(list)
        for k, r in zip(idx.tolist(), ru[idx].tolist(), strict=True):
            by_rank[r].append(k)
        origin = sel.origin
        for r in need:
            clo = _closure(full, by_rank.get(r, []), iface, origin)
            key = (r, row[r])
            seen[key] = clo
            for i in range(len(variants[r])):
                other = seen.get((r, i))
                if other is not None and other != clo:
                    va, vb = _vtext(variants[r][row[r]]), _vtext(variants[r][i])
                    return (f"rank {r} orders its communication ops differently when {va} than when {vb}: its"
                            " local choices change what other ranks can rely on")
        return ""


def _local_cause(d: Divergence) -> str:
    names = ", ".join(d.local)
    return (f"On {d.where}, what the ranks issue depends on {names}, which {'is' if len(d.local) == 1 else 'are'}"
            " rank-local (each rank picks its own): branch on a value the ranks share (gathered, reduced or"
            " broadcast on the group)")


class _TooMany(Exception):
    pass


def _var_of(c: Choice) -> Any:
    from ..ir.expr import Var
    return Var(c.name)


MAX_VALUES = 4096  # the most values of one choice listed one by one (a range may be astronomically large)


def _values(c: Choice) -> list[Any]:
    n = c.domain_size ** (c.length or 1)
    if n > MAX_VALUES:
        raise _TooMany(f"{c.name} takes {n} values (more than {MAX_VALUES} to list one by one)")
    dom = list(c.domain)
    if c.length is not None:
        return [tuple(x) for x in itertools.product(dom, repeat=c.length)]
    return dom


def _vtext(v: dict[Key, Any]) -> str:
    return ", ".join(f"{k[0]}={val}" for k, val in v.items()) or "it has no choice"


def _closure(full: Any, edges: list[int], iface: np.ndarray, origin: tuple[int, ...]) -> frozenset[tuple[int, ...]]:
    """Reachability among one rank's communication points through the rank's
    own edges: (from, to, class, strict) with points named by the choice
    schedule's op ids, for the data edges and for all edges."""
    out: set[tuple[int, ...]] = set()
    if not edges:
        return frozenset()
    us = full.u[edges].tolist()
    vs = full.v[edges].tolist()
    st = full.strict[edges].tolist()
    cl = full.cls[edges].tolist()
    for level in (0, 1):  # 0: data edges only; 1: every edge
        succ: dict[int, list[tuple[int, bool]]] = defaultdict(list)
        for a, b, strict, c in zip(us, vs, st, cl, strict=True):
            if level == 0 and c != DATA:
                continue
            succ[a].append((b, bool(strict)))
        points = sorted({p for p in us + vs if iface[p]})
        for p in points:
            best: dict[int, bool] = {}
            stack = [(p, False)]
            while stack:
                x, strict_so_far = stack.pop()
                for y, e_strict in succ.get(x, ()):
                    ns = strict_so_far or e_strict
                    old = best.get(y)
                    if old is None or (ns and not old):
                        best[y] = ns
                        stack.append((y, ns))
            for y, strict in best.items():
                if iface[y]:
                    out.add((level, 2 * origin[p // 2] + p % 2, 2 * origin[y // 2] + y % 2, int(strict)))
    return frozenset(out)


class _Rows:
    """Rows (one variant per rank) covering every variant of every rank
    (strength 1) or every combination of variants of any ``strength`` ranks,
    consistent with the shared case's derived values (by z3 when there are
    any)."""

    def __init__(self, s: Schedule, variants: dict[int, list[dict[Key, Any]]], derived: dict[str, Any],
                 free_sigma: dict[Any, Any], strength: int) -> None:
        self.s = s
        self.variants = variants
        self.derived = derived
        self.free_sigma = free_sigma
        self.strength = strength
        self.varying = [r for r in s.ranks if len(variants.get(r, ())) > 1]
        self.rng = random.Random(1729)

    def build(self) -> list[dict[int, Any]] | None:
        if self.derived:
            return self._constrained()
        n = [len(self.variants[r]) for r in self.varying]
        if not self.varying:
            return [{r: 0 for r in self.s.ranks}]
        if self.strength <= 1 or len(self.varying) < 2:
            return [{**{r: 0 for r in self.s.ranks}, **{r: i % k for r, k in zip(self.varying, n, strict=True)}}
                    for i in range(max(n))]
        return [{**{r: 0 for r in self.s.ranks}, **dict(zip(self.varying, row, strict=True))}
                for row in _covering(n, min(self.strength, len(n)), self.rng)]

    def _constrained(self) -> list[dict[int, Any]] | None:
        """Rows under derived values: each row is a z3 model of 'the derived
        values are these'.  Strength 1: maximise the variants not yet covered
        (a variant no model takes is impossible in this case).  Strength 2:
        greedy covering-array candidates, each repaired to the nearest model
        (most ranks keep the candidate's variant); a pair no repaired row
        covers is asked of z3 directly, and dropped when impossible."""
        ctx = new_context()
        enc = Encoder(self.s, ctx)
        base = list(enc.domain)
        by_name = {c.name: c for c in self.s.choices}
        rank0 = self.s.ranks[0]
        for name, val in self.derived.items():
            c = by_name[name]
            t = enc.term(_var_of(c), self.s.group_map[c.groups[0]][0] if c.groups else rank0)
            base.append(t == (z3.BoolVal(val, ctx) if isinstance(val, bool) else z3.IntVal(val, ctx)))
        for key, val in self.free_sigma.items():
            c = by_name[key[0]]
            base.append(_equals(enc, c, key, val))
        chk = new_solver(ctx)
        chk.add(*base)
        if chk.check() != z3.sat:
            return None
        lits: dict[tuple[int, int], z3.BoolRef] = {}
        for r in self.s.ranks:
            for i, var in enumerate(self.variants.get(r, [{}])):
                conj = [_equals(enc, by_name[k[0]], k, v) for k, v in var.items()]
                lits[(r, i)] = z3.And(conj) if conj else z3.BoolVal(True, ctx)

        def model_row(soft: list[z3.BoolRef], hard: list[z3.BoolRef] = ()) -> dict[int, Any] | None:  # type: ignore[assignment]
            opt = new_solver(ctx, optimize=True)
            opt.add(*base, *enc.domain, *hard)
            for lit in soft:
                opt.add_soft(lit, 1)
            if opt.check() != z3.sat:
                return None
            model = opt.model()
            row: dict[int, Any] = {}
            for r in self.s.ranks:
                for i in range(len(self.variants.get(r, [{}]))):
                    if z3.is_true(model.eval(lits[(r, i)], model_completion=True)):
                        row[r] = i
                        break
            row[-1] = dict(enc.assignment(model).values)
            return row

        uncovered = set(lits)
        rows: list[dict[int, Any]] = []
        while uncovered and len(rows) <= ROW_LIMIT:
            row = model_row([lits[k] for k in uncovered])
            if row is None:
                break
            new = {(r, i) for r, i in row.items() if r >= 0 and (r, i) in uncovered}
            if not new:
                break
            uncovered -= new
            rows.append(row)
        if self.strength <= 1 or len(self.varying) < 2:
            return rows
        return self._pairs(rows, lits, model_row)

    def _pairs(self, rows: list[dict[int, Any]], lits: dict[tuple[int, int], Any], model_row: Any
               ) -> list[dict[int, Any]]:
        """Strength 2 under constraints (see :meth:`_constrained`)."""
        varying = self.varying
        feasible = {r: sorted({row[r] for row in rows if r in row}) for r in varying}
        k = len(varying)
        v = max((len(self.variants[r]) for r in varying), default=1)
        unc = np.zeros((k, k, v, v), dtype=bool)
        for a in range(k):
            for b in range(a + 1, k):
                for x in feasible[varying[a]]:
                    for y in feasible[varying[b]]:
                        unc[a, b, x, y] = True
        iu, ju = np.triu_indices(k, 1)

        def mark(row: dict[int, Any]) -> int:
            vec = np.array([row[r] for r in varying])
            got = unc[iu, ju, vec[iu], vec[ju]]
            unc[iu, ju, vec[iu], vec[ju]] = False
            return int(got.sum())

        for row in rows:
            mark(row)
        asked = 0
        while unc.any() and len(rows) <= ROW_LIMIT:
            open_idx = np.argwhere(unc)
            best, best_gain = None, -1
            for _ in range(8):
                a, b, x, y = open_idx[self.rng.randrange(len(open_idx))].tolist()
                cand = [self.rng.choice(feasible[r]) for r in varying]
                cand[a], cand[b] = x, y
                vec = np.array(cand)
                gain = int(unc[iu, ju, vec[iu], vec[ju]].sum())
                if gain > best_gain:
                    best, best_gain = cand, gain
            assert best is not None
            row = model_row([lits[(r, i)] for r, i in zip(varying, best, strict=True)])
            if row is not None and mark(row) > 0:
                rows.append(row)
                continue
            a, b, x, y = open_idx[0].tolist()
            asked += 1
            if asked > 2000:
                raise _TooManyRows()
            row = model_row([], [lits[(varying[a], x)], lits[(varying[b], y)]])
            if row is None:
                unc[a, b, x, y] = False  # no assignment gives these two ranks these variants here
            else:
                mark(row)
                rows.append(row)
        return rows


def _equals(enc: Encoder, c: Choice, key: Key, val: Any) -> Any:
    """``key`` (a choice of owner) has value ``val`` (a tuple for a vector)."""
    if c.length is None:
        return enc.var(c, key, None) == _z3val(enc, c, val)
    return z3.And([enc.var(c, key, j) == _z3val(enc, c, x) for j, x in enumerate(val)])


class _TooManyRows(Exception):
    pass


def _z3val(enc: Encoder, c: Choice, v: Value) -> Any:
    if isinstance(v, bool):
        return z3.BoolVal(v, enc.ctx)
    if isinstance(v, int):
        return z3.IntVal(v, enc.ctx)
    return enc.sym(str(v))


def _covering(n: Sequence[int], t: int, rng: random.Random) -> list[list[int]]:
    """A covering array of strength ``t`` (2 or 3) over columns with ``n[i]``
    values: rows such that every ``t`` columns take every combination in some
    row.  Greedy: of several random candidates seeded with an uncovered
    combination, keep the one covering most new combinations."""
    k = len(n)
    if t == 2:
        return _covering2(n, rng)
    cols = list(itertools.combinations(range(k), t))
    uncovered: dict[tuple[int, ...], set[tuple[int, ...]]] = {
        c: set(itertools.product(*[range(n[i]) for i in c])) for c in cols}
    left = sum(len(v) for v in uncovered.values())
    if left > 3_000_000:
        raise _TooManyRows()
    rows: list[list[int]] = []
    while left:
        best: list[int] | None = None
        best_gain = -1
        open_cols = [c for c in cols if uncovered[c]]
        for _ in range(16):
            c = rng.choice(open_cols)
            combo = rng.choice(sorted(uncovered[c]))
            row = [rng.randrange(x) for x in n]
            for i, val in zip(c, combo, strict=True):
                row[i] = val
            gain = sum(1 for cc in open_cols if tuple(row[i] for i in cc) in uncovered[cc])
            if gain > best_gain:
                best, best_gain = row, gain
        assert best is not None
        for cc in open_cols:
            key = tuple(best[i] for i in cc)
            if key in uncovered[cc]:
                uncovered[cc].discard(key)
                left -= 1
        rows.append(best)
        if len(rows) > ROW_LIMIT:
            break
    return rows


def _covering2(n: Sequence[int], rng: random.Random) -> list[list[int]]:
    """:func:`_covering` for pairs, on numpy arrays (hundreds of ranks)."""
    k, v = len(n), max(n)
    nn = np.asarray(n)
    unc = np.zeros((k, k, v, v), dtype=bool)
    vi = np.arange(v)
    ok = (vi[None, :] < nn[:, None])  # (k, v): value exists for column
    iu, ju = np.triu_indices(k, 1)
    unc[iu, ju] = ok[iu][:, :, None] & ok[ju][:, None, :]
    rows: list[list[int]] = []
    while unc.any():
        best, best_gain = None, -1
        open_idx = np.argwhere(unc)
        for _ in range(24):
            i, j, a, b = open_idx[rng.randrange(len(open_idx))].tolist()
            row = np.array([rng.randrange(x) for x in n])
            row[i], row[j] = a, b
            gain = int(unc[iu, ju, row[iu], row[ju]].sum())
            if gain > best_gain:
                best, best_gain = row, gain
        assert best is not None
        unc[iu, ju, best[iu], best[ju]] = False
        rows.append(best.tolist())
        if len(rows) > ROW_LIMIT:
            break
    return rows


__all__ = ["METHODS", "check_choices", "space_text", "owner_of"]
