"""Choice variables (DESIGN.md section 2c): what each rank decides at run time.

A schedule may declare choices and make ops depend on them: an op's guard
(``"when"``) says when the rank issues it, its ``size`` and ``counts`` may be
expressions.  Every choice has a *scope*:

* ``rank``: every rank picks its own value (rank-local: its own batch);
* one or more groups: one value per group, the same on every member (it came
  out of a collective or a broadcast on that group: ``via`` names that op);
* ``job``: one value for the whole job (a configuration flag).

A *derived* choice records where its value came from: ``value`` is an
aggregate of the members' own values over its group (``any(state != idle)``,
``max(tokens)``: an all_reduce of a local flag), ``gathers`` makes every
member's value of a rank-local choice known to all members (an all_gather of
the local sizes: ``all_tokens@3`` is rank 3's ``tokens``).  Either is uniform
on its group by construction.

An *assignment* gives every free choice a value; :func:`select` turns a
schedule and an assignment into the plain schedule that assignment runs.
Plain data, no solver.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ScheduleError
from .expr import AGGREGATES, Arith, BoolOp, Call, Cmp, Expr, In, Lit, Not, Value, Var, evaluate, parse_expr, walk

SCOPES = ("rank", "job")
Owner = int | str | None  # a rank, a group, or None for the job
Key = tuple[str, Owner]


@dataclass(frozen=True)
class Choice:
    """One declared choice.  ``values`` is the domain (symbols, booleans or
    integers); an integer range is ``values`` = ``range(lo, hi + 1)`` kept as
    ``lo``/``hi``.  ``length``: a vector of that many entries, one domain.
    ``groups`` is set for a group scope.  ``derived`` is ``"value"`` or
    ``"gathers"`` (see the module text), with ``via`` the op (by name) that
    carries it."""

    name: str
    scope: str  # "rank" | "job" | "group"
    values: tuple[Value, ...] = ()
    lo: int | None = None
    hi: int | None = None
    groups: tuple[str, ...] = ()
    length: int | None = None
    derived: str | None = None
    value: Expr | None = None
    gathers: str | None = None
    via: str | None = None

    @property
    def is_range(self) -> bool:
        return self.lo is not None

    @property
    def domain(self) -> Sequence[Value]:
        """The values, in order; a range stays a ``range`` (never built: it may be huge)."""
        if self.lo is not None and self.hi is not None:
            return range(self.lo, self.hi + 1)
        return self.values

    @property
    def domain_size(self) -> int:
        if self.lo is not None and self.hi is not None:
            return self.hi - self.lo + 1
        return len(self.values)

    @property
    def kind(self) -> str:
        """"bool", "int" or "symbol": how expressions may use it."""
        if self.is_range:
            return "int"
        if all(isinstance(v, bool) for v in self.values):
            return "bool"
        if all(isinstance(v, int) and not isinstance(v, bool) for v in self.values):
            return "int"
        return "symbol"

    @property
    def free(self) -> bool:
        """Chosen by the run (not computed from other choices)."""
        return self.derived is None

    def describe(self) -> str:
        where = {"rank": "rank-local", "job": "one value for the job"}.get(
            self.scope, f"uniform on {', '.join(self.groups)}")
        if self.derived == "value":
            return f"{self.name} = {self.value} over {self.groups[0]} ({where}, via {self.via})"
        if self.derived == "gathers":
            return f"{self.name} = every member's {self.gathers} ({where}, via {self.via})"
        dom = f"{self.lo}..{self.hi}" if self.is_range else "{" + ", ".join(str(Lit(v)) for v in self.values) + "}"
        vec = f"[{self.length}]" if self.length is not None else ""
        return f"{self.name}{vec} in {dom} ({where})"


@dataclass(frozen=True)
class OpChoice:
    """What an op's issue and sizes depend on: its guard and expressions."""

    when: Expr | None = None
    size: Expr | None = None
    counts: tuple[Expr, ...] | None = None
    recv_counts: tuple[Expr, ...] | None = None

    def exprs(self) -> Iterator[Expr]:
        if self.when is not None:
            yield self.when
        if self.size is not None:
            yield self.size
        yield from self.counts or ()
        yield from self.recv_counts or ()


