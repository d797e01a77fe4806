"""The admissible executions of a matched schedule, as precedence edges
(runtime model v2: docs/semantics.md gives every rule with its source).

Time points: ``start(o) = 2*o``, ``end(o) = 2*o + 1``; then one extra point
per collective instance (the moment the last member has arrived) and one per
group call (the moment every part has started).  An edge ``(u, v, strict)``
means ``t(u) < t(v)`` (strict) or ``t(u) <= t(v)``.  Every constraint between
real events is strict: an execution is an interleaving of start and end
events (DESIGN.md section 2, with ties broken).

Every edge has a *class*:

* ``DATA``: holds in every run, whatever the message sizes;
* ``MESSAGE``: holds only when a message blocks (larger than the transport's
  buffer): a send waiting for its recv, a broadcast root for its members;
* ``PROGRESS``: holds only when NCCL does not run two communicators' kernels
  side by side.

The schedule's settings decide which class a rule's edge gets (``p2p`` =
rendezvous makes message edges data, eager drops them; ``progress`` =
concurrent drops progress edges).  ``deadlock`` is decided on every edge;
``dataflow``, ``race`` and ``phase`` on :attr:`Precedence.data` alone.

The rules (the ``why`` of an edge, in :data:`WHY`):

* ``op``        start(o) < end(o)
* ``stream``    consecutive units on a stream: every part of a ends before
                every part of b starts (a unit is an op or a group call)
* ``batch``     a group call is one node: every part starts before any ends
* ``event``     end(record) < end(wait)
* ``p2p``       start(send) < end(recv)                       (data)
* ``p2p-block`` start(recv) < end(send)                       (message)
* ``coll``      all-to-all-style collectives: start(a) < end(b), all pairs
* ``root``      broadcast/scatter: start(root) < end(m); reduce/gather:
                start(m) < end(root)                          (data)
* ``coll-block`` rooted collectives, all pairs                (message)
* ``comm``      consecutive units of one communicator on a rank (NCCL runs
                them in issue order, whatever the stream)     (data)
* ``progress``  consecutive communication units of different
                communicators on a rank                        (progress)
* ``signal``    end(put) < end(wait_signal)                    (data)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from ..ir import Kind, Op, Schedule
from ..ir.ops import COMM_KINDS, HOST_STREAM
from .matching import Matching
from .memo import shared


def start(o: int) -> int:
    return 2 * o


def end(o: int) -> int:
    return 2 * o + 1


DATA, MESSAGE, PROGRESS = 0, 1, 2
CLASSES = ("data", "message", "progress")


class Edge(NamedTuple):
    """``t(u) < t(v)`` (strict) or ``<=``; ``why`` names the rule (see
    :data:`WHY`); ``a`` and ``b`` are the op ids it relates (for messages);
    ``cls`` its class (``DATA``, ``MESSAGE``, ``PROGRESS``).  A named tuple:
    schedules have millions of edges."""

    u: int
    v: int
    strict: bool
    why: str
    a: int
    b: int
    cls: int = DATA


WHY = ("op", "stream", "event", "p2p", "coll", "batch", "p2p-block", "root", "coll-block", "comm", "progress",
       "signal", "host", "sync", "alloc")
_W = {w: i for i, w in enumerate(WHY)}


@dataclass(frozen=True, eq=False)
class Precedence:
    """The edges as parallel columns (numpy int64 arrays; ``why`` indexes
    :data:`WHY`, ``cls`` is the edge class).  ``edges`` gives them as
    :class:`Edge` tuples, made on first use: the graph engine reads the
    columns alone.  ``chains`` are the totally ordered chains of ops (op id
    arrays) the graph engine keeps vector clocks over: each stream, with the
    parts of group calls (which are not ordered among themselves) spread over
    extra chains.  Points from ``instance_base`` on are aux points."""

    n_ops: int
    n_points: int
    u: np.ndarray
    v: np.ndarray
    strict: np.ndarray
    why: np.ndarray
    a: np.ndarray
    b: np.ndarray
    cls: np.ndarray
    instance_point: tuple[int, ...]  # aux point of each matched instance
    chains: tuple[np.ndarray, ...] = ()

    def op_of(self, point: int) -> int | None:
        return point // 2 if point < 2 * self.n_ops else None

    @cached_property
    def edges(self) -> tuple[Edge, ...]:
        why = [WHY[w] for w in self.why.tolist()]
        return tuple(map(Edge, self.u.tolist(), self.v.tolist(), self.strict.tolist(), why,
                         self.a.tolist(), self.b.tolist(), self.cls.tolist()))

    @property
    def instance_base(self) -> int:
        """The first aux point: every point from here on is one."""
        return 2 * self.n_ops

    @property
    def n_edges(self) -> int:
        return len(self.u)

    @cached_property
    def has_blocking(self) -> bool:
        return bool(np.any(self.cls != DATA))

    @cached_property
    def data(self) -> Precedence:
        """The data edges alone (``self`` when there is no other edge): the
        executions every message size and every kernel co-scheduling admit."""
        if not self.has_blocking:
            return self
        keep = self.cls == DATA
        return Precedence(self.n_ops, self.n_points, self.u[keep], self.v[keep], self.strict[keep],
                          self.why[keep], self.a[keep], self.b[keep], self.cls[keep], self.instance_point,
                          self.chains)


class _Cols:
    """Edge columns under construction."""

    def __init__(self) -> None:
        self.u: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.strict: list[np.ndarray] = []
        self.why: list[np.ndarray] = []
        self.a: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        self.cls: list[np.ndarray] = []
        # single edges, gathered in Python lists and added in one go
        self.pu: list[int] = []
        self.pv: list[int] = []
        self.ps: list[bool] = []
        self.pw: list[int] = []
        self.pa: list[int] = []
        self.pb: list[int] = []
        self.pc: list[int] = []

    def add(self, u: np.ndarray, v: np.ndarray, is_strict: bool | np.ndarray, why: str, a: np.ndarray,
            b: np.ndarray, cls: int = DATA) -> None:
        if cls < 0 or not len(u):
            return
        self.u.append(np.asarray(u, dtype=np.int64))
        self.v.append(np.asarray(v, dtype=np.int64))
        if isinstance(is_strict, np.ndarray):
            self.strict.append(is_strict)
        else:
            self.strict.append(np.full(len(u), is_strict, dtype=bool))
        self.why.append(np.full(len(u), _W[why], dtype=np.int8))
        self.a.append(np.asarray(a, dtype=np.int64))
        self.b.append(np.asarray(b, dtype=np.int64))
        self.cls.append(np.full(len(u), cls, dtype=np.int8))

    def one(self, u: int, v: int, strict: bool, why: str, a: int, b: int, cls: int = DATA) -> None:
        if cls < 0:
            return
        self.pu.append(u)
        self.pv.append(v)
        self.ps.append(strict)
        self.pw.append(_W[why])
        self.pa.append(a)
        self.pb.append(b)
        self.pc.append(cls)

    def flush(self) -> None:
        if self.pu:
            self.u.append(np.array(self.pu, dtype=np.int64))
            self.v.append(np.array(self.pv, dtype=np.int64))
            self.strict.append(np.array(self.ps, dtype=bool))
            self.why.append(np.array(self.pw, dtype=np.int8))
            self.a.append(np.array(self.pa, dtype=np.int64))
            self.b.append(np.array(self.pb, dtype=np.int64))
            self.cls.append(np.array(self.pc, dtype=np.int8))
            for lst in (self.pu, self.pv, self.ps, self.pw, self.pa, self.pb, self.pc):
                lst.clear()

    def columns(self) -> tuple[np.ndarray, ...]:
        self.flush()

        def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

        return (cat(self.u, np.int64), cat(self.v, np.int64), cat(self.strict, bool), cat(self.why, np.int8),
                cat(self.a, np.int64), cat(self.b, np.int64), cat(self.cls, np.int8))


def _column(pairs: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> np.ndarray:
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def message_class(mode: str) -> int:
    """The class a message-blocking edge gets under a p2p mode (-1: dropped)."""
    return MESSAGE if mode == "any" else DATA if mode == "rendezvous" else -1


def _mode(s: Schedule, ops: list[Op]) -> str:
    """A message's mode: the per-op override on either side, else the
    schedule's.  Two sides that contradict each other (one says eager, the
    other rendezvous) assert nothing: the message is "any" (its blocking edge
    counts for deadlock and not for dataflow, race or phase)."""
    modes = {op.p2p for op in ops if op.p2p is not None}
    if len(modes) > 1:
        return "any"
    return modes.pop() if modes else s.p2p


Unit = tuple[int, ...]  # the op ids of one unit: an op, or the parts of a group call


def stream_units(s: Schedule) -> dict[tuple[int, str], list[Unit]]:
    """Each stream's units in stream order: single ops, and group calls
    (consecutive ops with one ``batch`` id) as one unit."""
    out: dict[tuple[int, str], list[Unit]] = {}
    for key, ops in s.streams.items():
        units: list[Unit] = []
        cur: list[int] = []
        cur_batch: str | None = None
        for op in ops:
            if op.batch is not None and op.batch == cur_batch:
                cur.append(op.id)
                continue
            if cur:
                units.append(tuple(cur))
            cur, cur_batch = [op.id], op.batch
        if cur:
            units.append(tuple(cur))
        out[key] = units
    return out


@shared
def build_precedence(s: Schedule, m: Matching) -> Precedence:
    n = len(s.ops)
    cols = _Cols()
    ops_a = np.arange(n, dtype=np.int64)
    cols.add(2 * ops_a, 2 * ops_a + 1, True, "op", ops_a, ops_a)
    batched = "batch" in s.features
    aux = 2 * n  # the next aux point
    chains: list[np.ndarray] = []
    if not batched:
        chains = [np.fromiter([op.id for op in st], dtype=np.int64, count=len(st)) for st in s.streams.values()]
        ids = np.concatenate(chains) if chains else np.zeros(0, dtype=np.int64)
        last = np.cumsum([len(c) for c in chains]) - 1 if chains else np.zeros(0, dtype=np.int64)
        keep = np.ones(len(ids), dtype=bool)
        keep[last] = False  # the last op of a stream has no successor on it
        first_ids, next_ids = ids[keep], ids[np.flatnonzero(keep) + 1]
        cols.add(2 * first_ids + 1, 2 * next_ids, True, "stream", first_ids, next_ids)
        batch_points: list[tuple[int, Unit]] = []
    else:
        batch_points = []
        for units in stream_units(s).values():
            main: list[int] = []
            extra: list[list[int]] = []
            for prev, nxt in zip(units, units[1:], strict=False):
                for a in prev:
                    for b in nxt:
                        cols.one(2 * a + 1, 2 * b, True, "stream", a, b)
            for unit in units:
                main.append(unit[0])
                for j, o in enumerate(unit[1:]):
                    while len(extra) <= j:
                        extra.append([])
                    extra[j].append(o)
                if len(unit) > 1:
                    batch_points.append((aux, unit))
                    aux += 1
            chains.append(np.array(main, dtype=np.int64))
            chains.extend(np.array(c, dtype=np.int64) for c in extra)
        for point, unit in batch_points:  # start(p) <= G < end(q): every part starts before any ends
            for o in unit:
                cols.one(2 * o, point, False, "batch", o, o)
                cols.one(point, 2 * o + 1, True, "batch", o, o)
    ev = _column(m.events)
    cols.add(2 * ev[:, 0] + 1, 2 * ev[:, 1] + 1, True, "event", ev[:, 0], ev[:, 1])
    sig = _column(m.signals)
    cols.add(2 * sig[:, 0] + 1, 2 * sig[:, 1] + 1, True, "signal", sig[:, 0], sig[:, 1])

    # point to point: data start(send) < end(recv); message start(recv) < end(send)
    pr = _column(m.pairs)
    cols.add(2 * pr[:, 0], 2 * pr[:, 1] + 1, True, "p2p", pr[:, 0], pr[:, 1])
    overrides = "override" in s.features
    if not overrides:
        cols.add(2 * pr[:, 1], 2 * pr[:, 0] + 1, True, "p2p-block", pr[:, 1], pr[:, 0], message_class(s.p2p))
    else:
        for a, b in m.pairs:
            cls = message_class(_mode(s, [s.ops[a], s.ops[b]]))
            cols.one(2 * b, 2 * a + 1, True, "p2p-block", b, a, cls)

    # collectives
    inst_points: list[int] = []
    sym_members: list[tuple[int, ...]] = []
    sym_points: list[int] = []
    for inst in m.instances:
        point = aux
        aux += 1
        inst_points.append(point)
        first = s.ops[inst.ops[0]]
        if not first.kind.is_rooted:
            sym_members.append(inst.ops)
            sym_points.append(point)
            continue
        root = next(o for o in inst.ops if s.ops[o].rank == first.root)
        for o in inst.ops:
            if o == root:
                continue
            if first.kind in (Kind.BROADCAST, Kind.SCATTER):  # a pipeline from the root
                cols.one(2 * root, 2 * o + 1, True, "root", root, o)
            else:  # reduce, gather: into the root
                cols.one(2 * o, 2 * root + 1, True, "root", o, root)
        cls = message_class(_mode(s, [s.ops[o] for o in inst.ops]))
        for o in inst.ops:
            cols.one(2 * o, point, False, "coll-block", o, o, cls)
            cols.one(point, 2 * o + 1, True, "coll-block", o, o, cls)
    if sym_members:
        mem = np.fromiter([o for ms in sym_members for o in ms], dtype=np.int64)
        pts = np.repeat(np.array(sym_points, dtype=np.int64), [len(ms) for ms in sym_members])
        # start(m) <= arrive(I) (not strict), then arrive(I) < end(m), member by member
        u2 = np.stack([2 * mem, pts], axis=1).reshape(-1)
        v2 = np.stack([pts, 2 * mem + 1], axis=1).reshape(-1)
        st2 = np.tile(np.array([False, True]), len(mem))
        m2 = np.repeat(mem, 2)
        cols.add(u2, v2, st2, "coll", m2, m2)

    _communicator_edges(s, cols)
    if "host" in s.features:
        _host_edges(s, cols)
    u, v, strict, why, a_c, b_c, cls_c = cols.columns()
    # aux points: the group calls' first, then the instances' (allocated in that order)
    return Precedence(n, aux, u, v, strict, why, a_c, b_c, cls_c, tuple(inst_points), tuple(chains))


def _communicator_edges(s: Schedule, cols: _Cols) -> None:
    """NCCL's order on one rank: consecutive communication units of one
    communicator run in issue order, whatever their streams (data); between
    consecutive units of different communicators, a progress edge.  An edge
    that stream order already implies (both ops on one stream) is left out."""
    progress = PROGRESS if s.progress == "any" else -1
    comm_kinds, host = COMM_KINDS, HOST_STREAM
    one = cols.one
    batched = "batch" in s.features
    for r in s.ranks:
        # NCCL's rules: not for host (gloo, CPU) communication, which the host runs in issue order anyway
        comm_ops = [op for op in s.by_rank[r] if op.kind in comm_kinds and op.stream != host]
        if not batched:  # every unit is one op on one communicator: the loop below, without the units
            last_on: dict[str, Op] = {}  # communicator -> its last op so far
            prev: Op | None = None  # the last op (unit) so far
            for b in comm_ops:
                c = b.communicator
                if c is None:
                    continue
                a = last_on.get(c)
                last_on[c] = b
                if a is not None and a.stream != b.stream:
                    one(2 * a.id + 1, 2 * b.id, True, "comm", a.id, b.id, DATA)
                if prev is not None and a is not prev and progress >= 0 and prev.stream != b.stream:
                    one(2 * prev.id + 1, 2 * b.id, True, "progress", prev.id, b.id, progress)
                prev = b
            continue
        units: list[tuple[list[Op], frozenset[str]]] = []
        for op in comm_ops:
            c = op.communicator
            if c is None:
                continue
            if op.batch is not None and units and units[-1][0][-1].batch == op.batch:
                parts, comms = units[-1]
                parts.append(op)
                units[-1] = (parts, comms | {c})
            else:
                units.append(([op], frozenset((c,))))
        last_of: dict[str, int] = {}  # communicator -> index of its last unit
        for i, (parts, comms) in enumerate(units):
            if len(parts) == 1:  # one op on one communicator (the usual unit): the same edges, in line
                b = parts[0]
                (c,) = comms
                j = last_of.get(c)
                last_of[c] = i
                if j is not None:
                    for a in units[j][0]:
                        if a.stream != b.stream:
                            one(2 * a.id + 1, 2 * b.id, True, "comm", a.id, b.id, DATA)
                if i and j != i - 1 and progress >= 0:
                    for a in units[i - 1][0]:
                        if a.stream != b.stream:
                            one(2 * a.id + 1, 2 * b.id, True, "progress", a.id, b.id, progress)
                continue
            done: set[int] = set()
            for c in comms:
                j = last_of.get(c)
                if j is not None and j not in done:
                    done.add(j)
                    _unit_edges(cols, units[j][0], parts, "comm", DATA)
                last_of[c] = i
            if i and (i - 1) not in done:
                _unit_edges(cols, units[i - 1][0], parts, "progress", progress)


def _unit_edges(cols: _Cols, before: list[Op], after: list[Op], why: str, cls: int) -> None:
    if cls < 0:
        return
    for a in before:
        for b in after:
            if a.stream != b.stream:
                cols.one(2 * a.id + 1, 2 * b.id, True, why, a.id, b.id, cls)


def _host_edges(s: Schedule, cols: _Cols) -> None:
    """The host thread (docs/semantics.md, "The host"):

    * host work (an op on the ``host`` stream) runs at its place in issue
      order: every op issued after it starts after it ends (one edge into the
      next op issued on each stream; stream order does the rest);
    * a host ``sync`` ends after what it waits for: the latest record of its
      event (a matching edge), the last op issued before it on its ``target``
      stream, the latest op named ``of``, or every stream's last op (device);
    * an ``alloc`` that reuses a block freed after ``record_stream(s)`` ends
      after the work issued on ``s`` before that free (the caching allocator
      hands the block out only once that work has finished)."""
    for r in s.ranks:
        last_host: list[Op] = []  # the last host unit (a group call on the host: every part)
        applied: dict[str, int] = {}  # stream -> id of the host unit's first op whose barrier it has
        last_on: dict[str, list[Op]] = {}  # stream -> its last unit issued so far (a group call: every part)
        by_name: dict[str, list[Op]] = {}  # name -> the unit of the latest op so named (a group call: all parts)
        marks: dict[str, list[str]] = defaultdict(list)  # buffer -> the streams record_stream marked
        frees: dict[str, list[Op]] = {}
        for op in s.by_rank[r]:
            st = op.stream
            prev = last_on.get(st)
            same_call = op.batch is not None and prev is not None and prev[-1].batch == op.batch
            if st != HOST_STREAM:
                # every part of a group call waits for the host work issued before the call
                if last_host and (applied.get(st) != last_host[0].id or same_call):
                    for h in last_host:
                        cols.one(2 * h.id + 1, 2 * op.id, True, "host", h.id, op.id)
                    applied[st] = last_host[0].id
            else:
                k = op.kind
                targets: list[Op] = []
                if k is Kind.SYNC and op.event is None:
                    if op.target is not None:
                        targets = list(last_on.get(op.target, ()))
                    elif op.of is not None:
                        targets = list(by_name.get(op.of, ()))
                    else:  # torch.cuda.synchronize(): every stream of the device
                        targets = [t for k2, unit in last_on.items() if k2 != HOST_STREAM for t in unit]
                elif k is Kind.RECORD_STREAM and op.target is not None:
                    marks[op.buffer or ""].append(op.target)
                elif k is Kind.FREE:  # the allocator records an event on each marked stream at the free
                    frees[op.buffer or ""] = [t for m in marks.get(op.buffer or "", ()) for t in last_on.get(m, ())]
                elif k is Kind.ALLOC and op.reuses is not None:
                    targets = frees.get(op.reuses, [])
                why = "alloc" if k is Kind.ALLOC else "sync"
                for t in targets:
                    if t.stream != HOST_STREAM:
                        cols.one(2 * t.id + 1, 2 * op.id + 1, True, why, t.id, op.id)
                if not same_call:
                    last_host = []
                last_host.append(op)
            if same_call:
                assert prev is not None
                prev.append(op)
            else:
                last_on[st] = [op]
            if op.name:
                by_name[op.name] = last_on[st]
