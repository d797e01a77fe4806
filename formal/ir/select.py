"""The schedule one assignment runs, and the checks of a choice schedule's
guards and expressions (what must hold before any assignment is tried)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ..errors import ScheduleError
from .choices import Assignment, Choice, Evaluator, check_types, owner_of, uses
from .expr import Expr, Var, walk
from .ops import Kind, Op
from .schedule import Schedule


@dataclass(frozen=True)
class Selection:
    """The plain schedule an assignment selects; ``origin[i]`` is the id in
    the choice schedule of the selection's op ``i``."""

    schedule: Schedule
    assignment: Assignment
    origin: tuple[int, ...]


def select(s: Schedule, a: Assignment, *, check: bool = True) -> Selection:
    """Drop the ops whose guard is false under ``a``, evaluate sizes and
    counts; the result has no choices and is validated like any schedule
    (a problem names the assignment)."""
    ev = Evaluator(s.choices, s.group_map, a)
    ops: list[Op] = []
    origin: list[int] = []
    index: dict[int, int] = defaultdict(int)
    for op in s.ops:
        oc = op.choice
        fields: dict[str, object] = {}
        if oc is not None:
            try:
                if oc.when is not None and not ev.eval(oc.when, op.rank):
                    continue
                if oc.size is not None:
                    fields["size"] = _count(ev.eval(oc.size, op.rank), "size", oc.size)
                if oc.counts is not None:
                    fields["counts"] = tuple(_count(ev.eval(e, op.rank), "counts", e) for e in oc.counts)
                if oc.recv_counts is not None:
                    fields["recv_counts"] = tuple(_count(ev.eval(e, op.rank), "recv_counts", e)
                                                  for e in oc.recv_counts)
            except (ValueError, TypeError, IndexError, ZeroDivisionError, KeyError) as exc:
                raise ScheduleError(f"under {a.text()}: {exc}", f"{s.source}: {op.where}") from None
            fields["choice"] = None
        i = len(ops)
        k = index[op.rank]
        index[op.rank] = k + 1
        if not fields and op.id == i and op.index == k:
            ops.append(op)  # unchanged: shared with the choice schedule (ops are immutable)
        else:
            # what replace(op, ...) does, without re-running the frozen __init__ per op
            new = object.__new__(Op)
            d = new.__dict__
            d.update(op.__dict__)
            d.update(fields)
            d["id"] = i
            d["index"] = k
            ops.append(new)
        origin.append(op.id)
    sel = Schedule(name=s.name, ranks=s.ranks, groups=s.groups, buffers=s.buffers, ops=tuple(ops), init=s.init,
                   p2p=s.p2p, description=s.description, progress=s.progress, source=s.source,
                   selected=a.text())
    if check:
        from .validate import validate_selected
        try:
            validate_selected(sel)
        except ScheduleError as exc:
            raise ScheduleError(f"under {a.text()}: {exc.message}", exc.where, exc.hint) from None
    return Selection(sel, a, tuple(origin))


def _count(v: object, what: str, e: Expr) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{what} {e} is {v!r}, not an integer")
    if v < 0:
        raise ValueError(f"{what} {e} is {v}, a negative number")
    return v


def validate_choices(s: Schedule) -> None:
    """Every guard is a condition and every size a number; each rank uses
    only values it can hold: its own, its group's, the job's, or a gathered
    member's; a value that came out of a collective (``via``) is used only
    after the rank issued that collective."""
    by_name = {c.name: c for c in s.choices}
    gm = s.group_map
    src = s.source
    via_at: dict[tuple[str, int], int] = {}  # (choice, rank) -> index of the via op on the rank
    for c in s.choices:
        if c.via is None:
            continue
        members = gm[c.groups[0]] if c.scope == "group" else s.ranks
        for g in (c.groups or (None,)):
            for r in (gm[g] if g is not None else members):
                found = [o for o in s.by_rank[r] if o.name == c.via]
                where = f"{src}: choice {c.name!r}"
                if not found:
                    raise ScheduleError(f"via names op {c.via!r}, but rank {r} issues no op of that name", where,
                                        "name the collective that makes the value uniform (its \"name\")")
                o = found[0]
                if c.scope == "group" and not (o.kind.is_collective and o.group == g):
                    raise ScheduleError(f"via op {c.via!r} on rank {r} is {s.label(o)}, not a collective on"
                                        f" {g!r}: only a collective on a group makes a value uniform on it", where)
                if o.choice is not None and o.choice.when is not None:
                    raise ScheduleError(f"via op {c.via!r} on rank {r} has a guard: the collective that makes a"
                                        " value uniform must be issued in every run", where)
                via_at[(c.name, r)] = o.index
    for op in s.ops:
        oc = op.choice
        if oc is None:
            continue
        where = f"{src}: {op.where}"
        if not s.choices:
            raise ScheduleError("the op has a guard or an expression, but the schedule declares no \"choices\"",
                                where)
        if oc.when is not None:
            check_types(oc.when, by_name, where + ", when", want="bool")
        for e in ([oc.size] if oc.size is not None else []) + list(oc.counts or ()) + list(oc.recv_counts or ()):
            check_types(e, by_name, where, want="int")
        members = gm.get(op.group or "", ())
        for what, exprs in (("counts", oc.counts), ("recv_counts", oc.recv_counts)):
            if exprs is not None and op.group is not None and len(exprs) != len(members):
                raise ScheduleError(f"{what} has {len(exprs)} entries for the {len(members)} members of"
                                    f" {op.group!r}", where)
        for e in oc.exprs():
            _check_holder(s, by_name, e, op, where, via_at)


def _check_holder(s: Schedule, by_name: dict[str, Choice], e: Expr, op: Op, where: str,
                  via_at: dict[tuple[str, int], int]) -> None:
    gm = s.group_map
    for x in walk(e):
        if not isinstance(x, Var) or x.name not in by_name:
            continue
        c = by_name[x.name]
        try:
            owner_of(c, op.rank, gm)
        except KeyError:
            raise ScheduleError(f"uses {c.name}, which is uniform on {', '.join(c.groups)}; rank {op.rank} is in"
                                " none of them, so it holds no value of it", where) from None
        if c.derived == "gathers" and x.at is not None and x.at not in gm[c.groups[0]]:
            raise ScheduleError(f"{x}: rank {x.at} is not a member of {c.groups[0]!r}, which {c.name} gathers",
                                where)
        pos = via_at.get((c.name, op.rank))
        if pos is not None and op.index <= pos:
            raise ScheduleError(f"uses {c.name} before rank {op.rank} has issued {c.via!r}, the collective it"
                                " comes out of", where, "issue the guarded op after the collective")


def guard_vars(s: Schedule) -> set[str]:
    """The choices some guard depends on (directly or through a derived value)."""
    by_name = {c.name: c for c in s.choices}
    out: set[str] = set()
    for op in s.ops:
        if op.choice is not None and op.choice.when is not None:
            out |= uses(op.choice.when, by_name)
    return out


def is_cross_rank(op: Op) -> bool:
    """An op whose issue other ranks depend on: communication and puts."""
    return op.kind.is_comm or op.kind in (Kind.PUT, Kind.WAIT_SIGNAL)