# ---------------------------------------------------------------- reading
CHOICE_KEYS = ("values", "range", "scope", "length", "value", "gathers", "via", "description")


def choices_from_dict(raw: Any, groups: Mapping[str, tuple[int, ...]], src: str) -> tuple[Choice, ...]:
    """The ``"choices"`` object of a schedule file."""
    if not isinstance(raw, dict):
        raise ScheduleError("\"choices\" must map choice names to their declarations", src,
                            "e.g. \"choices\": {\"state\": {\"values\": [\"idle\", \"decode\"], \"scope\": \"rank\"}}")
    out: list[Choice] = []
    for name, d in raw.items():
        out.append(_choice(name, d, groups, f"{src}: choice {name!r}"))
    names = {c.name for c in out}
    by_name = {c.name: c for c in out}
    for c in out:
        where = f"{src}: choice {c.name!r}"
        if c.gathers is not None:
            g = by_name.get(c.gathers)
            if g is None or g.scope != "rank" or g.derived is not None:
                raise ScheduleError(f"gathers {c.gathers!r}, which is not a declared rank-local choice", where)
        if c.value is not None:
            for x in walk(c.value):
                if isinstance(x, Var) and x.name in names:
                    other = by_name[x.name]
                    if other.scope != "rank" or other.derived is not None:
                        raise ScheduleError(
                            f"its value aggregates {x.name!r}, which is not a free rank-local choice", where,
                            "a derived value combines the members' own values")
            check_types(c.value, by_name, where, aggregate=True)
    return tuple(out)


