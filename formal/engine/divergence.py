"""Divergence: does some assignment of the choices make two ranks issue
different communication sequences? (DESIGN.md section 2c; the check is the
one GPUVerify makes for barrier divergence.)

Each op's guard, size and counts become z3 terms over the free choices of
the ranks that hold them; a derived choice becomes its aggregate over its
group's members.  For one group, member ``m``'s k-th issued collective is the
guarded op whose guard holds and before which exactly k guards hold; two
members diverge when their counts of issued collectives differ, or when their
k-th ones differ in kind, size, root, dtype or counts (what plain matching
compares, ``semantics/matching.py``).  z3 answers "exists an assignment"
for every member against the group's first member, so the product of the
choices is never enumerated.  Point-to-point FIFOs (count and sizes), signal
waits (count) and all_to_allv splits are checked the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import z3  # type: ignore[import-untyped]

from ..errors import InternalError
from ..ir import Kind, Op, Schedule
from ..ir.choices import Assignment, Choice, Key, free_keys, owner_of
from ..ir.expr import Arith, BoolOp, Call, Cmp, Expr, In, Lit, Not, Value, Var
from .z3backend import new_context

_COLL = frozenset(k for k in Kind if k.is_collective)


@dataclass(frozen=True)
class Divergence:
    """An assignment under which ``ranks`` issue different sequences on ``where``."""

    assignment: Assignment
    where: str  # "group dp", "p2p 0->1 (comm p2p:0-1)", ...
    ranks: tuple[int, int]
    ops: tuple[int, ...]  # op ids (of the choice schedule) involved
    choices: tuple[str, ...]  # the choices the diverging ops' guards and sizes depend on
    local: tuple[str, ...]  # of those, the rank-local ones


@dataclass(frozen=True)
class DivergenceResult:
    found: Divergence | None
    queries: int
    unknown: str = ""  # the solver gave up (reason)
    seconds: float = 0.0


class Encoder:
    """z3 terms for the choices of one schedule, in one context."""

    def __init__(self, s: Schedule, ctx: z3.Context) -> None:
        self.s = s
        self.ctx = ctx
        self.by_name = {c.name: c for c in s.choices}
        self.gm = s.group_map
        self.symbols: dict[str, int] = {}
        self.vars: dict[tuple[Key, int | None], z3.ExprRef] = {}
        self.domain: list[z3.BoolRef] = []
        self._derived: dict[tuple[str, str], z3.ExprRef] = {}
        for c in s.choices:
            for v in c.values:
                if isinstance(v, str):
                    self.symbols.setdefault(v, len(self.symbols))

    def sym(self, name: str) -> z3.ArithRef:
        return z3.IntVal(self.symbols.setdefault(name, len(self.symbols)), self.ctx)

    def var(self, c: Choice, key: Key, element: int | None) -> z3.ExprRef:
        k = (key, element)
        t = self.vars.get(k)
        if t is None:
            name = f"{key[0]}@{key[1]}" + (f"[{element}]" if element is not None else "")
            if c.kind == "bool":
                t = z3.Bool(name, self.ctx)
            else:
                t = z3.Int(name, self.ctx)
                if c.is_range:
                    self.domain.append(z3.And(t >= c.lo, t <= c.hi))
                elif c.kind == "int":
                    self.domain.append(z3.Or([t == v for v in c.values]))
                else:
                    self.domain.append(z3.Or([t == self.sym(str(v)) for v in c.values]))
            self.vars[k] = t
        return t

    # ---- expressions
    def term(self, e: Expr, rank: int) -> z3.ExprRef:
        ctx = self.ctx
        if isinstance(e, Lit):
            v = e.value
            if isinstance(v, bool):
                return z3.BoolVal(v, ctx)
            if isinstance(v, int):
                return z3.IntVal(v, ctx)
            return self.sym(v)
        if isinstance(e, Var):
            return self._var(e, rank)
        if isinstance(e, Not):
            return z3.Not(self.term(e.arg, rank))
        if isinstance(e, BoolOp):
            args = [self.term(a, rank) for a in e.args]
            return z3.And(args) if e.op == "and" else z3.Or(args)
        if isinstance(e, Cmp):
            a, b = self.term(e.left, rank), self.term(e.right, rank)
            op = e.op
            return (a == b if op == "==" else a != b if op == "!=" else a < b if op == "<" else a <= b
                    if op == "<=" else a > b if op == ">" else a >= b)
        if isinstance(e, In):
            a = self.term(e.arg, rank)
            hits = [a == self.term(Lit(v), rank) for v in e.values]
            inside = z3.Or(hits) if hits else z3.BoolVal(False, ctx)
            return z3.Not(inside) if e.negate else inside
        if isinstance(e, Arith):
            a, b = self.term(e.left, rank), self.term(e.right, rank)
            if e.op == "+":
                return a + b
            if e.op == "-":
                return a - b
            if e.op == "*":
                return a * b
            return a / b if e.op == "//" else a % b  # z3 Int division: floor for positive divisors
        if isinstance(e, Call) and e.fn in ("min", "max"):
            ts = [self.term(a, rank) for a in e.args]
            out = ts[0]
            for t in ts[1:]:
                out = z3.If(t < out, t, out) if e.fn == "min" else z3.If(t > out, t, out)
            return out
        raise InternalError(f"cannot encode {e}")

    def _var(self, v: Var, rank: int) -> z3.ExprRef:
        c = self.by_name.get(v.name)
        if c is None:
            return self.sym(v.name)
        if c.derived == "gathers":
            base = self.by_name[c.gathers or ""]
            assert v.at is not None
            return self._element(base, (base.name, v.at), v, rank)
        if c.derived == "value":
            g = c.groups[0]
            key = (c.name, g)
            t = self._derived.get(key)
            if t is None:
                assert isinstance(c.value, Call)
                inner = c.value.args[0]
                ts = [self.term(inner, m) for m in self.gm[g]]
                fn = c.value.fn
                ctx = self.ctx
                if fn == "any":
                    t = z3.Or(ts)
                elif fn == "all":
                    t = z3.And(ts)
                elif fn == "count":
                    t = z3.Sum([z3.If(x, z3.IntVal(1, ctx), z3.IntVal(0, ctx)) for x in ts])
                elif fn == "sum":
                    t = z3.Sum(ts)
                else:
                    t = ts[0]
                    for x in ts[1:]:
                        t = z3.If(x > t, x, t) if fn == "max" else z3.If(x < t, x, t)
                self._derived[key] = t
            return t
        return self._element(c, (c.name, owner_of(c, rank, self.gm)), v, rank)

    def _element(self, c: Choice, key: Key, v: Var, rank: int) -> z3.ExprRef:
        if c.length is None:
            return self.var(c, key, None)
        assert v.index is not None
        if isinstance(v.index, Lit) and isinstance(v.index.value, int):
            i = v.index.value
            if not 0 <= i < c.length:
                raise InternalError(f"{v}: index {i} outside 0..{c.length - 1}")
            return self.var(c, key, i)
        idx = self.term(v.index, rank)
        out = self.var(c, key, c.length - 1)
        for i in range(c.length - 2, -1, -1):
            out = z3.If(idx == i, self.var(c, key, i), out)
        return out

    def guard(self, op: Op) -> z3.BoolRef:
        oc = op.choice
        if oc is None or oc.when is None:
            return z3.BoolVal(True, self.ctx)
        return self.term(oc.when, op.rank)

    def size(self, op: Op) -> z3.ExprRef | int | None:
        oc = op.choice
        if oc is not None and oc.size is not None:
            return self.term(oc.size, op.rank)
        return op.size

    def counts(self, op: Op, recv: bool = False) -> tuple[z3.ExprRef | int, ...] | None:
        oc = op.choice
        exprs = (oc.recv_counts if recv else oc.counts) if oc is not None else None
        if exprs is not None:
            return tuple(self.term(e, op.rank) for e in exprs)
        return op.recv_counts if recv else op.counts

    # ---- models
    def assignment(self, model: z3.ModelRef) -> Assignment:
        """The model as an assignment of every free choice (those z3 left
        open take their first value)."""
        inv = {i: n for n, i in self.symbols.items()}
        vals: list[tuple[Key, Value | tuple[Value, ...]]] = []
        for c, key in free_keys(self.s.choices, self.s.ranks):
            elems = range(c.length) if c.length is not None else [None]
            got: list[Value] = []
            for el in elems:
                t = self.vars.get((key, el))
                if t is None:
                    got.append(c.domain[0])
                    continue
                val = model.eval(t, model_completion=True)
                if c.kind == "bool":
                    got.append(z3.is_true(val))
                elif c.kind == "int":
                    got.append(val.as_long())
                else:
                    got.append(inv.get(val.as_long(), str(c.domain[0])))
            vals.append((key, tuple(got) if c.length is not None else got[0]))
        return Assignment(tuple(vals))


def new_solver(ctx: z3.Context, optimize: bool = False) -> Any:
    """A solver for choice formulas (integer arithmetic with If-sums).  The
    precedence backend switches z3's arithmetic to difference logic globally
    (``z3backend.py``), which is incomplete here: use the general solver."""
    sol = z3.Optimize(ctx=ctx) if optimize else z3.Solver(ctx=ctx)
    sol.set("arith.solver", 6) if not optimize else None
    return sol


def _ind(b: z3.BoolRef, ctx: z3.Context) -> z3.ArithRef:
    return z3.If(b, z3.IntVal(1, ctx), z3.IntVal(0, ctx))


def _differ(a: object, b: object) -> z3.BoolRef | bool:
    """``a != b`` for constants or terms: False when both are the same constant."""
    if isinstance(a, z3.ExprRef) or isinstance(b, z3.ExprRef):
        if isinstance(a, z3.ExprRef) and isinstance(b, z3.ExprRef) and a.eq(b):
            return False
        return a != b  # type: ignore[no-any-return]
    return a != b


def _sig_differ(enc: Encoder, a: Op, b: Op) -> z3.BoolRef | bool:
    """The plain matching signature (kind, size, root, dtype, counts but for
    all_to_all) of ``a`` and ``b`` differ."""
    if a.kind is not b.kind or a.root != b.root or a.dtype != b.dtype:
        return True
    parts: list[z3.BoolRef | bool] = [_differ(enc.size(a), enc.size(b))]
    if a.kind is not Kind.ALL_TO_ALL:
        ca, cb = enc.counts(a), enc.counts(b)
        if (ca is None) != (cb is None):
            return True
        if ca is not None and cb is not None:
            if len(ca) != len(cb):
                return True
            parts.extend(_differ(x, y) for x, y in zip(ca, cb, strict=True))
    if any(p is True for p in parts):
        return True
    terms = [p for p in parts if p is not False]
    if not terms:
        return False
    return z3.Or(terms) if len(terms) > 1 else terms[0]  # type: ignore[return-value]


class _Seq:
    """One member's guarded ops on one sequence, with their positions."""

    def __init__(self, enc: Encoder, ops: Sequence[Op]) -> None:
        ctx = enc.ctx
        self.ops = list(ops)
        self.guards = [enc.guard(o) for o in ops]
        self.fixed = [z3.is_true(g) for g in self.guards]
        pos: list[z3.ArithRef] = []
        acc: z3.ArithRef = z3.IntVal(0, ctx)
        for g in self.guards:
            pos.append(acc)
            acc = acc + _ind(g, ctx)
        self.pos = pos
        self.count = acc
        # the possible positions of each op: (fewest guards true before it, most)
        lo = hi = 0
        self.span: list[tuple[int, int]] = []
        for f in self.fixed:
            self.span.append((lo, hi))
            hi += 1
            lo += 1 if f else 0
        self.n_lo, self.n_hi = lo, hi

    @property
    def static(self) -> bool:
        return all(self.fixed)


