"""Small random schedules with choices (docs/format.md, "Choices"):
:func:`choice_schedules`.

Each schedule has 2-4 ranks, the group ``all`` and sometimes a two-rank group
``sub``, and 1-3 free choices (symbols, booleans, small integer ranges, now and
then a boolean vector) scoped to a rank, a group or the job, so that the space
has at most ``max_space`` (200) assignments; sometimes also derived choices
(an aggregate ``value`` or a ``gathers`` of a rank-local choice) that come out
of a collective issued first on every member (``via``), and group choices
made uniform by a broadcast (``via``).

The ops: guarded computes (reads and writes of a small value pool),
record/wait pairs between two streams (the wait guarded like its record or
not at all), collectives on a group (guards and sizes uniform on the group,
gathered, or rank-local: a divergence), sends and recvs (guards and sizes
matched through a gathered value, a uniform one, or mismatched), crossed
message pairs (a hang when messages block) and unsynchronized cross-stream
accesses (races).  Two in five schedules are drawn "tidy" (every communication op's guard
and size uniform on its group or matched through a gathered value: matching
holds for every assignment) or "wild" (anything goes), so that both proofs
and violations are common.

Every assignment's selection is a valid plain schedule (draws where one is
not are rejected), so ``select`` never raises on what this strategy gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

from ..errors import ScheduleError
from ..ir import Schedule, ScheduleBuilder
from ..ir.choices import all_assignments, space_size
from ..ir.select import select

SYMBOLS = ("idle", "prefill", "decode")
VALUES = ("a", "a", "b")  # x and y hold "a" initially: most reads are right
P2P_MODES = ("any", "rendezvous", "eager")


@dataclass
class _C:
    """A choice as the generator knows it."""

    name: str
    kind: str  # "symbol" | "bool" | "int" | "boolvec"
    scope: Any  # "rank" | "job" | a group name | a list of disjoint group names
    values: tuple[Any, ...] = ()  # the domain (ints for "int")
    derived: str | None = None  # "value" | "gathers"
    base: _C | None = None  # what a derived choice aggregates / gathers
    via: str | None = None
    length: int | None = None

    @property
    def gs(self) -> tuple[str, ...]:
        """The groups of a group scope (one value each)."""
        if isinstance(self.scope, list):
            return tuple(self.scope)
        return () if self.scope in ("rank", "job") else (self.scope,)

    @property
    def group(self) -> str | None:
        """The group of a one-group scope."""
        return self.gs[0] if len(self.gs) == 1 else None


@dataclass
class _Gen:
    draw: st.DrawFn
    ranks: list[int]
    groups: dict[str, list[int]]
    b: ScheduleBuilder
    choices: list[_C] = field(default_factory=list)
    tidy: bool = True
    events: int = 0

    # ---- which choices a rank can use
    def holds(self, c: _C, r: int) -> bool:
        return not c.gs or any(r in self.groups[g] for g in c.gs)

    def uniform_on(self, ranks: list[int]) -> list[_C]:
        """Choices with one value on every rank of ``ranks`` (gathered ones
        through a member's entry)."""
        out = []
        for c in self.choices:
            if c.kind == "boolvec" and c.scope != "job":
                continue
            if c.scope == "job" or any(set(ranks) <= set(self.groups[g]) for g in c.gs):
                out.append(c)
        return out

    def local(self, r: int) -> list[_C]:
        return [c for c in self.choices if c.scope == "rank" and c.derived is None]

    # ---- expressions
    def ref(self, c: _C) -> tuple[str, _C]:
        """How an expression names ``c``: its name, or ``name@j`` for a
        gathered choice (j a member); and the choice giving the domain."""
        if c.derived == "gathers":
            assert c.base is not None and c.group is not None
            j = self.draw(st.sampled_from(self.groups[c.group]))
            return f"{c.name}@{j}", c.base
        return c.name, c

    def atom(self, c: _C, ref: str | None = None) -> str:
        draw = self.draw
        dom = c
        if ref is None:
            ref, dom = self.ref(c)
        kind, values = self.kind_of(dom)
        if kind == "boolvec":
            i = draw(st.integers(0, (dom.length or 1) - 1))
            return f"{ref}[{i}]" if draw(st.integers(0, 3)) else f"not {ref}[{i}]"
        if kind == "bool":
            return ref if draw(st.booleans()) else f"not {ref}"
        if kind == "symbol":
            pick = draw(st.integers(0, 3))
            v = draw(st.sampled_from(values))
            if pick == 0:
                return f"{ref} == {v}"
            if pick == 1:
                return f"{ref} != {v}"
            vs = draw(st.lists(st.sampled_from(values), min_size=1, max_size=2, unique=True))
            return f"{ref} {'in' if pick == 2 else 'not in'} {{{', '.join(vs)}}}"
        k = draw(st.sampled_from(values))
        op = draw(st.sampled_from((">=", "==", "<", "!=")))
        return f"{ref} {op} {k}"

    def kind_of(self, c: _C) -> tuple[str, tuple[Any, ...]]:
        """The type and the possible values of ``c`` (a derived value's too)."""
        if c.derived == "value":
            assert c.base is not None and c.group is not None
            fn = c.values[0]
            n = len(self.groups[c.group])
            if fn in ("any", "all"):
                return "bool", (False, True)
            if fn == "count":
                return "int", tuple(range(n + 1))
            lo, hi = min(c.base.values), max(c.base.values)
            if fn == "sum":
                return "int", tuple(range(lo * n, hi * n + 1))
            return "int", tuple(range(lo, hi + 1))
        return c.kind, c.values

    def guard(self, pool: list[_C]) -> str:
        """A condition over choices of ``pool`` (one atom, or two joined)."""
        draw = self.draw
        a = self.atom(draw(st.sampled_from(pool)))
        if draw(st.integers(0, 4)) == 0:
            b = self.atom(draw(st.sampled_from(pool)))
            return f"{a} {draw(st.sampled_from(('and', 'or')))} {b}"
        return a

    def int_choices(self, pool: list[_C]) -> list[_C]:
        out = []
        for c in pool:
            dom = c.base if c.derived == "gathers" else c
            assert dom is not None
            if self.kind_of(dom)[0] == "int":
                out.append(c)
        return out

    def size_expr(self, c: _C, ref: str | None = None) -> str:
        if ref is None:
            ref, _ = self.ref(c)
        return self.draw(st.sampled_from((f"{ref} * 4", f"{ref} + 1", f"max({ref}, 1) * 2", ref)))

    # ---- declarations
    def declare(self, max_space: int) -> None:
        draw = self.draw
        n_free = draw(st.integers(1, 3))
        scopes: list[Any] = ["rank", "rank", "rank", "job", *sorted(self.groups)]
        if "lo" in self.groups:
            scopes.append(["lo", "hi"])
        for i in range(n_free):
            kind = draw(st.sampled_from(("symbol", "symbol", "bool", "int", "int", "boolvec")))
            scope = draw(st.sampled_from(scopes))
            if i == 0 and not self.tidy:  # a wild schedule has a rank-local choice to diverge on
                scope = "rank"
                kind = "bool" if kind == "boolvec" else kind
            if kind == "boolvec" and scope != "rank":
                scope = "job"
            values: tuple[Any, ...]
            if kind == "symbol":
                values = SYMBOLS[: draw(st.integers(2, 3))]
            elif kind == "bool":
                values = (False, True)
            elif kind == "int":
                lo = draw(st.integers(0, 1))
                values = tuple(range(lo, lo + draw(st.integers(2, 3))))
            else:
                values = (False, True)
            c = _C(f"c{i}", kind, scope, values, length=2 if kind == "boolvec" else None)
            if c.group is not None and draw(st.booleans()):
                c.via = f"bc_{c.name}"
            for smaller in (c, _C(c.name, c.kind, c.scope, c.values[:2], via=c.via, length=c.length),
                            _C(c.name, c.kind, "job", c.values[:2], length=c.length),
                            _C(c.name, "bool", "job", (False, True))):
                if self.space_with(smaller) <= max_space:
                    self.choices.append(smaller)
                    break
        locals_ = [c for c in self.choices if c.scope == "rank"]
        for i, base in enumerate(locals_):
            if draw(st.integers(0, 2)) != 0:
                continue
            g = draw(st.sampled_from(sorted(self.groups)))
            if base.kind == "boolvec":
                continue
            if draw(st.booleans()):
                self.choices.append(_C(f"all_{base.name}", base.kind, g, derived="gathers", base=base,
                                       via=f"ag_{base.name}"))
            else:
                fns = {"symbol": ("any", "all", "count"), "bool": ("any", "all", "count"),
                       "int": ("max", "sum", "min")}[base.kind]
                fn = draw(st.sampled_from(fns))
                self.choices.append(_C(f"d{i}_{base.name}", "derived", g, (fn,), derived="value", base=base,
                                       via=f"ar_{base.name}_{i}"))

    def space_with(self, c: _C) -> int:
        n = 1
        for x in [*self.choices, c]:
            if x.derived is not None:
                continue
            per = len(x.values) ** (x.length or 1)
            owners = len(self.ranks) if x.scope == "rank" else max(1, len(x.gs))
            n *= per ** owners
        return n

    def emit_declarations(self) -> None:
        for c in self.choices:
            scope = c.scope
            if c.derived == "gathers":
                assert c.base is not None
                self.b.choice(c.name, scope=scope, gathers=c.base.name, via=c.via)
            elif c.derived == "value":
                assert c.base is not None
                fn = c.values[0]
                base = c.base
                if base.kind == "symbol":
                    inner = f"{base.name} != {base.values[0]}" if fn != "all" else f"{base.name} == {base.values[-1]}"
                else:
                    inner = base.name
                self.b.choice(c.name, scope=scope, value=f"{fn}({inner})", via=c.via)
            elif c.kind == "int":
                self.b.choice(c.name, scope=scope, range=(min(c.values), max(c.values)), via=c.via)
            else:
                self.b.choice(c.name, scope=scope, values=list(c.values), length=c.length, via=c.via)

    def prelude(self) -> None:
        """The collectives the via choices come out of, first on every member."""
        for c in self.choices:
            if c.via is None or c.group is None:
                continue
            members = self.groups[c.group]
            for r in members:
                rb = self.b.rank(r)
                if c.derived == "gathers":
                    rb.all_gather(c.group, stream="s0", name=c.via)
                elif c.derived == "value":
                    rb.all_reduce(c.group, stream="s0", name=c.via)
                else:
                    rb.broadcast(c.group, members[0], stream="s0", name=c.via)

    # ---- actions; each returns the ops it added
    def maybe_local_guard(self, r: int, p: int = 2) -> str | None:
        """A guard over anything rank ``r`` holds; none at all one time in
        ``p + 1`` (``p`` = -1: always one)."""
        pool = [c for c in self.choices if self.holds(c, r)]
        if not pool or (p >= 0 and self.draw(st.integers(0, p)) == 0):
            return None
        return self.guard(pool)

    def compute(self) -> int:
        draw = self.draw
        r = draw(st.sampled_from(self.ranks))
        when = self.maybe_local_guard(r)
        writes: dict[str, str | None] | None = {"x": draw(st.sampled_from(VALUES))} if draw(st.booleans()) else None
        reads: dict[str, str | None] | None = ({"x": draw(st.sampled_from(VALUES))} if draw(st.integers(0, 2)) == 0
                                               else None)
        self.b.rank(r).compute("k", stream=draw(st.sampled_from(("s0", "s1"))), reads=reads, writes=writes,
                               when=when, **self.meta())
        return 1

    def meta(self) -> dict[str, Any]:
        """Sometimes decode-phase metadata (steps, a sequence, a sampling op),
        for the phase property."""
        draw = self.draw
        if draw(st.integers(0, 2)) != 0:
            return {}
        m: dict[str, Any] = {"phase": "decode", "step": draw(st.integers(0, 1))}
        if draw(st.booleans()):
            m["seqs"] = [0]
        if draw(st.integers(0, 2)) == 0:
            m["sample"] = True
        return m

    def put(self) -> int:
        """A one-sided put with a signal and its wait_signal (the puts are
        cross-rank ops too), under one guard (uniform or, wild, rank-local on
        one side), then a read of what it wrote."""
        draw = self.draw
        src, dst = draw(st.permutations(self.ranks))[:2]
        uniform = self.uniform_on(sorted((src, dst)))
        when = self.guard(uniform) if bool(uniform) and draw(st.booleans()) else None
        w_when = when
        if not self.tidy and draw(st.booleans()):
            w_when = self.maybe_local_guard(dst, p=1)
        self.events += 1
        sig = f"sg{self.events}"
        v = draw(st.sampled_from(VALUES))
        self.b.rank(src).put(dst, stream="s0", reads={"x": "a"}, writes={"y": v}, signal=sig, when=when)
        self.b.rank(dst).wait_signal(src, sig, stream="s1", when=w_when)
        self.b.rank(dst).compute("use", stream="s1", reads={"y": v}, **self.meta())
        return 3

    def record_wait(self) -> int:
        """A write on s0, a record, a wait on s1 and a read there: the wait
        guarded like the record (or unguarded with the record unguarded);
        sometimes the wait is guarded and the record not (the read may then
        race with the write)."""
        draw = self.draw
        r = draw(st.sampled_from(self.ranks))
        self.events += 1
        ev = f"e{self.events}"
        g = self.maybe_local_guard(r, p=1)
        pick = draw(st.integers(0, 2))
        rec_when, wait_when = (g, g) if pick == 0 else (None, g) if pick == 1 else (None, None)
        v = draw(st.sampled_from(VALUES))
        rb = self.b.rank(r)
        rb.compute("w", stream="s0", writes={"y": v}, when=self.maybe_local_guard(r, p=3))
        rb.record(ev, stream="s0", when=rec_when)
        rb.wait(ev, stream="s1", when=wait_when)
        rb.compute("r", stream="s1", reads={"y": v}, **self.meta())
        return 4

    def race(self) -> int:
        draw = self.draw
        r = draw(st.sampled_from(self.ranks))
        rb = self.b.rank(r)
        rb.compute("w", stream="s0", writes={"x": "a"}, when=self.maybe_local_guard(r))
        rb.compute("r", stream="s1", reads={"x": "a"}, when=self.maybe_local_guard(r))
        return 2

    def collective(self) -> int:
        draw = self.draw
        g = draw(st.sampled_from(sorted(self.groups)))
        members = self.groups[g]
        uniform = self.uniform_on(members)
        mode = draw(st.sampled_from(("none", "uniform", "uniform") if self.tidy
                                    else ("none", "uniform", "local", "one")))
        guards: dict[int, str | None] = {r: None for r in members}
        if mode == "uniform" and uniform:
            # one text on every member: a gathered ref names the same member everywhere
            text = self.guard(uniform)
            guards = {r: text for r in members}
        elif mode == "local" and self.local(members[0]):
            text = self.guard(self.local(members[0]))
            guards = {r: text for r in members}
        elif mode == "one":
            r = draw(st.sampled_from(members))
            guards[r] = self.maybe_local_guard(r, p=1)
        smode = draw(st.sampled_from(("none", "int", "uniform", "local")))
        if self.tidy and smode == "local":
            smode = "uniform"
        sizes: dict[int, Any] = {r: None for r in members}
        ints_u = self.int_choices(uniform)
        ints_l = self.int_choices(self.local(members[0]))
        if smode == "int":
            sizes = {r: 8 for r in members}
        elif smode == "uniform" and ints_u:
            text = self.size_expr(draw(st.sampled_from(ints_u)))
            sizes = {r: text for r in members}
        elif smode == "local" and ints_l:
            text = self.size_expr(draw(st.sampled_from(ints_l)))
            sizes = {r: text for r in members}
        kind = draw(st.sampled_from(("all_reduce", "all_reduce", "broadcast", "all_gather", "barrier")))
        counts: Any = None  # expressions over gathered choices (the builder takes them as given)
        gathered_ints = [c for c in self.int_choices(uniform) if c.derived == "gathers"
                         and set(self.groups[c.group or ""]) >= set(members)]
        if kind == "all_gather" and gathered_ints and draw(st.booleans()):
            c = draw(st.sampled_from(gathered_ints))
            counts = [f"{c.name}@{m}" for m in members]
        root = draw(st.sampled_from(members))
        for r in members:
            rb = self.b.rank(r)
            stream = draw(st.sampled_from(("s0", "s0", "s1")))
            if kind == "broadcast":
                rb.broadcast(g, root, stream=stream, size=sizes[r], when=guards[r])
            elif kind == "all_gather":
                rb.all_gather(g, stream=stream, size=None if counts else sizes[r], counts=counts, when=guards[r])
            elif kind == "barrier":
                rb.barrier(g, stream=stream, when=guards[r])
            else:
                rb.all_reduce(g, stream=stream, size=sizes[r], when=guards[r])
        return len(members)

    def p2p(self) -> int:
        draw = self.draw
        src, dst = draw(st.permutations(self.ranks))[:2]
        pair = sorted((src, dst))
        uniform = self.uniform_on(pair)
        gathered = [c for c in self.choices if c.derived == "gathers" and c.group is not None
                    and {src, dst} <= set(self.groups[c.group])]
        mode = draw(st.sampled_from(("none", "uniform", "gathered", "gathered") if self.tidy
                                    else ("none", "uniform", "gathered", "send-only", "both-local")))
        s_when = r_when = None
        s_size: Any = None
        r_size: Any = None
        if mode == "uniform" and uniform:
            s_when = r_when = self.guard(uniform)
        elif mode == "gathered" and gathered:
            c = draw(st.sampled_from(gathered))
            assert c.base is not None
            s_when = self.atom(c.base, c.base.name)
            # the receiver reads the sender's value through the gather: the same atom on c@src
            r_when = s_when.replace(c.base.name, f"{c.name}@{src}", 1)
        elif mode == "send-only":
            s_when = self.maybe_local_guard(src, p=-1)
        elif mode == "both-local":
            s_when = self.maybe_local_guard(src, p=-1)
            r_when = self.maybe_local_guard(dst, p=-1)
        smode = draw(st.sampled_from(("none", "int", "uniform", "gathered", "local")))
        if self.tidy and smode == "local":
            smode = "gathered"
        ints_g = [c for c in gathered if c.base is not None and c.base.kind == "int"]
        if smode == "int":
            s_size = r_size = 8
        elif smode == "uniform" and self.int_choices(uniform):
            s_size = r_size = self.size_expr(draw(st.sampled_from(self.int_choices(uniform))))
        elif smode == "gathered" and ints_g:
            c = draw(st.sampled_from(ints_g))
            assert c.base is not None
            s_size = self.size_expr(c.base, c.base.name)
            r_size = s_size.replace(c.base.name, f"{c.name}@{src}")
        elif smode == "local" and self.int_choices(self.local(src)):
            c = draw(st.sampled_from(self.int_choices(self.local(src))))
            s_size = r_size = self.size_expr(c, c.name)
        carried = draw(st.sampled_from(VALUES))
        self.b.rank(src).send(dst, stream=draw(st.sampled_from(("s0", "s1"))), size=s_size, reads={"x": carried},
                              when=s_when)
        self.b.rank(dst).recv(src, stream=draw(st.sampled_from(("s0", "s1"))), size=r_size, writes={"y": carried},
                              when=r_when)
        return 2

    def crossed(self) -> int:
        """Two ranks send to each other before receiving (a hang when sends
        block), under one uniform guard (or none)."""
        draw = self.draw
        a, c = draw(st.permutations(self.ranks))[:2]
        uniform = self.uniform_on(sorted((a, c)))
        when = self.guard(uniform) if bool(uniform) and draw(st.booleans()) else None
        send_first = draw(st.booleans())
        for me, other in ((a, c), (c, a)):
            rb = self.b.rank(me)
            if send_first or me == a:
                rb.send(other, stream="s0", when=when)
                rb.recv(other, stream="s0", when=when)
            else:
                rb.recv(other, stream="s0", when=when)
                rb.send(other, stream="s0", when=when)
        return 4


ACTIONS = ("compute", "compute", "record_wait", "race", "collective", "collective", "p2p", "p2p", "p2p", "crossed",
           "crossed", "put")


@st.composite
def choice_schedules(draw: st.DrawFn, max_space: int = 200, max_ops: int = 16, max_ranks: int = 4) -> Schedule:
    """A small random schedule with choices (see the module docstring).

    Its space has at most ``max_space`` assignments, it has at most about
    ``max_ops`` ops after the prelude collectives, on 2 to ``max_ranks``
    (at most 4) ranks, and every assignment selects a valid plain schedule.
    """
    n = draw(st.integers(2, max(2, min(4, max_ranks))))
    ranks = list(range(n))
    groups: dict[str, list[int]] = {"all": ranks}
    if n >= 3 and draw(st.booleans()):
        groups["sub"] = sorted(draw(st.permutations(ranks))[:2])
    elif n == 4 and draw(st.booleans()):  # two disjoint groups: a choice may be scoped to both (one value each)
        groups["lo"], groups["hi"] = [0, 1], [2, 3]
    tidy = draw(st.integers(0, 4)) < 2
    b = ScheduleBuilder("choices", p2p=draw(st.sampled_from(P2P_MODES)), description="tidy" if tidy else "wild")
    for g, ms in groups.items():
        b.group(g, ms)
    b.buffer("x")
    b.buffer("y")
    b.init("x", "a")
    b.init("y", "a")
    gen = _Gen(draw, ranks, groups, b, tidy=tidy)
    gen.declare(max_space)
    gen.emit_declarations()
    for r in ranks:
        b.rank(r)
    gen.prelude()
    budget = max_ops
    for _ in range(draw(st.integers(2, 6))):
        if budget <= 0:
            break
        budget -= getattr(gen, draw(st.sampled_from(ACTIONS)))()
    try:
        s = b.build()
    except ScheduleError as exc:  # a draw this generator should not make: show it
        raise AssertionError(f"the generator built an invalid schedule: {exc}\n{b.to_dict()}") from exc
    assert space_size(s.choices, s.ranks) <= max_space
    for a in all_assignments(s.choices, s.ranks):
        try:
            select(s, a)
        except ScheduleError:
            assume(False)
    return s


def tidy_share_hint() -> str:
    """How often the draws are tidy (for a test's message)."""
    return "2 in 5 schedules are drawn tidy (communication guards uniform or gathered)"
