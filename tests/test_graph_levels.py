"""The clocks of the precedence graph made a level at a time (graph._clocks):
levels in bulk with numpy and point by point must give the same rows, and
the rows must answer reachability as a plain search over the edges does."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from strategies import schedules

from syncproof.bench.generators import MIXES, schedule_of_size
from syncproof.engine import graph as graph_mod
from syncproof.engine.graph import PrecedenceGraph, _kahn_from, _kahn_levels
from syncproof.ir import Schedule
from syncproof.semantics.matching import match
from syncproof.semantics.precedence import build_precedence


@contextmanager
def bulk_from(n: int) -> Iterator[None]:
    old = graph_mod.LEVEL_IN_BULK
    graph_mod.LEVEL_IN_BULK = n
    try:
        yield
    finally:
        graph_mod.LEVEL_IN_BULK = old


def _graphs(s: Schedule) -> tuple[PrecedenceGraph, PrecedenceGraph]:
    prec = build_precedence(s, match(s)).data
    with bulk_from(1):
        in_bulk = PrecedenceGraph(s, prec)
    with bulk_from(10**9):
        one_by_one = PrecedenceGraph(s, prec)
    return in_bulk, one_by_one


@pytest.mark.parametrize("mix", MIXES)
def test_bulk_and_point_by_point_rows_are_equal(mix: str) -> None:
    s = schedule_of_size(3000, mix=mix)
    a, b = _graphs(s)
    assert a.acyclic and b.acyclic
    assert a.rows.shape[0] > 100  # many merge points: the levels are really made in bulk
    assert np.array_equal(a.rows, b.rows) and a.row_of == b.row_of


@settings(max_examples=150, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(schedules())
def test_random_schedules_give_equal_rows(s: Schedule) -> None:
    a, b = _graphs(s)
    assert a.acyclic == b.acyclic
    if a.acyclic:
        assert np.array_equal(a.rows, b.rows)


def test_bulk_rows_answer_reachability_as_a_search_does() -> None:
    s = schedule_of_size(400, mix="decode")
    prec = build_precedence(s, match(s)).data
    with bulk_from(1):
        g = PrecedenceGraph(s, prec)
    succ: dict[int, list[int]] = {}
    for u, v in zip(prec.u.tolist(), prec.v.tolist(), strict=True):
        succ.setdefault(u, []).append(v)
    n = prec.n_points
    rnd = random.Random(7)
    for x in rnd.sample(range(2 * len(s.ops)), 60):
        seen, todo = {x}, [x]
        while todo:
            for w in succ.get(todo.pop(), ()):
                if w not in seen:
                    seen.add(w)
                    todo.append(w)
        ys = np.arange(2 * len(s.ops), dtype=np.int64)
        got = g.reach_many(np.full(len(ys), x, dtype=np.int64), ys).tolist()
        assert got == [y != x and y in seen for y in ys.tolist()], x
    assert n >= 2 * len(s.ops)


def _fifo_kahn(sources: list[int], ptr: list[int], dst: list[int], indeg: list[int]) -> list[int]:
    """Kahn's algorithm with a FIFO queue, as a textbook states it."""
    from collections import deque

    left = list(indeg)
    ready, out = deque(sources), []
    while ready:
        p = ready.popleft()
        out.append(p)
        for q in dst[ptr[p]:ptr[p + 1]]:
            left[q] -= 1
            if left[q] == 0:
                ready.append(q)
    return out


def test_levels_keep_kahns_order() -> None:
    rnd = random.Random(3)
    for _ in range(50):
        n = rnd.randint(1, 40)
        edges = sorted({(a, b) for a in range(n) for b in range(a + 1, n) if rnd.random() < 0.15})
        ptr = [0] * (n + 1)
        for a, _ in edges:
            ptr[a + 1] += 1
        for i in range(n):
            ptr[i + 1] += ptr[i]
        dst = [b for _, b in edges]
        indeg = [sum(1 for _, b in edges if b == v) for v in range(n)]
        sources = [v for v in range(n) if indeg[v] == 0]
        order, ends = _kahn_levels(list(sources), ptr, dst, list(indeg))
        assert order == _fifo_kahn(sources, ptr, dst, indeg) == _kahn_from(list(sources), ptr, dst, list(indeg))
        assert ends[-1] == len(order) == n and ends == sorted(ends)
        level = {}
        start = 0
        for k, e in enumerate(ends):
            for p in order[start:e]:
                level[p] = k
            start = e
        assert all(level[a] < level[b] for a, b in edges)  # no point precedes another of its level


def _cyclic(n: int, u: list[int], v: list[int]) -> bool:
    succ: dict[int, list[int]] = {}
    for a, b in zip(u, v, strict=True):
        succ.setdefault(a, []).append(b)
    indeg = [0] * n
    for b in v:
        indeg[b] += 1
    ready = [p for p in range(n) if indeg[p] == 0]
    seen = 0
    while ready:
        p = ready.pop()
        seen += 1
        for q in succ.get(p, ()):
            indeg[q] -= 1
            if indeg[q] == 0:
                ready.append(q)
    return seen < n


@settings(max_examples=200, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(schedules())
def test_orders_forward_only_says_acyclic_of_an_acyclic_graph(s: Schedule) -> None:
    """True means the data graph plus the blocking edges has no cycle (the check then skips their graph)."""
    from syncproof.semantics.precedence import DATA

    full = build_precedence(s, match(s))
    g = PrecedenceGraph(s, full.data, clocks=False)
    if not g.acyclic:
        return
    blocking = full.cls != DATA
    if g.orders_forward(full.u[blocking], full.v[blocking]):
        assert not _cyclic(full.n_points, full.u.tolist(), full.v.tolist())


def test_orders_forward_decides_schedules_and_refuses_a_blocking_cycle() -> None:
    """Messages that may block until received (p2p "any"): an exchange in a matching order is decided
    without the blocking graph; both ranks sending first is a cycle through blocking edges, never True."""
    from syncproof.ir import schedule_from_dict
    from syncproof.semantics.precedence import DATA

    def exchange(first_1: str) -> Schedule:
        send0, recv0 = {"op": "send", "stream": "c", "to": 1}, {"op": "recv", "stream": "c", "from": 1}
        send1, recv1 = {"op": "send", "stream": "c", "to": 0}, {"op": "recv", "stream": "c", "from": 0}
        ops1 = [send1, recv1] if first_1 == "send" else [recv1, send1]
        return schedule_from_dict({"syncproof": 2, "p2p": "any", "ranks": {"0": [send0, recv0], "1": ops1}},
                                  "exchange")

    said = {}
    for first_1 in ("recv", "send"):
        s = exchange(first_1)
        full = build_precedence(s, match(s))
        g = PrecedenceGraph(s, full.data)
        blocking = full.cls != DATA
        assert blocking.any()  # message-blocking edges: the question is real
        # the order is topological for the data graph itself, as the docstring claims
        assert g.orders_forward(full.data.u, full.data.v)
        said[first_1] = g.orders_forward(full.u[blocking], full.v[blocking])
        assert _cyclic(full.n_points, full.u.tolist(), full.v.tolist()) == (first_1 == "send")
    assert said["recv"]  # decided without the blocking graph
    assert not said["send"]  # a cycle through blocking edges