def _choice(name: Any, d: Any, groups: Mapping[str, tuple[int, ...]], where: str) -> Choice:
    if not (isinstance(name, str) and name.isidentifier() and name not in ("and", "or", "not", "in", "true",
                                                                            "false") and name not in AGGREGATES):
        raise ScheduleError("a choice's name is an identifier (letters, digits, _) and not a keyword", where)
    if not isinstance(d, dict):
        raise ScheduleError("a choice is an object: {\"values\": [...], \"scope\": \"rank\"}", where)
    for k in d:
        if k not in CHOICE_KEYS:
            from .validate import suggest
            raise ScheduleError(f"unknown field {k!r}", where, suggest(k, CHOICE_KEYS))
    scope_raw = d.get("scope")
    if scope_raw is None:
        raise ScheduleError("a choice needs \"scope\": \"rank\", \"job\", a group name or a list of groups", where)
    gs: tuple[str, ...] = ()
    if scope_raw in SCOPES:
        scope = str(scope_raw)
    else:
        scope = "group"
        names = [scope_raw] if isinstance(scope_raw, str) else scope_raw
        if not isinstance(names, list) or not names or not all(isinstance(g, str) for g in names):
            raise ScheduleError(f"scope must be \"rank\", \"job\", a group or a list of groups, got {scope_raw!r}",
                                where)
        for g in names:
            if g not in groups:
                from .validate import suggest
                raise ScheduleError(f"scope names group {g!r}, which is not declared", where, suggest(g, groups))
        seen: dict[int, str] = {}
        for g in names:
            for r in groups[g]:
                if r in seen:
                    raise ScheduleError(f"groups {seen[r]!r} and {g!r} of its scope share rank {r}: a rank holds"
                                        " one value of a choice", where)
                seen[r] = g
        gs = tuple(names)
    via = d.get("via")
    if via is not None and not isinstance(via, str):
        raise ScheduleError("via names the op (by its \"name\") that makes the value uniform", where)
    length = d.get("length")
    if length is not None and not (type(length) is int and 1 <= length <= 4096):
        raise ScheduleError(f"length must be an integer from 1 to 4096, got {length!r}", where)
    if "value" in d or "gathers" in d:
        if scope != "group" or len(gs) != 1:
            raise ScheduleError("a derived choice (value or gathers) is uniform on one group: give that group as"
                                " its scope", where)
        if via is None:
            raise ScheduleError("a derived choice needs \"via\": the name of the collective on its group that"
                                " computes it", where)
        if "values" in d or "range" in d or ("value" in d and "gathers" in d):
            raise ScheduleError("a derived choice has \"value\" or \"gathers\", and no domain of its own", where)
        if "gathers" in d:
            if not isinstance(d["gathers"], str):
                raise ScheduleError("gathers names a rank-local choice", where)
            return Choice(str(name), scope, groups=gs, derived="gathers", gathers=d["gathers"], via=via)
        expr = parse_expr(d["value"], where + ", value")
        if not (isinstance(expr, Call) and expr.fn in AGGREGATES and len(expr.args) == 1):
            raise ScheduleError(f"value {d['value']!r} must be one aggregate over the group's members:"
                                f" {', '.join(a + '(...)' for a in AGGREGATES)}", where)
        return Choice(str(name), scope, groups=gs, derived="value", value=expr, via=via)
    if "values" in d and "range" in d:
        raise ScheduleError("give \"values\" or \"range\", not both", where)
    if "range" in d:
        rg = d["range"]
        if not (isinstance(rg, list) and len(rg) == 2 and all(type(x) is int and abs(x) < 2**40 for x in rg)
                and rg[0] <= rg[1]):
            raise ScheduleError(f"range is [lo, hi], two integers with lo <= hi, got {rg!r}", where)
        return Choice(str(name), scope, lo=rg[0], hi=rg[1], groups=gs, length=length, via=via)
    vals = d.get("values")
    if not (isinstance(vals, list) and vals):
        raise ScheduleError("a choice needs \"values\" (a non-empty list) or \"range\": [lo, hi]", where)
    kinds = {("bool" if isinstance(v, bool) else "int" if type(v) is int else "symbol" if isinstance(v, str)
              else "bad") for v in vals}
    if "bad" in kinds or len(kinds) > 1:
        raise ScheduleError(f"values are all symbols, all integers or all booleans, got {vals!r}", where)
    if len(set(vals)) != len(vals):
        raise ScheduleError(f"values {vals!r} repeat a value", where)
    if len(vals) > 4096:
        raise ScheduleError("more than 4096 values: use a \"range\"", where)
    for v in vals:
        if isinstance(v, str) and not v.replace("-", "_").replace(".", "_").isidentifier():
            raise ScheduleError(f"value {v!r}: a symbol is an identifier", where)
    return Choice(str(name), scope, values=tuple(vals), groups=gs, length=length, via=via)


def choice_to_dict(c: Choice) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if c.derived == "value":
        d["value"] = str(c.value)
    elif c.derived == "gathers":
        d["gathers"] = c.gathers
    elif c.is_range:
        d["range"] = [c.lo, c.hi]
    else:
        d["values"] = list(c.values)
    if c.length is not None:
        d["length"] = c.length
    d["scope"] = c.scope if c.scope != "group" else (c.groups[0] if len(c.groups) == 1 else list(c.groups))
    if c.via is not None:
        d["via"] = c.via
    return d


