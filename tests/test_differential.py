"""Both engines against the independent operational executor (runtime model v2).

For random small schedules (``strategies.schedules``: every v2 construct),
property by property:

* the hybrid and the z3 engine give the same verdict (proved, violated or
  unknown);
* the executor agrees with them: a property it decides (some run violates it,
  or none does) is violated exactly when the engines say so, and a property it
  leaves undecided (matching is violated, or no run can finish whatever the
  message sizes) is exactly one the engines call unknown;
* every violation comes with a counterexample, which replays on the executor
  (and the engine's own replay flag says so).

On a failure the schedule is printed in the file format (``syncproof.ir.loads``
reads it back); with ``SYNCPROOF_DISAGREEMENTS=<dir>`` set, the failing
schedule of each test is also written to ``<dir>/<test>.json`` (and what
disagreed to ``<dir>/<test>.txt``), overwritten at every failing call, so that
after hypothesis has shrunk it the file holds the minimal case.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from strategies import ALL_COLLECTIVE_KINDS, schedules

from syncproof.executor import explore, replay
from syncproof.ir import Kind, Schedule, dumps, loads
from syncproof.result import PROPERTIES, Report, Verdict
from syncproof.semantics.precedence import Precedence

try:
    from syncproof.engine import check_schedule
except ImportError:  # the engine is not there yet
    pytest.skip("syncproof.engine.check_schedule is not available", allow_module_level=True)


ENGINES = ("hybrid", "z3")
DEFAULT_EXAMPLES = 500
SLOW_EXAMPLES = 5000


def _engine_problems(schedule: Schedule, engine: str, report: Report, violated: dict[str, bool | None],
                     witnesses: dict[str, str]) -> list[str]:
    problems: list[str] = []
    for prop in PROPERTIES:
        res = report.result(prop)
        mine = violated[prop]
        if mine is None:
            if res.verdict is not Verdict.UNKNOWN:
                problems.append(f"{prop}: {engine} says {res.verdict}, the executor leaves it undecided"
                                f" (matching violated or no run finishes)")
        elif res.verdict is Verdict.UNKNOWN:
            problems.append(f"{prop}: {engine} says unknown ({res.reason}), the executor says"
                            f" {'violated' if mine else 'holds'}")
        elif (res.verdict is Verdict.VIOLATED) != mine:
            why = witnesses.get(prop, "no run violates it")
            problems.append(f"{prop}: {engine} says {res.verdict}, the executor says"
                            f" {'violated' if mine else 'holds'} ({why})")
        cex = res.counterexample
        if res.verdict is Verdict.VIOLATED and cex is None:
            problems.append(f"{prop}: {engine} says violated but gives no counterexample")
        elif res.verdict is Verdict.VIOLATED and cex is not None:
            ok, why = replay(schedule, cex)
            if not ok:
                problems.append(f"{prop}: the {engine} counterexample ({cex.observation.kind}:"
                                f" {cex.sentence}) does not replay: {why}")
            elif not cex.replayed:
                problems.append(f"{prop}: the {engine} counterexample replays, but the report says it did not"
                                f" ({cex.replay_note})")
    return problems


def disagreements(schedule: Schedule) -> list[str]:
    """Every way the two engines and the executor disagree on ``schedule``."""
    reports = {e: check_schedule(schedule, engine=e) for e in ENGINES}
    mine = explore(schedule)
    problems: list[str] = []
    for prop in PROPERTIES:
        h, z = reports["hybrid"].result(prop), reports["z3"].result(prop)
        if h.verdict is not z.verdict:
            problems.append(f"{prop}: hybrid says {h.verdict} ({h.reason}), z3 says {z.verdict} ({z.reason})")
    for e in ENGINES:
        problems += _engine_problems(schedule, e, reports[e], mine.violated, mine.witnesses)
    return problems


def _save(name: str, text: str, problems: list[str]) -> None:
    where = os.environ.get("SYNCPROOF_DISAGREEMENTS")
    if not where:
        return
    d = Path(where)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.json").write_text(text)
    (d / f"{name}.txt").write_text("\n".join(problems) + "\n")


@dataclass(frozen=True)
class KnownBug:
    """A disagreement found by this file and not fixed yet: ``applies`` tells
    its problem lines apart (given the schedule and one line of
    :func:`disagreements`); ``case`` is its minimal schedule, kept as a
    strict xfail so that the fix shows (and this entry is then removed)."""

    name: str
    reason: str
    applies: Callable[[Schedule, str], bool]
    case: str


KNOWN_BUGS: tuple[KnownBug, ...] = ()  # none open: see FIXED for those found here and fixed since


# Disagreements this file found and that are fixed: (name, what was wrong, minimal schedule); they must stay agreed.
FIXED: tuple[tuple[str, str, str], ...] = (
    ("broadcast-root-reads-without-value",
     "executor: a broadcast root whose read declares no value (null) but whose writes do carried nothing, so the"
     " members' values were taken on trust (the contract compares them with the root's write values)",
     """{"syncproof": 2, "name": "broadcast-root-none-read", "groups": {"all": [0, 1]}, "buffers": {"x": []},
         "ranks": {"0": [{"op": "broadcast", "stream": "s0", "group": "all", "root": 1, "writes": {"x": "a"}}],
                   "1": [{"op": "broadcast", "stream": "s0", "group": "all", "root": 1, "reads": {"x": null},
                          "writes": {"x": "b"}}]}}"""),
    ("weak-collective-reads-and-writes",
     "engine: a weak collective member that reads part of a region and writes all of it had its access extended"
     " to every member's end against an op that only reads it (read against read is no conflict), so z3's"
     " race counterexample did not replay",
     """{"syncproof": 2, "name": "weak-read-and-write", "groups": {"all": [0, 1, 2]}, "buffers": {"x": {"i": 3}},
         "init": {"x[i=0:3]": "c"},
         "ranks": {"0": [{"op": "all_reduce", "stream": "s1", "group": "all", "reads": {"x[i=2]": "b"},
                          "writes": {"x[i=0:3]": "c"}},
                         {"op": "compute", "stream": "s0", "reads": {"x[i=0:3]": "c"}},
                         {"op": "send", "stream": "s1", "to": 1, "channel": "1"},
                         {"op": "recv", "stream": "s1", "from": 1}],
                   "1": [{"op": "all_reduce", "stream": "s0", "group": "all"},
                         {"op": "send", "stream": "s0", "to": 0, "p2p": "rendezvous"},
                         {"op": "recv", "stream": "s0", "from": 0, "channel": "1"}],
                   "2": [{"op": "all_reduce", "stream": "s0", "group": "all", "completion": "weak"}]}}"""),
    ("weak-collective-output",
     "the output of a weak all_reduce was taken as accessed until every member ended, like its input",
     """{"syncproof": 2, "name": "weak-allreduce-output", "groups": {"all": [0, 1]}, "buffers": {"x": []},
         "ranks": {"0": [{"op": "all_reduce", "stream": "s0", "group": "all", "writes": {"x": "a"},
                          "completion": "weak"},
                         {"op": "compute", "stream": "s0", "reads": {"x": "a"}}],
                   "1": [{"op": "all_reduce", "stream": "s0", "group": "all", "completion": "weak"}]}}"""),
    ("all-to-all-counts-counterexample",
     "an all_to_all whose counts and recv_counts disagree stayed matched: its matching counterexample was a"
     " complete run, which did not replay",
     """{"syncproof": 2, "name": "a2a-counts", "groups": {"all": [0, 1, 2]}, "buffers": {},
         "ranks": {"0": [{"op": "all_to_all", "stream": "s0", "group": "all", "recv_counts": [0, 0, 1]}],
                   "1": [{"op": "all_to_all", "stream": "s0", "group": "all", "recv_counts": [0, 0, 0]}],
                   "2": [{"op": "all_to_all", "stream": "s0", "group": "all", "counts": [0, 0, 0]}]}}"""),
)


def unexplained(schedule: Schedule, problems: list[str]) -> list[str]:
    """The problems no known bug explains."""
    return [p for p in problems if not any(k.applies(schedule, p) for k in KNOWN_BUGS)]


def check_agreement(schedule: Schedule, name: str = "schedule") -> None:
    text = dumps(schedule)
    note(text)
    problems = disagreements(schedule)
    if problems:
        _save(name, text, problems)
    for k in KNOWN_BUGS:
        if any(k.applies(schedule, p) for p in problems):
            event(f"known bug: {k.name}")
    left = unexplained(schedule, problems)
    assert not left, "\n".join(left) + "\nschedule:\n" + text


# the default run draws the same schedules every time (CI is reproducible); the slow run explores anew
@settings(max_examples=DEFAULT_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(schedule=schedules())
def test_engines_agree_with_executor(schedule: Schedule) -> None:
    check_agreement(schedule, "default")


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=schedules())
def test_engines_agree_with_executor_many(schedule: Schedule) -> None:
    check_agreement(schedule, "many")


@pytest.mark.parametrize("bug", [pytest.param(k, id=k.name, marks=pytest.mark.xfail(strict=True, reason=k.reason))
                                 for k in KNOWN_BUGS])
def test_known_disagreement(bug: KnownBug) -> None:
    """Each known bug's minimal case: xfail while the bug is there (and its
    signature recognises it); a pass (strict xfail: a failure) means it is
    fixed and its entry in KNOWN_BUGS goes."""
    schedule = loads(bug.case)
    problems = disagreements(schedule)
    assert all(bug.applies(schedule, p) for p in problems), problems
    assert not problems, "\n".join(problems)


def test_the_comparison_reports_what_it_should() -> None:
    """The checker is not vacuous: a verdict the executor does not share, a decided property the executor
    leaves undecided, and a violation without a counterexample are each reported."""
    from dataclasses import replace

    from syncproof.ir import ScheduleBuilder

    b = ScheduleBuilder("crossed", p2p="rendezvous")
    for me, other in ((0, 1), (1, 0)):
        b.rank(me).send(other, stream="s").recv(other, stream="s")
    s = b.build()
    rep = check_schedule(s, engine="hybrid")
    mine = explore(s)
    assert mine.violated["deadlock"] is True and rep.result("deadlock").verdict is Verdict.VIOLATED
    assert _engine_problems(s, "hybrid", rep, mine.violated, mine.witnesses) == []
    flipped = {**mine.violated, "deadlock": False}
    assert any(p.startswith("deadlock: hybrid says violated, the executor says holds")
               for p in _engine_problems(s, "hybrid", rep, flipped, {}))
    decided = {**mine.violated, "matching": None}
    assert any(p.startswith("matching: hybrid says proved, the executor leaves it undecided")
               for p in _engine_problems(s, "hybrid", rep, decided, {}))
    bare = replace(rep, results=tuple(replace(r, counterexample=None) if r.property == "deadlock" else r
                                      for r in rep.results))
    assert "deadlock: hybrid says violated but gives no counterexample" in _engine_problems(
        s, "hybrid", bare, mine.violated, mine.witnesses)


@pytest.mark.parametrize("case", [pytest.param(c, id=n) for n, _, c in FIXED])
def test_fixed_disagreement(case: str) -> None:
    """The minimal cases of disagreements found here and fixed since."""
    assert disagreements(loads(case)) == []


def _constructs(s: Schedule) -> set[str]:
    """The v2 constructs (and a few v1 ones) a schedule uses, by name."""
    from syncproof.executor.matching import match as exec_match
    from syncproof.executor.matching import messages

    out = {f"p2p={s.p2p}", f"progress={s.progress}"}
    comm_streams: dict[tuple[int, str | None], set[str]] = {}
    batches: dict[tuple[int, str], list[Kind]] = {}
    for op in s.ops:
        out.add(op.kind.value)
        if op.p2p is not None:
            out.add(f"override {op.p2p} on {'p2p' if op.kind.is_p2p else 'rooted'}")
        if op.channel != "0":
            out.add("channel")
        if op.comm is not None:
            out.add(f"comm on {'p2p' if op.kind.is_p2p else 'collective'}")
        if op.kind.is_comm:
            comm_streams.setdefault((op.rank, op.communicator), set()).add(op.stream)
        if op.batch is not None:
            batches.setdefault((op.rank, op.batch), []).append(op.kind)
        if op.counts is not None:
            out.add(f"counts on {op.kind}")
        if op.recv_counts is not None:
            out.add("recv_counts")
        if op.completion == "weak":
            out.add("weak")
        if op.kind is Kind.PUT:
            out.add("put with signal" if op.signal else "put without signal")
        if op.kind.is_rooted and op.root != s.group_map[op.group or ""][0]:
            out.add("root not the first member")
        if op.meta.phase == "decode":
            out.add("decode")
    if any(len(v) > 1 for v in comm_streams.values()):
        out.add("one communicator on two streams")
    for kinds in batches.values():
        if len(kinds) > 1:
            out.add("group call")
        if any(k.is_collective for k in kinds):
            out.add("collective in a group call")
    m = exec_match(s)
    if m.put_of:
        out.add("wait_signal bound")
    for p in m.problems:
        if "recv_counts" in p:
            out.add("all_to_all counts disagree")
        elif "no put" in p:
            out.add("wait_signal unbound")
        elif "kind, size" in p:
            out.add("collective mismatch")
        elif "no matching" in p:
            out.add("unmatched p2p")
    if m.ok:
        for msg in messages(s, m):
            if msg.carried is None:
                out.add("message value on trust")
            else:
                out.add("message value differs" if msg.mismatch else "message value agrees")
    return out


CONSTRUCTS = frozenset({
    "p2p=any", "p2p=rendezvous", "p2p=eager", "progress=any", "progress=concurrent",
    "compute", "send", "recv", "record", "wait", "put", "wait_signal", *ALL_COLLECTIVE_KINDS,
    "override eager on p2p", "override rendezvous on p2p", "override eager on rooted",
    "override rendezvous on rooted", "channel", "comm on p2p", "comm on collective", "counts on all_gather",
    "counts on reduce_scatter", "counts on all_to_all", "recv_counts", "weak", "put with signal",
    "put without signal", "root not the first member", "decode", "one communicator on two streams", "group call",
    "collective in a group call", "wait_signal bound", "all_to_all counts disagree", "wait_signal unbound",
    "collective mismatch", "unmatched p2p", "message value on trust", "message value differs",
    "message value agrees",
})


class _AllSeen(Exception):
    pass


def test_the_generator_reaches_every_construct_and_verdict() -> None:
    """The strategy is not vacuous: within the examples of a default run (the
    draws derandomized, so the test is stable) it uses every construct of
    CONSTRUCTS, and the executor finds every property violated in some and
    holding in others."""
    seen: set[str] = set()
    verdicts: set[tuple[str, bool | None]] = set()
    want_verdicts = {(p, v) for p in PROPERTIES for v in (True, False)}

    @settings(max_examples=DEFAULT_EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.generate], suppress_health_check=[HealthCheck.too_slow])
    @given(schedule=schedules())
    def collect(schedule: Schedule) -> None:
        seen.update(_constructs(schedule))
        verdicts.update(explore(schedule).violated.items())
        if seen >= CONSTRUCTS and want_verdicts <= verdicts:
            raise _AllSeen

    with contextlib.suppress(_AllSeen):
        collect()
    assert not CONSTRUCTS - seen, f"never generated: {sorted(CONSTRUCTS - seen)}"
    missing = want_verdicts - verdicts
    assert not missing, f"never decided so: {sorted(missing)}"


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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=many_writers())
def test_engines_agree_on_reads_with_several_writers(schedule: Schedule) -> None:
    check_agreement(schedule, "writers")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(schedules())
def test_bulk_decisions_match_one_by_one(schedule: Schedule) -> None:
    """The graph's bulk paths (``reach_many``, ``settled``) against its
    one-query path on the data edges (what dataflow, race and phase are
    decided on): same answers, and "settled" only where ``decide`` proves;
    and the graph's acyclicity, on the data edges and on every edge class
    (what deadlock is decided on), against plain search for a cycle."""
    import numpy as np

    from syncproof.engine.graph import PrecedenceGraph
    from syncproof.semantics.matching import match
    from syncproof.semantics.obligations import (
        message_obligations,
        phase_obligations,
        race_obligations,
        read_obligations,
    )
    from syncproof.semantics.precedence import build_precedence

    def successors(p: Precedence) -> dict[int, list[int]]:
        succ: dict[int, list[int]] = {}
        for u, v in zip(p.u.tolist(), p.v.tolist(), strict=True):
            succ.setdefault(u, []).append(v)
        return succ

    def cyclic(p: Precedence) -> bool:
        succ = successors(p)
        colour = [0] * p.n_points  # 0 new, 1 on the path, 2 done
        for root in range(p.n_points):
            if colour[root]:
                continue
            colour[root] = 1
            stack = [(root, iter(succ.get(root, ())))]
            while stack:
                x, it = stack[-1]
                for w in it:
                    if colour[w] == 1:
                        return True
                    if colour[w] == 0:
                        colour[w] = 1
                        stack.append((w, iter(succ.get(w, ()))))
                        break
                else:
                    colour[x] = 2
                    stack.pop()
        return False

    m = match(schedule)
    full = build_precedence(schedule, m)
    prec = full.data
    g = PrecedenceGraph(schedule, prec)
    assert g.acyclic is not cyclic(prec)
    assert PrecedenceGraph(schedule, full, clocks=False).acyclic is not cyclic(full)
    if not g.acyclic or not schedule.ops:
        return
    n = 2 * len(schedule.ops)
    pairs = [(x, y) for x in range(n) for y in range(n)]
    xs = np.array([x for x, _ in pairs], dtype=np.int64)
    ys = np.array([y for _, y in pairs], dtype=np.int64)
    assert g.reach_many(xs, ys).tolist() == [g.reach(x, y) for x, y in pairs]
    # and both against plain search over the edges: x precedes y iff a path leads from x to y
    succ = successors(prec)
    for x in range(n):
        seen, todo = set(), [x]
        while todo:
            for w in succ.get(todo.pop(), ()):
                if w not in seen:
                    seen.add(w)
                    todo.append(w)
        assert [g.reach(x, y) for y in range(n)] == [y in seen and y != x for y in range(n)], x
    for obs in (read_obligations(schedule), race_obligations(schedule), phase_obligations(schedule),
                message_obligations(schedule, m)[0]):
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
