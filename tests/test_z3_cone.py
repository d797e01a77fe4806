"""The z3 engine's encoding (docs/semantics.md, "The z3 engine's encoding"): each obligation on its
support, checked paths as facts, models extended to whole runs.

* exactness on random DAGs: the cone encoding decides every obligation as the whole formula does, with
  no guide, the graph's reachability as guide, and guides that lie (a guide is only a hint);
* every path of a support is a path of the schedule, and the complete region holds every path;
* mutations the encoding must catch: a support that drops paths (a model that does not extend: the
  complete region decides), a region that drops edges too (an internal error, never a violation), a
  forged path (refused, never a proof);
* violations found with the cone encoding replay on the executor.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncproof import ScheduleBuilder, Verdict
from syncproof.engine import check_schedule
from syncproof.engine.cone import Cones, Path, satisfies
from syncproof.engine.z3backend import SHORT_PATH, ConeBackend, Z3Backend
from syncproof.errors import InternalError
from syncproof.ir import Schedule
from syncproof.ir.region import Region
from syncproof.models import registry
from syncproof.semantics.obligations import OrderOb, OverlapOb
from syncproof.semantics.precedence import Precedence

REGION = Region("x", ())


def precedence(n_ops: int, syncs: list[tuple[int, int]]) -> Precedence:
    """Ops 0..n-1 (start(o) < end(o)), and for each (a, b) with a < b the edge end(a) -> start(b)."""
    u = [2 * o for o in range(n_ops)] + [2 * a + 1 for a, _ in syncs]
    v = [2 * o + 1 for o in range(n_ops)] + [2 * b for _, b in syncs]
    k = len(u)
    z = np.zeros(k, dtype=np.int64)
    return Precedence(n_ops, 2 * n_ops, np.array(u, dtype=np.int64), np.array(v, dtype=np.int64),
                      np.ones(k, dtype=bool), z, z, z, z, ())


@st.composite
def dags(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    n = draw(st.integers(3, 9))
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    syncs = draw(st.lists(st.sampled_from(pairs), max_size=2 * n, unique=True))
    return n, syncs


def obligations(n: int, draw: st.DrawFn) -> list[OrderOb | OverlapOb]:
    ops = st.integers(0, n - 1)
    obs: list[OrderOb | OverlapOb] = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            a, b = draw(ops), draw(ops)
            if a != b:
                obs.append(OverlapOb(a, b, REGION))
        else:
            before = tuple(sorted(set(draw(st.lists(ops, min_size=1, max_size=2)))))
            after = tuple(sorted(set(draw(st.lists(ops, min_size=1, max_size=2))) - set(before)))
            if after:
                obs.append(OrderOb("phase", before, after, "order"))
    return obs


def verdicts(backend: ConeBackend | Z3Backend, obs: list[OrderOb | OverlapOb]) -> list[bool]:
    """Per obligation: is it violated (each alone, so that no limit hides one)?"""
    out = []
    for ob in obs:
        found, final = backend.find_violations([ob], 1)
        assert final in ("unsat", "limit"), final
        out.append(bool(found))
    return out


def reach_of(prec: Precedence) -> dict[int, set[int]]:
    succ: dict[int, list[int]] = {}
    for a, b in zip(prec.u.tolist(), prec.v.tolist(), strict=True):
        succ.setdefault(a, []).append(b)
    out: dict[int, set[int]] = {}
    for p in range(prec.n_points):
        seen: set[int] = set()
        stack = [p]
        while stack:
            for q in succ.get(stack.pop(), ()):
                if q not in seen:
                    seen.add(q)
                    stack.append(q)
        out[p] = seen
    return out


GUIDES = ("none", "true", "false", "reach")


@settings(max_examples=60, deadline=None)
@given(dag=dags(), data=st.data(), guide=st.sampled_from(GUIDES))
def test_the_cone_encoding_decides_as_the_whole_formula(dag: tuple[int, list[tuple[int, int]]],
                                                        data: st.DataObject, guide: str) -> None:
    n, syncs = dag
    prec = precedence(n, syncs)
    obs = obligations(n, data.draw)
    whole = Z3Backend(prec)
    assert whole.check_base().status == "sat"
    cone = ConeBackend(prec)
    assert cone.check_base().status == "sat"
    reach = reach_of(prec)
    cone.cones.guide = {"none": None, "true": lambda x, y: True, "false": lambda x, y: False,
                        "reach": lambda x, y: y in reach[x]}[guide]
    assert verdicts(cone, obs) == verdicts(whole, obs)
    for ob in obs:  # each violation's run is an execution of the whole schedule
        for a in cone.find_violations([ob], 1)[0]:
            assert satisfies(prec, np.array(a.times, dtype=np.int64))


@settings(max_examples=60, deadline=None)
@given(dag=dags(), data=st.data())
def test_support_paths_are_paths_and_the_region_holds_every_path(dag: tuple[int, list[tuple[int, int]]],
                                                                 data: st.DataObject) -> None:
    n, syncs = dag
    prec = precedence(n, syncs)
    cones = Cones(prec)
    reach = reach_of(prec)
    pts = data.draw(st.lists(st.integers(0, 2 * n - 1), min_size=2, max_size=4, unique=True))
    atoms = list(itertools.permutations(pts, 2))
    paths = cones.support(atoms, short=2 * n)  # every path lists its edges
    for path in paths:
        assert cones.fact(path) is True and path.strict and path.length == len(path.edges)  # all strict here
    for long in cones.support(atoms, short=0):  # none does: each was checked as the search grew it
        assert not long.edges and long.strict and (long.y, long.x) in {(p.y, p.x) for p in paths}
    joined = {(p.y, p.x) for p in paths}
    lefts, rights = {x for x, _ in atoms}, {y for _, y in atoms}
    assert joined == {(y, x) for y in rights for x in lefts if x in reach[y]}
    region = cones.interval(pts)
    on_paths = {p for p in range(2 * n) if any(p in reach[a] for a in pts) and any(b in reach[p] for b in pts)}
    want = {e for e in range(prec.n_edges)
            if int(prec.u[e]) in on_paths | set(pts) and int(prec.v[e]) in on_paths | set(pts)}
    assert region == want


def test_a_broken_path_proves_nothing() -> None:
    prec = precedence(3, [(0, 1), (1, 2)])  # edges: 0 s0->e0, 1 s1->e1, 2 s2->e2, 3 e0->s1, 4 e1->s2
    cones = Cones(prec)
    assert cones.fact(Path(1, 5, (3, 1, 4, 2))) is True
    assert cones.fact(Path(1, 5, (3, 4, 2))) is None  # a gap: e1 -> s2 does not start at s1
    assert cones.fact(Path(1, 4, (3, 1, 4, 2))) is None  # ends elsewhere
    assert cones.fact(Path(1, 5, ())) is None
    assert cones.fact(Path(1, 5, (99,))) is None
    from syncproof.engine.cone import _Tree

    tree = _Tree(1)
    with pytest.raises(InternalError, match="does not lead"):
        cones._graft(tree, [(5, 4)])  # edge 4 (e1 -> s2) does not lead to point 5
    cones._graft(tree, [(3, 1), (2, 3)])  # e0 -> s1 -> e1, listed from the far end
    assert tree.depth[3] == 2 and tree.strict[3]


def handoff(wait: bool) -> Schedule:
    """A value made on one stream and used on another of the same rank, with or without the event
    wait between them."""
    b = ScheduleBuilder("handoff")
    b.buffer("x")
    r = b.rank(0)
    r.compute("make", writes={"x": "v"}, stream="s1")
    for _ in range(SHORT_PATH + 2):  # a long path: it goes to z3 as one checked fact
        r.compute("more", stream="s1")
    r.record("e", stream="s1")
    if wait:
        r.wait("e", stream="s2")
    r.compute("use", reads={"x": "v"}, stream="s2")
    return b.build()


def test_a_support_without_its_paths_is_caught_by_the_run_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no path given, z3 finds a model of the violation alone; it does not extend to a run of the
    schedule, so the complete region is asked, and the read is proved there."""
    calls = {"run": 0, "none": 0, "interval": 0}
    run_from, interval = Cones.run_from, Cones.interval

    def spy_run(self: Cones, atoms: list[tuple[int, int]]) -> tuple[int, ...] | None:
        got = run_from(self, atoms)
        calls["run"] += 1
        calls["none"] += got is None
        return got

    def spy_interval(self: Cones, points: set[int]) -> set[int]:
        calls["interval"] += 1
        return interval(self, points)

    monkeypatch.setattr(Cones, "support", lambda self, atoms, short=8: [])
    monkeypatch.setattr(Cones, "run_from", spy_run)
    monkeypatch.setattr(Cones, "interval", spy_interval)
    rep = check_schedule(handoff(wait=True), ["dataflow"], engine="z3")
    assert rep.result("dataflow").verdict is Verdict.PROVED
    assert calls["none"] >= 1 and calls["interval"] >= 1


