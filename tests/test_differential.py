"""The z3 engine against the independent explicit executor.

For random small schedules, every verdict the engine decides (proved or
violated) must agree with the executor, and every counterexample the engine
gives must replay on the executor's semantics.  On a failure the schedule is
printed in the file format so it can be saved and reproduced with
``syncproof.ir.loads``.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from strategies import schedules

from syncproof.executor import explore, replay
from syncproof.ir import Schedule, dumps
from syncproof.result import PROPERTIES, Verdict

try:
    from syncproof.engine import check_schedule
except ImportError:  # the engine is not there yet
    pytest.skip("syncproof.engine.check_schedule is not available", allow_module_level=True)


ENGINES = ("hybrid", "z3")


def disagreements(schedule: Schedule, engine: str = "hybrid") -> list[str]:
    """Every way the engine and the executor disagree on ``schedule``."""
    report = check_schedule(schedule, engine=engine)
    mine = explore(schedule)
    problems: list[str] = []
    for prop in PROPERTIES:
        try:
            res = report.result(prop)
        except KeyError:
            continue
        if res.verdict is Verdict.UNKNOWN:
            continue
        violated = mine.violated[prop]
        # None: the executor does not decide this property (matching is violated)
        if violated is not None and (res.verdict is Verdict.VIOLATED) != violated:
            why = mine.witnesses.get(prop, "no run violates it")
            problems.append(f"{prop}: engine says {res.verdict}, executor says"
                            f" {'violated' if violated else 'holds'} ({why})")
        cex = res.counterexample
        if res.verdict is Verdict.VIOLATED and cex is not None:
            ok, why = replay(schedule, cex)
            if not ok:
                problems.append(f"{prop}: the engine's counterexample ({cex.observation.kind}:"
                                f" {cex.sentence}) does not replay: {why}")
    return problems


def check_agreement(schedule: Schedule, engine: str) -> None:
    text = dumps(schedule)
    note(text)
    problems = disagreements(schedule, engine)
    assert not problems, f"engine {engine}:\n" + "\n".join(problems) + "\nschedule:\n" + text


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=schedules())
def test_engine_agrees_with_executor(engine: str, schedule: Schedule) -> None:
    check_agreement(schedule, engine)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=schedules())
def test_engine_agrees_with_executor_many(engine: str, schedule: Schedule) -> None:
    check_agreement(schedule, engine)


@st.composite
def many_writers(draw: st.DrawFn) -> Schedule:
    """One rank, several streams, several writes of "a" and "b" to one
    location, events between streams at random, and reads expecting "a":
    reads with several writers of their expected value, the case the hybrid
    decides by searching the writers' options on the graph."""
    from syncproof.ir import ScheduleBuilder

    b = ScheduleBuilder("writers")
    b.buffer("x")
    if draw(st.booleans()):
        b.init("x", "a")
    r = b.rank(0)
    streams = [f"s{i}" for i in range(draw(st.integers(2, 4)))]
    recorded: list[str] = []
    for i in range(draw(st.integers(3, 7))):
        kind = draw(st.sampled_from(("write", "write", "read", "sync")))
        st_name = draw(st.sampled_from(streams))
        if kind == "write":
            r.compute(f"w{i}", writes={"x": draw(st.sampled_from(("a", "a", "b")))}, stream=st_name)
        elif kind == "read":
            r.compute(f"r{i}", reads={"x": "a"}, stream=st_name)
        else:
            ev = f"e{i}"
            r.record(ev, stream=st_name)
            recorded.append(ev)
            r.wait(ev, stream=draw(st.sampled_from(streams)))
    r.compute("final_read", reads={"x": "a"}, stream=draw(st.sampled_from(streams)))
    return b.build()


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=many_writers())
def test_engines_agree_on_reads_with_several_writers(engine: str, schedule: Schedule) -> None:
    check_agreement(schedule, engine)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(schedules())
def test_bulk_decisions_match_one_by_one(schedule: Schedule) -> None:
    """The graph's bulk paths (``reach_many``, ``settled``) against its
    one-query path: same answers, and "settled" only where ``decide`` proves."""
    import numpy as np

    from syncproof.engine.graph import PrecedenceGraph
    from syncproof.semantics.matching import match
    from syncproof.semantics.obligations import (
        ordering_obligations,
        phase_obligations,
        race_obligations,
        read_obligations,
    )
    from syncproof.semantics.precedence import build_precedence

    m = match(schedule)
    prec = build_precedence(schedule, m)
    g = PrecedenceGraph(schedule, prec)
    if not g.acyclic or not schedule.ops:
        return
    n = 2 * len(schedule.ops)
    pairs = [(x, y) for x in range(n) for y in range(n)]
    xs = np.array([x for x, _ in pairs], dtype=np.int64)
    ys = np.array([y for _, y in pairs], dtype=np.int64)
    assert g.reach_many(xs, ys).tolist() == [g.reach(x, y) for x, y in pairs]
    # and both against plain search over the edges: x precedes y iff a path leads from x to y
    succ: dict[int, list[int]] = {}
    for u, v in zip(prec.u.tolist(), prec.v.tolist(), strict=True):
        succ.setdefault(u, []).append(v)
    for x in range(n):
        seen, todo = set(), [x]
        while todo:
            for w in succ.get(todo.pop(), ()):
                if w not in seen:
                    seen.add(w)
                    todo.append(w)
        assert [g.reach(x, y) for y in range(n)] == [y in seen and y != x for y in range(n)], x
    for obs in (read_obligations(schedule), race_obligations(schedule), phase_obligations(schedule),
                ordering_obligations(schedule, m)):
        for ob, done in zip(obs, g.settled(obs).tolist(), strict=True):
            if done:
                assert g.decide(ob)[0] == "proved", ob


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(schedules())
def test_obligations_per_rank_class_are_the_direct_ones(schedule: Schedule) -> None:
    """Dataflow and race obligations computed once per class of identical
    ranks and shifted are exactly those computed rank by rank."""
    from syncproof.semantics.obligations import race_obligations, read_obligations

    assert list(read_obligations(schedule)) == list(read_obligations(schedule, symmetry=False))
    assert list(race_obligations(schedule)) == list(race_obligations(schedule, symmetry=False))


def test_rank_classes_split_ranks_that_differ_in_one_access() -> None:
    from syncproof.bench.generators import tp_pp_decode
    from syncproof.ir import ScheduleBuilder
    from syncproof.semantics.obligations import rank_classes, read_obligations

    s = tp_pp_decode(tp=4, pp=2, layers=4, steps=3, mbs=2)
    classes = rank_classes(s)
    assert classes is not None
    assert {r: rep for r, (rep, _) in classes.items()} == {0: 0, 1: 0, 2: 0, 3: 0, 4: 4, 5: 4, 6: 4, 7: 4}
    assert len(read_obligations(s)) == len(read_obligations(s, symmetry=False))
    # the same program on two ranks, except that rank 1 reads one cell no one writes
    b = ScheduleBuilder("almost-symmetric")
    b.buffer("x", "i")
    for r in (0, 1):
        rb = b.rank(r)
        rb.compute("w", writes={"x[i=0]": "a"})
        rb.compute("r", reads={"x[i=0]" if r == 0 else "x[i=1]": "a"})
    t = b.build()
    assert rank_classes(t) == {0: (0, 0), 1: (1, 0)}
    direct = read_obligations(t, symmetry=False)
    assert list(read_obligations(t)) == list(direct)
    assert [ob.good for ob in direct] == [(0,), ()]  # rank 1's read has no writer: not rank 0's shifted
