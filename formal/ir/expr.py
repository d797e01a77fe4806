"""Expressions over choice variables: guards (``"when"``), sizes and counts.

A small language, written as a string in schedule files and parsed here::

    state != idle and not aborted
    state in {prefill, decode}
    accept * 4096
    all_tokens@3            (rank 3's entry of a gathered value)
    route[2]                (element 2 of a vector choice)
    any(state != idle)      (an aggregate: only in a derived choice's "value")

``or`` / ``and`` / ``not``; ``== != < <= > >=``; ``in {..}`` and ``not in
{..}``; ``+ - * // %``; ``min(..)`` / ``max(..)``; integers, ``true``,
``false``, quoted or bare symbols.  A bare word that is not a declared choice
is a symbol (a value of some choice's domain); :func:`check_types` rejects one
that no domain holds.  Plain data, no solver: the engine translates the tree
to z3 (``engine/divergence.py``), :func:`evaluate` computes it for one
assignment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import ScheduleError

Value = int | bool | str

CMP_OPS = ("==", "!=", "<", "<=", ">", ">=")
ARITH_OPS = ("+", "-", "*", "//", "%")
AGGREGATES = ("any", "all", "sum", "max", "min", "count")


@dataclass(frozen=True)
class Lit:
    value: Value

    def __str__(self) -> str:
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        if isinstance(self.value, str) and (not self.value.isidentifier() or self.value in _KEYWORDS):
            return f"'{self.value}'"
        return str(self.value)


@dataclass(frozen=True)
class Var:
    """A choice: on the evaluating rank (``at`` None), or member ``at``'s
    entry of a gathered choice; ``index`` picks an element of a vector."""

    name: str
    at: int | None = None
    index: Expr | None = None

    def __str__(self) -> str:
        text = self.name + (f"@{self.at}" if self.at is not None else "")
        return text + (f"[{self.index}]" if self.index is not None else "")


@dataclass(frozen=True)
class Not:
    arg: Expr

    def __str__(self) -> str:
        return f"not {_paren(self.arg, Not)}"


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    args: tuple[Expr, ...]

    def __str__(self) -> str:
        return f" {self.op} ".join(_paren(a, BoolOp) for a in self.args)


@dataclass(frozen=True)
class Cmp:
    op: str
    left: Expr
    right: Expr

    def __str__(self) -> str:
        return f"{_operand(self.left)} {self.op} {_operand(self.right)}"


@dataclass(frozen=True)
class In:
    arg: Expr
    values: tuple[Value, ...]
    negate: bool = False

    def __str__(self) -> str:
        vals = ", ".join(str(Lit(v)) for v in self.values)
        return f"{_operand(self.arg)} {'not in' if self.negate else 'in'} {{{vals}}}"


@dataclass(frozen=True)
class Arith:
    op: str
    left: Expr
    right: Expr

    def __str__(self) -> str:
        return f"({self.left} {self.op} {self.right})"


@dataclass(frozen=True)
class Call:
    """``min``/``max`` of their arguments, or an aggregate over a group's
    members (``any``/``all``/``sum``/``max``/``min``/``count`` of one argument,
    only in a derived choice)."""

    fn: str
    args: tuple[Expr, ...]

    def __str__(self) -> str:
        return f"{self.fn}({', '.join(map(str, self.args))})"


Expr = Lit | Var | Not | BoolOp | Cmp | In | Arith | Call


def _operand(e: Expr) -> str:
    """An operand of a comparison: a condition in parentheses (comparisons do not chain)."""
    return f"({e})" if isinstance(e, Cmp | In | Not | BoolOp) else str(e)


def _paren(e: Expr, inside: type) -> str:
    return f"({e})" if isinstance(e, BoolOp) else str(e)


# ---------------------------------------------------------------- parsing
_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_][A-Za-z0-9_]*)|('[^']*'|\"[^\"]*\")"
                    r"|(==|!=|<=|>=|//|[<>+\-*%(),{}\[\]@]))")
_KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false"})


class _Parser:
    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where
        self.toks: list[tuple[str, str]] = []
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                self.fail(f"cannot read {text[pos:].strip()[:20]!r}")
            assert m is not None
            num, name, quoted, sym = m.groups()
            if num is not None:
                self.toks.append(("int", num))
            elif name is not None:
                self.toks.append(("kw" if name in _KEYWORDS else "name", name))
            elif quoted is not None:
                self.toks.append(("sym", quoted[1:-1]))
            else:
                self.toks.append(("op", sym))
            pos = m.end()
        self.i = 0
        self.depth = 0

    def fail(self, what: str) -> None:
        raise ScheduleError(f"expression {self.text!r}: {what}", self.where,
                            "write e.g. \"state != idle\", \"accept * 4096\" or \"x in {a, b}\"")

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        t = self.peek()
        if t is None or (value is not None and t[1] != value):
            self.fail(f"expected {value!r}" if value else "unexpected end")
        assert t is not None
        self.i += 1
        return t

    def at(self, value: str) -> bool:
        t = self.peek()
        return t is not None and t[1] == value and t[0] in ("op", "kw")

    def parse(self) -> Expr:
        if not self.toks:
            self.fail("it is empty")
        e = self.orx()
        if self.peek() is not None:
            self.fail(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return e

    def orx(self) -> Expr:
        self.depth += 1
        if self.depth > 64:
            self.fail("it nests more than 64 levels deep")
        try:
            return self._orx()
        finally:
            self.depth -= 1

    def _orx(self) -> Expr:
        args = [self.andx()]
        while self.at("or"):
            self.take()
            args.append(self.andx())
        return args[0] if len(args) == 1 else BoolOp("or", tuple(args))

    def andx(self) -> Expr:
        args = [self.notx()]
        while self.at("and"):
            self.take()
            args.append(self.notx())
        return args[0] if len(args) == 1 else BoolOp("and", tuple(args))

    def notx(self) -> Expr:
        if self.at("not"):
            self.take()
            self.depth += 1
            if self.depth > 64:
                self.fail("it nests more than 64 levels deep")
            inner = self.notx()
            self.depth -= 1
            return Not(inner)
        return self.cmp()

    def cmp(self) -> Expr:
        left = self.arith()
        t = self.peek()
        if t is not None and t[0] == "op" and t[1] in CMP_OPS:
            self.take()
            return Cmp(t[1], left, self.arith())
        if self.at("in"):
            self.take()
            return In(left, self.valueset())
        if self.at("not") and self.i + 1 < len(self.toks) and self.toks[self.i + 1][1] == "in":
            self.take()
            self.take()
            return In(left, self.valueset(), negate=True)
        return left

    def valueset(self) -> tuple[Value, ...]:
        self.take("{")
        vals: list[Value] = []
        while not self.at("}"):
            kind, text = self.take()
            if kind == "int":
                vals.append(int(text))
            elif kind == "kw" and text in ("true", "false"):
                vals.append(text == "true")
            elif kind in ("name", "sym"):
                vals.append(text)
            elif kind == "op" and text == "-":
                k2, num = self.take()
                if k2 != "int":
                    self.fail(f"'-' in a set takes a number, not {num!r}")
                vals.append(-int(num))
            else:
                self.fail(f"a set holds values, not {text!r}")
            if not self.at("}"):
                self.take(",")
        self.take("}")
        return tuple(vals)

    def arith(self) -> Expr:
        e = self.term()
        while self.at("+") or self.at("-"):
            op = self.take()[1]
            e = Arith(op, e, self.term())
        return e

    def term(self) -> Expr:
        e = self.unary()
        while self.at("*") or self.at("//") or self.at("%"):
            op = self.take()[1]
            e = Arith(op, e, self.unary())
        return e

    def unary(self) -> Expr:
        if self.at("-"):
            self.take()
            self.depth += 1
            if self.depth > 64:
                self.fail("it nests more than 64 levels deep")
            inner = self.unary()
            self.depth -= 1
            if isinstance(inner, Lit) and isinstance(inner.value, int) and not isinstance(inner.value, bool):
                return Lit(-inner.value)
            return Arith("-", Lit(0), inner)
        return self.primary()

    def primary(self) -> Expr:
        kind, text = self.take()
        if kind == "int":
            if len(text) > 18:
                self.fail(f"the integer {text[:20]}... is too large")
            return Lit(int(text))
        if kind == "kw" and text in ("true", "false"):
            return Lit(text == "true")
        if kind == "sym":
            return Lit(text)
        if kind == "op" and text == "(":
            e = self.orx()
            self.take(")")
            return e
        if kind != "name":
            self.fail(f"unexpected {text!r}")
        if self.at("("):
            self.take()
            args = [self.orx()]
            while self.at(","):
                self.take()
                args.append(self.orx())
            self.take(")")
            if text not in AGGREGATES:
                self.fail(f"unknown function {text!r}; there are {', '.join(AGGREGATES)}")
            return Call(text, tuple(args))
        at: int | None = None
        index: Expr | None = None
        if self.at("@"):
            self.take()
            k, n = self.take()
            if k != "int":
                self.fail("'@' takes a rank number")
            at = int(n)
        if self.at("["):
            self.take()
            self.depth += 1
            if self.depth > 64:
                self.fail("it nests more than 64 levels deep")
            index = self.arith()
            self.depth -= 1
            self.take("]")
        if at is None and index is None:
            return Var(text)  # a choice, or a bare symbol: resolved by check_types
        return Var(text, at, index)


_PARSED: dict[str, Expr] = {}


def parse_expr(text: str, where: str = "") -> Expr:
    """Parse one expression; a :class:`ScheduleError` naming ``where`` if
    malformed.  Trees are immutable, so one text is parsed once (a schedule
    repeats its guards on every rank)."""
    if not isinstance(text, str):
        raise ScheduleError(f"an expression is a string, got {type(text).__name__}", where)
    got = _PARSED.get(text)
    if got is not None:
        return got
    if len(text) > 4000:
        raise ScheduleError("expression longer than 4000 characters", where)
    e = _Parser(text, where).parse()
    if len(_PARSED) < 100_000:
        _PARSED[text] = e
    return e


# ---------------------------------------------------------------- walking
def children(e: Expr) -> tuple[Expr, ...]:
    if isinstance(e, Var):
        return (e.index,) if e.index is not None else ()
    if isinstance(e, Not):
        return (e.arg,)
    if isinstance(e, BoolOp | Call):
        return e.args
    if isinstance(e, Cmp | Arith):
        return (e.left, e.right)
    if isinstance(e, In):
        return (e.arg,)
    return ()


def walk(e: Expr) -> Iterator[Expr]:
    yield e
    for c in children(e):
        yield from walk(c)


def variables(e: Expr, declared: frozenset[str] | set[str] | dict[str, object]) -> set[str]:
    """The declared choices ``e`` mentions (bare symbols are not choices)."""
    return {x.name for x in walk(e) if isinstance(x, Var) and x.name in declared}


# ---------------------------------------------------------------- evaluation
Lookup = Callable[[Var], Value]


def evaluate(e: Expr, lookup: Lookup) -> Value:
    """The value of ``e`` when every choice it names has the value ``lookup``
    gives (``lookup`` returns the name itself for a bare symbol)."""
    if isinstance(e, Lit):
        return e.value
    if isinstance(e, Var):
        return lookup(e)
    if isinstance(e, Not):
        return not _bool(evaluate(e.arg, lookup))
    if isinstance(e, BoolOp):
        if e.op == "and":
            return all(_bool(evaluate(a, lookup)) for a in e.args)
        return any(_bool(evaluate(a, lookup)) for a in e.args)
    if isinstance(e, Cmp):
        a, b = evaluate(e.left, lookup), evaluate(e.right, lookup)
        if e.op == "==":
            return a == b
        if e.op == "!=":
            return a != b
        x, y = _int(a), _int(b)
        return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[e.op]
    if isinstance(e, In):
        v = evaluate(e.arg, lookup)
        return (v in e.values) != e.negate
    if isinstance(e, Arith):
        x, y = _int(evaluate(e.left, lookup)), _int(evaluate(e.right, lookup))
        if e.op == "+":
            return x + y
        if e.op == "-":
            return x - y
        if e.op == "*":
            return x * y
        if y <= 0:  # floor division and modulo by a positive number only (z3's Int division agrees there)
            raise ValueError(f"{e} divides by {y}: // and % take a positive divisor")
        return x // y if e.op == "//" else x % y
    if isinstance(e, Call) and e.fn in ("min", "max") and len(e.args) > 1:
        vals = [_int(evaluate(a, lookup)) for a in e.args]
        return min(vals) if e.fn == "min" else max(vals)
    raise ValueError(f"{e} is an aggregate: it has a value only in a derived choice")


def _bool(v: Value) -> bool:
    return bool(v)


def _int(v: Value) -> int:
    if isinstance(v, str):
        raise TypeError(f"{v!r} is a symbol, not a number")
    return int(v)