def _choice_free(ops: Sequence[Op]) -> bool:
    return all(o.choice is None for o in ops)


class DivergenceChecker:
    def __init__(self, s: Schedule, *, timeout_s: float | None = None, rlimit: int | None = None) -> None:
        self.s = s
        self.ctx = new_context()
        self.enc = Encoder(s, self.ctx)
        self.timeout_s, self.rlimit = timeout_s, rlimit
        self.queries = 0
        self.unknown = ""

    def _solve(self, diff: z3.BoolRef) -> z3.ModelRef | None:
        """A model of ``diff`` (with every domain constraint), or None."""
        self.queries += 1
        sol = new_solver(self.ctx)
        if self.timeout_s is not None:
            sol.set("timeout", max(1, int(self.timeout_s * 1000)))
        if self.rlimit is not None:
            sol.set("rlimit", int(self.rlimit))
        sol.add(*self.enc.domain)
        sol.add(diff)
        res = sol.check()
        if res == z3.sat:
            return sol.model()
        if res == z3.unknown:
            self.unknown = self.unknown or sol.reason_unknown()
        return None

    def _seq_diff(self, a: _Seq, b: _Seq, pair: bool = True) -> z3.BoolRef | bool:
        """Some assignment makes the two guarded sequences differ."""
        parts: list[z3.BoolRef | bool] = []
        if not (a.static and b.static and len(a.ops) == len(b.ops)):
            parts.append(a.count != b.count)
        for i, x in enumerate(a.ops):
            for j, y in enumerate(b.ops):
                (alo, ahi), (blo, bhi) = a.span[i], b.span[j]
                if ahi < blo or bhi < alo:
                    continue  # they can never be the same position
                d = _sig_differ(self.enc, x, y) if pair else False
                if d is False:
                    continue
                same = a.pos[i] == b.pos[j]
                if a.fixed[i] and b.fixed[j] and isinstance(same, z3.BoolRef) and z3.is_true(z3.simplify(same)):
                    parts.append(d)
                else:
                    parts.append(z3.And(a.guards[i], b.guards[j], same, d if d is not True else
                                        z3.BoolVal(True, self.ctx)))
        parts = [p for p in parts if p is not False]
        if not parts:
            return False
        if any(p is True for p in parts):
            return True
        return z3.Or(parts)  # type: ignore[arg-type]

    def _query(self, diff: z3.BoolRef | bool) -> z3.ModelRef | None:
        if diff is False:
            return None
        if diff is True:
            diff = z3.BoolVal(True, self.ctx)
        return self._solve(diff)

    def run(self) -> Divergence | None:
        s = self.s
        colls: dict[str, dict[int, list[Op]]] = defaultdict(lambda: defaultdict(list))
        sends: dict[tuple[int, int, str], list[Op]] = defaultdict(list)
        recvs: dict[tuple[int, int, str], list[Op]] = defaultdict(list)
        puts: dict[tuple[int, int, str | None], list[Op]] = defaultdict(list)
        wsigs: dict[tuple[int, int, str | None], list[Op]] = defaultdict(list)
        for op in s.ops:
            k = op.kind
            if k in _COLL:
                colls[op.group or ""][op.rank].append(op)
            elif k is Kind.SEND:
                sends[(op.rank, op.peer or 0, op.communicator or "")].append(op)
            elif k is Kind.RECV:
                recvs[(op.peer or 0, op.rank, op.communicator or "")].append(op)
            elif k is Kind.PUT:
                puts[(op.rank, op.peer or 0, op.signal)].append(op)
            elif k is Kind.WAIT_SIGNAL:
                wsigs[(op.peer or 0, op.rank, op.signal)].append(op)
        for g, members in s.groups:
            per = colls.get(g)
            if not per:
                continue
            found = self._group(g, members, per)
            if found is not None:
                return found
        for key in sorted(set(sends) | set(recvs)):
            ss, rr = sends.get(key, []), recvs.get(key, [])
            if _choice_free(ss) and _choice_free(rr):
                continue  # plain matching decides it on the selection
            a, b = _Seq(self.enc, ss), _Seq(self.enc, rr)
            parts: list[z3.BoolRef | bool] = [a.count != b.count]
            for i, x in enumerate(ss):
                for j, y in enumerate(rr):
                    sx, sy = self.enc.size(x), self.enc.size(y)
                    if sx is None or sy is None:
                        continue
                    d = _differ(sx, sy)
                    if d is False:
                        continue
                    parts.append(z3.And(a.guards[i], b.guards[j], a.pos[i] == b.pos[j],
                                        d if d is not True else z3.BoolVal(True, self.ctx)))
            model = self._query(z3.Or([p for p in parts if p is not False]) if len(parts) > 1 else parts[0])
            if model is not None:
                src, dst, comm = key
                return self._found(model, f"the messages from rank {src} to rank {dst} ({comm})", (src, dst),
                                   ss + rr)
        for skey in sorted(set(puts) | set(wsigs), key=str):
            pp, ww = puts.get(skey, []), wsigs.get(skey, [])
            if _choice_free(pp) and _choice_free(ww):
                continue
            a, b = _Seq(self.enc, pp), _Seq(self.enc, ww)
            model = self._query(b.count > a.count)
            if model is not None:
                src, dst, sig = skey
                return self._found(model, f"the signal {sig!r} from rank {src} to rank {dst}", (src, dst), pp + ww)
        return None

    def _group(self, g: str, members: tuple[int, ...], per: dict[int, list[Op]]) -> Divergence | None:
        ref = members[0]
        seqs = {m: per.get(m, []) for m in members}
        if all(_choice_free(v) for v in seqs.values()):
            return None  # nothing depends on a choice: plain matching decides it
        built = {m: _Seq(self.enc, seqs[m]) for m in members}
        cache: dict[str, bool] = {}
        for m in members[1:]:
            sig = self._signature(seqs[m], m)
            if sig is not None and sig in cache:
                continue  # the same program up to renaming the rank's own choices: the same answer
            model = self._query(self._seq_diff(built[ref], built[m]))
            if model is not None:
                return self._found(model, f"group {g}", (ref, m), seqs[ref] + seqs[m])
            if sig is not None:
                cache[sig] = False
        return self._all_to_all(g, members, seqs, built)

    def _signature(self, ops: list[Op], rank: int) -> str | None:
        """The member's program with its own rank-local choices written as
        ``self``: two members with one signature are symmetric (their local
        choices are independent and have one domain).  None when an
        expression names a rank explicitly."""
        parts: list[str] = []
        for o in ops:
            oc = o.choice
            text = f"{o.kind}|{o.root}|{o.dtype}|{o.size}|{o.counts}|{o.recv_counts}"
            if oc is not None:
                for e in oc.exprs():
                    if "@" in str(e):
                        return None
                text += "|" + ";".join(str(e) for e in oc.exprs()) + f"|{oc.when is not None}"
                text += "|" + ",".join(str(owner_of(c, rank, self.s.group_map)) != str(rank) and
                                       str(owner_of(c, rank, self.s.group_map)) or "self"
                                       for c in self.s.choices if c.free and _used(c.name, oc))
            parts.append(text)
        return "\n".join(parts)

    def _all_to_all(self, g: str, members: tuple[int, ...], seqs: dict[int, list[Op]],
                    built: dict[int, _Seq]) -> Divergence | None:
        """all_to_allv: in one instance, what member i sends to j is what j
        expects from i.  (The sequences already agree for every assignment.)"""
        enc = self.enc
        parts: list[z3.BoolRef] = []
        for ii, i in enumerate(members):
            for jj, j in enumerate(members):
                for x_i, x in enumerate(seqs[i]):
                    if x.kind is not Kind.ALL_TO_ALL:
                        continue
                    cx = enc.counts(x)
                    if cx is None:
                        continue
                    for y_i, y in enumerate(seqs[j]):
                        if y.kind is not Kind.ALL_TO_ALL:
                            continue
                        ry = enc.counts(y, recv=True)
                        if ry is None or (x.choice is None and y.choice is None):
                            continue
                        d = _differ(cx[jj], ry[ii])
                        if d is False:
                            continue
                        a, b = built[i], built[j]
                        parts.append(z3.And(a.guards[x_i], b.guards[y_i], a.pos[x_i] == b.pos[y_i],
                                            d if d is not True else z3.BoolVal(True, self.ctx)))
                        if len(parts) > 200_000:
                            self.unknown = self.unknown or (f"all_to_all splits on {g}: too many pairs to encode")
                            return None
        if not parts:
            return None
        model = self._query(z3.Or(parts))
        if model is None:
            return None
        return self._found(model, f"the all_to_all splits on group {g}", (members[0], members[-1]),
                           [o for m in members for o in seqs[m] if o.kind is Kind.ALL_TO_ALL])

    def _found(self, model: z3.ModelRef, where: str, ranks: tuple[int, int], ops: list[Op]) -> Divergence:
        a = self.enc.assignment(model)
        names: list[str] = []
        for o in ops:
            if o.choice is None:
                continue
            for c in self.s.choices:
                if _used(c.name, o.choice) and c.name not in names:
                    names.append(c.name)
        by = self.enc.by_name
        local = [n for n in names if by[n].scope == "rank"]
        return Divergence(a, where, ranks, tuple(o.id for o in ops), tuple(names), tuple(local))


def _used(name: str, oc: object) -> bool:
    from ..ir.choices import OpChoice
    from ..ir.expr import walk
    assert isinstance(oc, OpChoice)
    return any(isinstance(x, Var) and x.name == name for e in oc.exprs() for x in walk(e))


def find_divergence(s: Schedule, *, timeout_s: float | None = None, rlimit: int | None = None) -> DivergenceResult:
    import time
    t = time.perf_counter()
    chk = DivergenceChecker(s, timeout_s=timeout_s, rlimit=rlimit)
    found = chk.run()
    return DivergenceResult(found, chk.queries, chk.unknown if found is None else "", time.perf_counter() - t)