# ---------------------------------------------------------------- types
def check_types(e: Expr, choices: Mapping[str, Choice], where: str, *, aggregate: bool = False,
                want: str | None = None) -> str:
    """The type of ``e`` ("bool", "int", "symbol"), or a ScheduleError that
    says what does not fit.  Bare words that are not choices are symbols."""
    def fail(msg: str) -> None:
        raise ScheduleError(f"expression {e}: {msg}", where)

    def ty(x: Expr, top: bool) -> str:
        if isinstance(x, Lit):
            v = x.value
            return "bool" if isinstance(v, bool) else "int" if isinstance(v, int) else "symbol"
        if isinstance(x, Var):
            c = choices.get(x.name)
            if c is None:
                if x.at is not None or x.index is not None:
                    fail(f"{x.name!r} is not a declared choice")
                return "symbol"
            if c.derived == "gathers":
                if x.at is None:
                    fail(f"{x.name} gathers every member's {c.gathers}: name the member, e.g. {x.name}@0")
                base = choices.get(c.gathers or "")
                if base is None:
                    fail(f"{x.name} gathers an undeclared choice")
                assert base is not None
                if base.length is not None and x.index is None:
                    fail(f"{x.name}@{x.at} is a vector of {base.length}: index it, e.g. {x.name}@{x.at}[0]")
                if x.index is not None:
                    if base.length is None:
                        fail(f"{c.gathers} is not a vector")
                    if ty(x.index, False) != "int":
                        fail("an index is an integer")
                return base.kind
            if x.at is not None:
                fail(f"{x.name}@{x.at}: only a gathered choice names another member's value; declare"
                     f" {{\"gathers\": \"{x.name}\"}} with the all_gather that brings it")
            if c.length is not None and x.index is None:
                fail(f"{x.name} is a vector of {c.length}: index it, e.g. {x.name}[0]")
            if x.index is not None:
                if c.length is None:
                    fail(f"{x.name} is not a vector")
                if ty(x.index, False) != "int":
                    fail("an index is an integer")
            if c.derived == "value":
                assert c.value is not None
                return _aggregate_type(c, choices, where)
            return c.kind
        if isinstance(x, Call):
            if x.fn in ("min", "max") and len(x.args) > 1:
                for a in x.args:
                    if ty(a, False) != "int":
                        fail(f"{x.fn} takes integers")
                return "int"
            if not (aggregate and top):
                fail(f"{x.fn}(...) aggregates a group's members: only a derived choice's value may use it")
            inner = ty(x.args[0], False)
            if x.fn in ("any", "all", "count"):
                if inner != "bool":
                    fail(f"{x.fn} takes a condition")
                return "int" if x.fn == "count" else "bool"
            if inner != "int":
                fail(f"{x.fn} takes an integer")
            return "int"
        if isinstance(x, Cmp):
            ta, tb = ty(x.left, False), ty(x.right, False)
            if ta != tb:
                fail(f"{x.left} is {_article(ta)} and {x.right} is {_article(tb)}")
            if x.op not in ("==", "!=") and ta != "int":
                fail(f"{x.op} compares integers")
            for side, other in ((x.left, x.right), (x.right, x.left)):
                _check_symbol(side, other, choices, fail)
            return "bool"
        if isinstance(x, In):
            targ = ty(x.arg, False)
            for v in x.values:
                vt = "bool" if isinstance(v, bool) else "int" if isinstance(v, int) else "symbol"
                if vt != targ:
                    fail(f"{x.arg} is {_article(targ)}; {Lit(v)} is not")
                if isinstance(x.arg, Var) and x.arg.name in choices and isinstance(v, str):
                    dom = _domain_of(x.arg, choices)
                    if dom is not None and v not in dom:
                        fail(f"{v!r} is not a value of {x.arg.name} ({', '.join(map(str, dom))})")
            return "bool"
        if isinstance(x, Arith):
            if ty(x.left, False) != "int" or ty(x.right, False) != "int":
                fail(f"{x.op} takes integers")
            return "int"
        if isinstance(x, Not):
            if ty(x.arg, False) != "bool":
                fail("not takes a condition")
            return "bool"
        if isinstance(x, BoolOp):
            for a in x.args:
                if ty(a, False) != "bool":
                    fail(f"{x.op} takes conditions; {a} is not one")
            return "bool"
        fail("cannot type it")
        return ""

    t = ty(e, True)
    if want is not None and t != want:
        raise ScheduleError(f"expression {e} is {_article(t)}, {_article(want)} is needed here", where)
    return t


def _article(t: str) -> str:
    return {"int": "an integer", "bool": "a condition", "symbol": "a symbol"}.get(t, t)


def _domain_of(v: Var, choices: Mapping[str, Choice]) -> tuple[Value, ...] | None:
    c = choices[v.name]
    if c.derived == "gathers":
        c = choices[c.gathers or ""]
    if c.derived is not None or c.kind != "symbol":
        return None
    return c.values


