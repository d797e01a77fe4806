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
from typing import NamedTuple

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


@dataclass(frozen=True)
class Precedence:
    n_ops: int
    n_points: int
    edges: tuple[Edge, ...]
    instance_point: tuple[int, ...]  # aux point of each matched instance

    def op_of(self, point: int) -> int | None:
        return point // 2 if point < 2 * self.n_ops else None


def build_precedence(s: Schedule, m: Matching) -> Precedence:
    n = len(s.ops)
    edges: list[Edge] = [Edge(start(o), end(o), True, "op", o, o) for o in range(n)]
    for ops in s.streams.values():
        for a, b in zip(ops, ops[1:], strict=False):
            edges.append(Edge(end(a.id), start(b.id), True, "stream", a.id, b.id))
    for rec, wait in m.events:
        edges.append(Edge(end(rec), end(wait), True, "event", rec, wait))
    for snd, rcv in m.pairs:
        edges.append(Edge(start(snd), end(rcv), True, "p2p", snd, rcv))
        if s.p2p == "rendezvous":
            edges.append(Edge(start(rcv), end(snd), True, "p2p", rcv, snd))
    points = 2 * n
    inst_points = []
    for inst in m.instances:
        p = points
        points += 1
        inst_points.append(p)
        for o in inst.ops:
            edges.append(Edge(start(o), p, False, "coll", o, o))
            edges.append(Edge(p, end(o), True, "coll", o, o))
    return Precedence(n, points, tuple(edges), tuple(inst_points))