def test_a_region_without_its_edges_never_gives_a_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the complete region lost its edges too, the model still does not extend: an internal error
    (a bug to report), never a counterexample."""
    monkeypatch.setattr(Cones, "support", lambda self, atoms, short=8: [])
    monkeypatch.setattr(Cones, "interval", lambda self, points: set())
    with pytest.raises(InternalError, match="does not extend"):
        check_schedule(handoff(wait=True), ["dataflow"], engine="z3")


def test_a_forged_path_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the wait the read is violated.  A search that claimed a long path from the write's end to
    the read's start would make z3 prove it: the path is checked edge by edge and refused."""
    s = handoff(wait=False)
    assert check_schedule(s, ["dataflow"], engine="z3").result("dataflow").verdict is Verdict.VIOLATED
    make, use = 0, len(s.ops) - 1

    def forged(self: Cones, atoms: list[tuple[int, int]], short: int = 8) -> list[Path]:
        return [Path(2 * make + 1, 2 * use, tuple(range(SHORT_PATH + 1)))]

    monkeypatch.setattr(Cones, "support", forged)
    with pytest.raises(InternalError, match="do not make"):
        check_schedule(s, ["dataflow"], engine="z3")
    # the check has teeth: a mutant that takes the forged path's word proves the violated read
    monkeypatch.setattr(Cones, "fact", lambda self, path: True)
    assert check_schedule(s, ["dataflow"], engine="z3").result("dataflow").verdict is Verdict.PROVED