def _check_symbol(side: Expr, other: Expr, choices: Mapping[str, Choice], fail: Any) -> None:
    if isinstance(side, Var) and side.name in choices and (
            isinstance(other, Lit) and isinstance(other.value, str)
            or isinstance(other, Var) and other.name not in choices):
        sym = other.value if isinstance(other, Lit) else other.name  # type: ignore[union-attr]
        dom = _domain_of(side, choices)
        if dom is not None and sym not in dom:
            fail(f"{sym!r} is not a value of {side.name} ({', '.join(map(str, dom))})")
    if isinstance(side, Var) and side.name not in choices and isinstance(other, Var) and other.name not in choices:
        fail(f"neither {side.name!r} nor {other.name!r} is a declared choice")


def _aggregate_type(c: Choice, choices: Mapping[str, Choice], where: str) -> str:
    assert isinstance(c.value, Call)
    return "int" if c.value.fn in ("sum", "max", "min", "count") else "bool"


# ---------------------------------------------------------------- assignments
@dataclass(frozen=True)
class Assignment:
    """A value for every free choice: ``values[(name, owner)]`` with the
    owner a rank (rank scope), a group name (group scope) or None (job).
    A vector choice's value is a tuple."""

    values: tuple[tuple[Key, Value | tuple[Value, ...]], ...]

    @property
    def map(self) -> dict[Key, Value | tuple[Value, ...]]:
        return dict(self.values)

    def text(self) -> str:
        """``ranks 0-2, 5: state=decode; rank 3: state=idle; tp0: accept=2``:
        ranks that hold the same values are listed together."""
        per: dict[Owner, list[str]] = {}
        for (name, owner), v in self.values:
            per.setdefault(owner, []).append(f"{name}={_fmt(v)}")
        parts: list[str] = []
        if None in per:
            parts.append(f"job: {', '.join(per[None])}")
        same: dict[str, list[int]] = {}
        for owner in sorted(o for o in per if isinstance(o, int)):
            same.setdefault(", ".join(per[owner]), []).append(owner)
        for vals, ranks in sorted(same.items(), key=lambda kv: kv[1][0]):
            parts.append(f"{'rank' if len(ranks) == 1 else 'ranks'} {_ranges(ranks)}: {vals}")
        for owner in sorted(o for o in per if isinstance(o, str)):
            parts.append(f"{owner}: {', '.join(per[owner])}")
        return "; ".join(parts) if parts else "(no choices)"

    def to_json(self) -> list[dict[str, Any]]:
        out = []
        for (name, owner), v in self.values:
            d: dict[str, Any] = {"choice": name}
            if isinstance(owner, int):
                d["rank"] = owner
            elif isinstance(owner, str):
                d["group"] = owner
            d["value"] = list(v) if isinstance(v, tuple) else v
            out.append(d)
        return out


def _ranges(ranks: list[int]) -> str:
    out: list[str] = []
    i = 0
    while i < len(ranks):
        j = i
        while j + 1 < len(ranks) and ranks[j + 1] == ranks[j] + 1:
            j += 1
        out.append(str(ranks[i]) if i == j else f"{ranks[i]}-{ranks[j]}" if j > i + 1 else f"{ranks[i]}, {ranks[j]}")
        i = j + 1
    return ", ".join(out)


def _fmt(v: Value | tuple[Value, ...]) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(Lit(v))


def owner_of(c: Choice, rank: int, groups: Mapping[str, tuple[int, ...]]) -> Owner:
    """Whose value of ``c`` rank ``rank`` holds; raises KeyError when the
    rank is in none of the choice's groups."""
    if c.scope == "rank":
        return rank
    if c.scope == "job":
        return None
    for g in c.groups:
        if rank in groups[g]:
            return g
    raise KeyError(rank)


def free_keys(choices: tuple[Choice, ...], ranks: tuple[int, ...]) -> list[tuple[Choice, Key]]:
    """Every free variable of the job: a choice with its owner."""
    out: list[tuple[Choice, Key]] = []
    for c in choices:
        if not c.free:
            continue
        if c.scope == "rank":
            out.extend((c, (c.name, r)) for r in ranks)
        elif c.scope == "job":
            out.append((c, (c.name, None)))
        else:
            out.extend((c, (c.name, g)) for g in c.groups)
    return out


