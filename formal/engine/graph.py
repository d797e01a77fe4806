"""Exact decisions on the precedence graph, for what pure precedence decides.

Every constraint of an execution is an edge ``u -> v`` (``t(u) < t(v)``, or
``<=`` into a collective's arrival point).  For two op events ``x != y``:

* ``x`` precedes ``y`` in every execution  iff  there is a path ``x ~> y``
  (every such path has a strict edge);
* otherwise some execution has ``t(y) < t(x)``: adding the edge ``y -> x``
  closes no cycle.

More generally, a set of extra edges can be realised by one execution iff the
graph with them stays acyclic; each obligation below reduces to such a test,
and a violation's run is a topological order of the graph with the witness
edges added.  Reachability uses vector clocks over the streams (each stream
is a chain of events), so a query is one comparison.  Reads with several
writers of the expected value need a real choice and are left to z3.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from itertools import product

import numpy as np

from ..ir import Schedule
from ..semantics.obligations import MetaOb, OrderOb, OverlapOb, ReadOb, SampleOb
from ..semantics.precedence import Edge, Precedence, end, start

AnyOb = ReadOb | OverlapOb | OrderOb | SampleOb | MetaOb
Witness = list[tuple[int, int]]  # extra edges (u, v): t(u) < t(v)


class PrecedenceGraph:
    def __init__(self, s: Schedule, prec: Precedence) -> None:
        self.prec = prec
        n = prec.n_points
        self.succ: list[list[int]] = [[] for _ in range(n)]
        self.pred: list[list[int]] = [[] for _ in range(n)]
        for ed in prec.edges:
            self.succ[ed.u].append(ed.v)
            self.pred[ed.v].append(ed.u)
        self.order = topological_order(n, self.succ)
        self.acyclic = len(self.order) == n
        # chains: every (rank, stream) is a totally ordered chain of events
        self.chain = [-1] * n
        self.pos = [0] * n
        chains = 0
        for ops in s.streams.values():
            for i, op in enumerate(ops):
                self.chain[start(op.id)] = chains
                self.pos[start(op.id)] = 2 * i
                self.chain[end(op.id)] = chains
                self.pos[end(op.id)] = 2 * i + 1
            chains += 1
        self.n_chains = chains
        self.vc: list[np.ndarray] = []
        self.queries: list[tuple[int, int]] | None = None  # set to [] to record reach() calls
        if self.acyclic:
            self._clocks()

    def _clocks(self) -> None:
        """``vc[p][c]``: the last position on chain c that reaches p; -1 if none.

        A point whose only predecessor is the previous event on its own chain
        shares that event's row (no copy): its knowledge of other chains is
        the same, and its own chain is compared by position in ``reach``.  So
        rows are made only where a sync edge merges knowledge, and the entry
        of a row for its own chain may be stale, which ``reach`` never reads;
        when a row is merged into another, each predecessor's own position is
        written explicitly."""
        chain, pos, pred = self.chain, self.pos, self.pred
        empty = np.full(max(1, self.n_chains), -1, dtype=np.int32)
        vc: list[np.ndarray] = [empty] * self.prec.n_points
        for p in self.order:
            preds = pred[p]
            c = chain[p]
            if not preds:
                continue
            if len(preds) == 1 and c >= 0 and chain[preds[0]] == c:
                vc[p] = vc[preds[0]]
                continue
            clock = vc[preds[0]].copy()
            for q in preds[1:]:
                np.maximum(clock, vc[q], out=clock)
            for q in preds:
                cq = chain[q]
                if cq >= 0 and clock[cq] < pos[q]:
                    clock[cq] = pos[q]
            vc[p] = clock
        self.vc = vc

    def reach(self, x: int, y: int) -> bool:
        """Does op event ``x`` precede op event ``y`` in every execution?"""
        if x == y:
            return False
        if self.queries is not None:
            self.queries.append((x, y))
        cx = self.chain[x]
        if cx == self.chain[y]:
            return self.pos[x] < self.pos[y]
        return bool(self.vc[y][cx] >= self.pos[x])

    def run_order(self, extra: Witness) -> list[int] | None:
        """A topological order of the graph plus ``extra`` edges (None: cyclic)."""
        n = self.prec.n_points
        succ = self.succ
        if extra:
            succ = [list(x) for x in self.succ]
            for u, v in extra:
                succ[u].append(v)
        order = topological_order(n, succ)
        return order if len(order) == n else None

    # ------------------------------------------------------------ decisions
    def decide(self, ob: AnyOb) -> tuple[str, Witness]:
        """("proved", []), ("violated", witness edges) or ("solver", []) when
        the obligation has a real choice the graph cannot settle alone."""
        r = self.reach
        if isinstance(ob, OrderOb):
            for a in ob.before:
                for b in ob.after:
                    if not r(end(a), start(b)):
                        return "violated", [(start(b), end(a))]
            return "proved", []
        if isinstance(ob, SampleOb):
            for b in ob.after:
                if not any(r(end(g), start(b)) for g in ob.samples):
                    return "violated", [(start(b), end(g)) for g in ob.samples]
            return "proved", []
        if isinstance(ob, OverlapOb):
            a, b = ob.a, ob.b
            if r(end(a), start(b)) or r(end(b), start(a)):
                return "proved", []
            return "violated", [(start(a), end(b)), (start(b), end(a))]
        if isinstance(ob, MetaOb):
            return "violated", []
        return self._read(ob)

    def realisable(self, extra: Witness) -> bool:
        """Can one execution satisfy all the ``extra`` edges (between op
        events) at once?  Exactly when the small graph on their endpoints,
        with the extra edges and an edge wherever the schedule already orders
        two endpoints, has no cycle: a cycle of the whole graph plus the extra
        edges splits into extra edges and old paths between their endpoints."""
        nodes = sorted({x for e in extra for x in e})
        edges = list(extra)
        for x in nodes:
            for y in nodes:
                if x != y and self.reach(x, y):
                    edges.append((x, y))
        return not _has_cycle(nodes, edges)

    def _read_choices(self, ob: ReadOb) -> tuple[str, Witness]:
        """A stale read with several writers of the expected value: the value
        at the read's start is wrong iff every good write either ends after
        the read starts or is overwritten by a bad write before it (and, if
        the cell starts with the expected value, some bad write lands before
        the read).  Search the combinations of those options for one that a
        single execution realises; too many combinations go to z3."""
        sr = start(ob.read)
        options: list[list[Witness]] = []
        for g in ob.good:
            eg = end(g)
            options.append([[(sr, eg)]] + [[(eg, end(b)), (end(b), sr)] for b in ob.bad])
        if ob.init_good:
            if not ob.bad:
                return "proved", []
            options.append([[(end(b), sr)] for b in ob.bad])
        total = 1
        for opts in options:
            total *= len(opts)
        if total > MAX_CHOICES:
            return "solver", []
        for combo in product(*options):
            extra = [edge for part in combo for edge in part]
            if self.realisable(extra):
                return "violated", extra
        return "proved", []

    def _read(self, ob: ReadOb) -> tuple[str, Witness]:
        r = self.reach
        sr, er = start(ob.read), end(ob.read)
        for b in ob.bad:  # torn: a bad write lands while the read runs
            eb = end(b)
            if not r(eb, sr) and not r(er, eb):
                return "violated", [(sr, eb), (eb, er)]
        if len(ob.good) + (1 if ob.init_good else 0) > 1:
            return self._read_choices(ob)
        if ob.init_good:  # stale iff some bad write can land before the read
            for b in ob.bad:
                if not r(sr, end(b)):
                    return "violated", [(end(b), sr)]
            return "proved", []
        if not ob.good:
            return "violated", []  # nothing ever writes the expected value here
        g = end(ob.good[0])
        if not r(g, sr):
            return "violated", [(sr, g)]
        for b in ob.bad:  # overwritten between the good write and the read
            eb = end(b)
            if not r(eb, g) and not r(sr, eb):
                return "violated", [(g, eb), (eb, sr)]
        return "proved", []


MAX_CHOICES = 512


def _has_cycle(nodes: Sequence[int], edges: Sequence[tuple[int, int]]) -> bool:
    adj: dict[int, list[int]] = {x: [] for x in nodes}
    for u, v in edges:
        adj[u].append(v)
    state: dict[int, int] = {}  # 1 on the stack, 2 done

    def visit(x: int) -> bool:
        state[x] = 1
        for y in adj[x]:
            st = state.get(y, 0)
            if st == 1 or (st == 0 and visit(y)):
                return True
        state[x] = 2
        return False

    return any(state.get(x, 0) == 0 and visit(x) for x in nodes)


def topological_order(n: int, succ: Sequence[Sequence[int]], blocked: set[int] | None = None) -> list[int]:
    """Kahn's algorithm.  Points on a cycle, points in ``blocked`` and
    everything after either are left out."""
    blocked = blocked or set()
    indeg = [0] * n
    for vs in succ:
        for v in vs:
            indeg[v] += 1
    queue = deque(p for p in range(n) if indeg[p] == 0 and p not in blocked)
    order: list[int] = []
    while queue:
        p = queue.popleft()
        order.append(p)
        for q in succ[p]:
            indeg[q] -= 1
            if indeg[q] == 0 and q not in blocked:
                queue.append(q)
    return order


def times_from_order(n_points: int, order: Sequence[int]) -> tuple[int, ...]:
    times = [0] * n_points
    for i, p in enumerate(order):
        times[p] = i
    return tuple(times)


def shortest_strict_cycle(edges: Sequence[Edge]) -> list[Edge]:
    """The shortest cycle through at least one strict edge (BFS from the head
    of every strict edge back to its tail).  Such a cycle is itself a proof
    that no execution exists: it forces t < t."""
    adj: dict[int, list[Edge]] = {}
    for ed in edges:
        adj.setdefault(ed.u, []).append(ed)
    best: list[Edge] = []
    for first in edges:
        if not first.strict:
            continue
        prev: dict[int, Edge | None] = {first.v: None}
        queue = deque([first.v])
        while queue and first.u not in prev:
            x = queue.popleft()
            for ed in adj.get(x, ()):
                if ed.v not in prev:
                    prev[ed.v] = ed
                    queue.append(ed.v)
        if first.u not in prev:
            continue
        path: list[Edge] = []
        x = first.u
        while x != first.v:
            step = prev[x]
            assert step is not None
            path.append(step)
            x = step.u
        cycle = [first] + path[::-1]
        if not best or len(cycle) < len(best):
            best = cycle
            if len(best) <= 2:
                break
    return best


def cyclic_edges(prec: Precedence, order: Sequence[int]) -> list[Edge]:
    """Edges among the points a topological sort could not place: every
    cycle lies there."""
    placed = set(order)
    return [ed for ed in prec.edges if ed.u not in placed and ed.v not in placed]