@pytest.mark.parametrize(("model", "fault"), [("tp", "no-wait-allreduce"), ("paged-kv", "early-reuse"),
                                              ("pp", "no-recv-wait")])
def test_cone_violations_replay(model: str, fault: str) -> None:
    s = registry.build(model, {}, fault)
    rep = check_schedule(s, engine="z3", max_cex=3)
    violated = [r for r in rep.results if r.verdict is Verdict.VIOLATED]
    assert violated
    for r in violated:
        assert r.counterexample is not None and r.counterexample.replayed, r.counterexample
    hyb = check_schedule(s, engine="hybrid", max_cex=3)
    assert [r.verdict for r in rep.results] == [r.verdict for r in hyb.results]


def test_a_cycle_goes_to_z3_on_the_whole_formula() -> None:
    """No topological order: the base is decided by z3 on every edge, and the cycle comes from its core."""
    b = ScheduleBuilder("crossed-sends")
    for me, other in ((0, 1), (1, 0)):
        b.rank(me).send(other, stream="s").recv(other, stream="s")
    rep = check_schedule(replace(b.build(), p2p="rendezvous"), engine="z3")  # message edges are data edges
    assert rep.result("deadlock").verdict is Verdict.VIOLATED
    cex = rep.result("deadlock").counterexample
    assert cex is not None and cex.replayed and cex.cycle


def test_only_positive_formulas_of_strict_comparisons_are_taken() -> None:
    from syncproof.engine.z3backend import atoms

    assert atoms("(or (and (< t1 t2) (> t3 t4)) true)") == ((1, 2), (4, 3))
    for text in ("(not (< t1 t2))", "(<= t1 t2)", "(=> (< t1 t2) (< t2 t3))"):
        with pytest.raises(InternalError, match="positive formula"):
            atoms(text)