class Evaluator:
    """Evaluates expressions of a schedule's choices on a rank under one
    assignment (derived choices computed from their members' values)."""

    def __init__(self, choices: tuple[Choice, ...], groups: Mapping[str, tuple[int, ...]],
                 assignment: Assignment) -> None:
        self.by_name = {c.name: c for c in choices}
        self.groups = groups
        self.values = assignment.map
        self._derived: dict[tuple[str, str], Value] = {}

    def at(self, rank: int) -> Any:
        def lookup(v: Var) -> Value:
            return self.var(v, rank)
        return lookup

    def eval(self, e: Expr, rank: int) -> Value:
        return evaluate(e, self.at(rank))

    def var(self, v: Var, rank: int) -> Value:
        c = self.by_name.get(v.name)
        if c is None:
            return v.name  # a bare symbol
        if c.derived == "gathers":
            assert v.at is not None and c.gathers is not None
            base = self.by_name[c.gathers]
            val = self.values[(base.name, v.at)]
            return self._index(val, v, rank, base)
        if c.derived == "value":
            g = c.groups[0]
            key = (c.name, g)
            if key not in self._derived:
                assert isinstance(c.value, Call)
                inner = c.value.args[0]
                vals = [evaluate(inner, self.at(m)) for m in self.groups[g]]
                fn = c.value.fn
                self._derived[key] = (any(vals) if fn == "any" else all(vals) if fn == "all"
                                      else sum(bool(x) for x in vals) if fn == "count"
                                      else sum(int(x) for x in vals) if fn == "sum"
                                      else max(int(x) for x in vals) if fn == "max"
                                      else min(int(x) for x in vals))
            return self._derived[key]
        val = self.values[(c.name, owner_of(c, rank, self.groups))]
        return self._index(val, v, rank, c)

    def _index(self, val: Value | tuple[Value, ...], v: Var, rank: int, c: Choice) -> Value:
        if v.index is None:
            assert not isinstance(val, tuple)
            return val
        i = evaluate(v.index, self.at(rank))
        assert isinstance(val, tuple)
        if not (isinstance(i, int) and 0 <= i < len(val)):
            raise IndexError(f"{v}: index {i} is outside 0..{len(val) - 1}")
        return val[i]


def all_assignments(choices: tuple[Choice, ...], ranks: tuple[int, ...]) -> Iterator[Assignment]:
    """Every assignment, in a fixed order (enumeration: only for small spaces)."""
    keys = free_keys(choices, ranks)
    domains = []
    for c, _ in keys:
        dom = c.domain
        domains.append(list(itertools.product(dom, repeat=c.length)) if c.length is not None else list(dom))
    for combo in itertools.product(*domains):
        yield Assignment(tuple((k, v) for (_, k), v in zip(keys, combo, strict=True)))


def space_size(choices: tuple[Choice, ...], ranks: tuple[int, ...]) -> int:
    """How many assignments there are (may be astronomically large)."""
    n = 1
    for c, _ in free_keys(choices, ranks):
        n *= c.domain_size ** (c.length or 1)
    return n


def default_assignment(choices: tuple[Choice, ...], ranks: tuple[int, ...]) -> Assignment:
    keys = free_keys(choices, ranks)
    vals: list[tuple[Key, Value | tuple[Value, ...]]] = []
    for c, k in keys:
        v = c.domain[0]
        vals.append((k, tuple([v] * c.length) if c.length is not None else v))
    return Assignment(tuple(vals))


def uses(e: Expr, choices: Mapping[str, Choice]) -> set[str]:
    return {x.name for x in walk(e) if isinstance(x, Var) and x.name in choices}


__all__ = ["Assignment", "Choice", "Evaluator", "OpChoice", "all_assignments", "check_types", "choice_to_dict",
           "choices_from_dict", "default_assignment", "free_keys", "owner_of", "replace", "space_size"]
