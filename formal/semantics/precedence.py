"""The admissible executions of a matched schedule, as precedence edges.

Time points: ``start(o) = 2*o``, ``end(o) = 2*o + 1``; one extra point per
collective instance (the moment the last member has arrived).  An edge
``(u, v, strict)`` means ``t(u) < t(v)`` (strict) or ``t(u) <= t(v)``.
Every constraint between real events is strict: an execution is then
exactly an interleaving of start and end events (DESIGN.md section 2, with
ties broken), and the engine and the executor agree on what a run is.

* an op takes time:            start(o) < end(o)
* stream order:                end(a) < start(b) for consecutive a, b
* events:                      end(record) < end(wait)
* rendezvous p2p:              start(send) < end(recv), start(recv) < end(send)
  (eager sends drop the second)
* collective instance I:       start(m) <= arrive(I) < end(m') for all members
  which is ``start(m) < end(m')`` for every pair, in linear size.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from ..ir import Schedule
from .matching import Matching


def start(o: int) -> int:
    return 2 * o


def end(o: int) -> int:
    return 2 * o + 1


class Edge(NamedTuple):
    """``t(u) < t(v)`` (strict) or ``<=``; ``why`` is "op", "stream", "event",
    "p2p" or "coll"; ``a`` and ``b`` are the op ids it relates (for messages).
    A named tuple: schedules have millions of edges."""

    u: int
    v: int
    strict: bool
    why: str
    a: int
    b: int


WHY = ("op", "stream", "event", "p2p", "coll")


@dataclass(frozen=True, eq=False)
class Precedence:
    """The edges as parallel columns (numpy int64 arrays; ``why`` indexes
    :data:`WHY`), in a fixed order: op edges, stream edges, events, p2p, then
    each collective instance's edges.  ``edges`` gives them as :class:`Edge`
    tuples, made on first use: the graph engine reads the columns alone."""

    n_ops: int
    n_points: int
    u: np.ndarray
    v: np.ndarray
    strict: np.ndarray
    why: np.ndarray
    a: np.ndarray
    b: np.ndarray
    instance_point: tuple[int, ...]  # aux point of each matched instance

    def op_of(self, point: int) -> int | None:
        return point // 2 if point < 2 * self.n_ops else None

    @cached_property
    def edges(self) -> tuple[Edge, ...]:
        why = [WHY[w] for w in self.why.tolist()]
        return tuple(map(Edge, self.u.tolist(), self.v.tolist(), self.strict.tolist(), why,
                         self.a.tolist(), self.b.tolist()))

    @property
    def instance_base(self) -> int:
        """The first instance point: every point from here on is one."""
        return 2 * self.n_ops

    @property
    def n_edges(self) -> int:
        return len(self.u)


def _column(pairs: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> np.ndarray:
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def build_precedence(s: Schedule, m: Matching) -> Precedence:
    n = len(s.ops)
    us: list[np.ndarray] = []
    vs: list[np.ndarray] = []
    strict: list[np.ndarray] = []
    why: list[np.ndarray] = []
    a_s: list[np.ndarray] = []
    b_s: list[np.ndarray] = []

    def add(u: np.ndarray, v: np.ndarray, is_strict: bool, code: int, a: np.ndarray, b: np.ndarray) -> None:
        us.append(u)
        vs.append(v)
        strict.append(np.full(len(u), is_strict, dtype=bool))
        why.append(np.full(len(u), code, dtype=np.int8))
        a_s.append(a)
        b_s.append(b)

    ops = np.arange(n, dtype=np.int64)
    add(2 * ops, 2 * ops + 1, True, 0, ops, ops)
    chains = [np.fromiter([op.id for op in st], dtype=np.int64, count=len(st)) for st in s.streams.values()]
    ids = np.concatenate(chains) if chains else np.zeros(0, dtype=np.int64)
    last = np.cumsum([len(c) for c in chains]) - 1 if chains else np.zeros(0, dtype=np.int64)
    keep = np.ones(len(ids), dtype=bool)
    keep[last] = False  # the last op of a stream has no successor on it
    first_ids, next_ids = ids[keep], ids[np.flatnonzero(keep) + 1]
    add(2 * first_ids + 1, 2 * next_ids, True, 1, first_ids, next_ids)
    ev = _column(m.events)
    add(2 * ev[:, 0] + 1, 2 * ev[:, 1] + 1, True, 2, ev[:, 0], ev[:, 1])
    pr = _column(m.pairs)
    if s.p2p == "rendezvous":  # start(send) < end(recv) and start(recv) < end(send), pair by pair
        both = np.stack([pr, pr[:, ::-1]], axis=1).reshape(-1, 2)
        add(2 * both[:, 0], 2 * both[:, 1] + 1, True, 3, both[:, 0], both[:, 1])
    else:
        add(2 * pr[:, 0], 2 * pr[:, 1] + 1, True, 3, pr[:, 0], pr[:, 1])
    members = [inst.ops for inst in m.instances]
    inst_points = tuple(range(2 * n, 2 * n + len(members)))
    if members:
        mem = np.fromiter([o for ms in members for o in ms], dtype=np.int64)
        pts = np.repeat(np.array(inst_points, dtype=np.int64), [len(ms) for ms in members])
        # start(m) <= arrive(I) (not strict), then arrive(I) < end(m), member by member
        u2 = np.stack([2 * mem, pts], axis=1).reshape(-1)
        v2 = np.stack([pts, 2 * mem + 1], axis=1).reshape(-1)
        st2 = np.tile(np.array([False, True]), len(mem))
        m2 = np.repeat(mem, 2)
        us.append(u2)
        vs.append(v2)
        strict.append(st2)
        why.append(np.full(len(u2), 4, dtype=np.int8))
        a_s.append(m2)
        b_s.append(m2)
    return Precedence(n, 2 * n + len(members), np.concatenate(us), np.concatenate(vs), np.concatenate(strict),
                      np.concatenate(why), np.concatenate(a_s), np.concatenate(b_s), inst_points)
