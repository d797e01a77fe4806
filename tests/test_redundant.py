"""The over-synchronization engine (issue 14): redundant syncs, costs and
the fewest syncs, on small schedules whose answers are known by hand, and on
random schedules against brute force."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncproof.engine import check_schedule
from syncproof.engine.redundant import find_redundant, makespan, minimize, syncs_of, without
from syncproof.ir import Schedule, ScheduleBuilder
from syncproof.models.registry import build
from syncproof.result import Verdict


def _proved(s: Schedule, props: tuple[str, ...]) -> bool:
    return all(r.verdict is Verdict.PROVED for r in check_schedule(s, props).results)


def test_the_sglang_two_way_wait_keeps_one_direction() -> None:
    """overlap-scheduler with wait=oversync: the forward stream also waits for
    the schedule stream's state (the direction that cost ~4% occupancy)."""
    s = build("overlap-scheduler", {"wait": "oversync"}, None)
    rr = find_redundant(s)
    red = [v.sync.label for v in rr.redundant]
    assert red and all("forward: wait(sched_state)" in x for x in red), red
    assert all(v.confirmed for v in rr.redundant)
    assert all(v.needed_for for v in rr.verdicts if not v.redundant)
    m = minimize(s)
    assert m.optimal and sorted(x.label for x in m.removed) == sorted(red)
    assert all(r.verdict is Verdict.PROVED for r in m.report.results)
    assert len(m.schedule.ops) == len(s.ops) - len(red)
    # the default (one direction) has nothing to remove
    d = build("overlap-scheduler", {}, None)
    assert not find_redundant(d).redundant
    assert minimize(d).removed == ()


def _two_waits(implied: bool) -> Schedule:
    """b on stream 'c' reads what a wrote on stream 'a'.  With ``implied``, a
    second event already orders a before c's wait, so one wait is implied."""
    b = ScheduleBuilder("two-waits")
    b.buffer("x").buffer("y")
    r = b.rank(0)
    r.compute("a", stream="a", writes={"x": "A"})
    r.record("ea", stream="a")
    r.compute("a2", stream="a", writes={"y": "B"})
    r.record("eb", stream="a")
    r.wait("eb", stream="c")
    if implied:
        r.wait("ea", stream="c")
    r.compute("b", stream="c", reads={"x": "A", "y": "B"})
    return b.build()


def test_a_wait_implied_by_another_is_decided_on_the_graph() -> None:
    s = _two_waits(implied=True)
    rr = find_redundant(s)
    by = {v.sync.label: v for v in rr.verdicts}
    ea = next(v for k, v in by.items() if "wait(ea)" in k)
    eb = next(v for k, v in by.items() if "wait(eb)" in k)
    assert ea.redundant and ea.how == "implied" and ea.confirmed, ea
    assert not eb.redundant and eb.needed_for in ("dataflow", "race"), eb


def _each_alone() -> Schedule:
    """Two paths order w before r: a wait on stream c and a host sync; either
    one suffices, not neither (redundant alone, not together)."""
    b = ScheduleBuilder("either")
    b.buffer("x")
    r = b.rank(0)
    r.compute("w", stream="a", writes={"x": "A"})
    r.record("e", stream="a")
    r.wait("e", stream="c")
    r.sync(event="e")
    r.compute("r", stream="c", reads={"x": "A"})
    return b.build()


def test_two_syncs_each_redundant_alone_are_not_both_removable() -> None:
    s = _each_alone()
    rr = find_redundant(s)
    assert len(rr.redundant) == 2, [(v.sync.label, v.redundant, v.why) for v in rr.verdicts]
    assert not _proved(without(s, [v.sync for v in rr.redundant]), rr.proved)
    m = minimize(s)
    assert m.optimal and len(m.removed) == 1 and len(m.kept) == 1


def test_makespan_and_the_critical_path() -> None:
    b = ScheduleBuilder("chain")
    b.buffer("x")
    r = b.rank(0)
    r.compute("slow", stream="a", writes={"x": "A"})
    r.record("e", stream="a")
    r.compute("fast", stream="b")
    r.wait("e", stream="b")
    r.compute("use", stream="b", reads={"x": "A"})
    s = b.build()
    ids = {op.name or str(op.kind): op.id for op in s.ops}
    span, path = makespan(s, {ids["slow"]: 7.0, ids["fast"]: 2.0, ids["use"]: 3.0})
    assert span == 10.0
    assert [s.ops[o].name for o in path if s.ops[o].name] == ["slow", "use"]
    # the wait is on the critical path: without it, use runs after fast and slow ends last (7)
    rr = find_redundant(s, durations={ids["slow"]: 7.0, ids["fast"]: 2.0, ids["use"]: 3.0})
    (w,) = [v for v in rr.verdicts if v.sync.kind == "wait"]
    assert not w.redundant and w.cost == 3.0


@st.composite
def synced_streams(draw: st.DrawFn) -> Schedule:
    """One rank, three streams and the host: writes and reads of three
    buffers, each read expecting what the last write issued before it wrote
    (the in-order meaning).  A read on another stream than its write is
    usually made safe by an event (record after the write, wait before the
    read: needed), sometimes twice or by a host sync as well (one of them
    redundant); extra records, waits and host syncs are sprinkled in."""
    b = ScheduleBuilder("synced")
    for k in range(13):  # every write its own buffer: the only conflicts are a read against its write
        b.buffer(f"x{k}")
    r = b.rank(0)
    last: dict[str, tuple[str, str]] = {}  # buffer -> (value, stream)
    events: list[str] = []
    for n in range(1, draw(st.integers(5, 12)) + 1):
        what = draw(st.sampled_from(("write", "read", "read", "extra")))
        stream = draw(st.sampled_from(("a", "b", "c")))
        buf = f"x{n}"
        if what == "write":
            last[buf] = (f"v{n}", stream)
            r.compute(f"w{n}", stream=stream, writes={buf: f"v{n}"})
        elif what == "read" and last:
            buf = draw(st.sampled_from(sorted(last)))
            value, src = last[buf]
            if draw(st.integers(0, 4)):  # mostly another stream than the writer's
                stream = draw(st.sampled_from([x for x in "abc" if x != src]))
            if src != stream:
                how = draw(st.sampled_from(("event", "event", "event", "twice", "host")))
                if how:
                    events.append(f"e{n}")
                    r.record(events[-1], stream=src)
                    r.wait(events[-1], stream=stream)
                if how == "twice":
                    r.wait(events[-1], stream=stream)
                if how == "host":
                    r.sync(event=events[-1])
            r.compute(f"r{n}", stream=stream, reads={buf: value})
        elif what == "extra" and events:
            if draw(st.booleans()):
                r.wait(draw(st.sampled_from(events)), stream=stream)
            else:
                r.sync(event=draw(st.sampled_from(events)))
    return b.build()


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
@given(synced_streams())
def test_minimize_is_optimal_against_brute_force(s: Schedule) -> None:
    """On random small schedules: every claim of find_redundant holds, and
    minimize keeps no more syncs than the smallest good set found by trying
    every subset."""
    cands = syncs_of(s)
    if len(cands) > 7:
        return
    rr = find_redundant(s)
    props = rr.proved
    if not props:
        return
    for v in rr.verdicts:
        assert _proved(without(s, [v.sync]), props) == v.redundant, v
    best = len(cands)
    for k in range(len(cands) + 1):
        if any(_proved(without(s, list(rem)), props) for rem in itertools.combinations(cands, len(cands) - k)):
            best = k
            break
    m = minimize(s)
    assert m.optimal
    assert len(m.kept) == best, (len(m.kept), best)
    assert all(r.verdict is Verdict.PROVED for r in m.report.results)


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
@given(synced_streams())
def test_the_graph_decision_agrees_with_re_checking(s: Schedule) -> None:
    """Needed syncs are decided on the graph (no re-check); the answer must
    be the re-check's, sync by sync."""
    fast = find_redundant(s)
    slow = find_redundant(s, graph=False)
    assert [v.redundant for v in fast.verdicts] == [v.redundant for v in slow.verdicts]
    assert [v.needed_for for v in fast.verdicts if not v.redundant] == [
        v.needed_for for v in slow.verdicts if not v.redundant] or all(
        v.needed_for for v in fast.verdicts if not v.redundant)


def test_the_graph_decision_agrees_with_re_checking_on_models() -> None:
    for model, params in (("tp", {}), ("pp", {}), ("sp", {}), ("overlap-scheduler", {"wait": "oversync"}),
                          ("async-decode", {}), ("kv", {"steps": 2})):
        s = build(model, params, None)
        fast = find_redundant(s)
        slow = find_redundant(s, graph=False)
        assert [v.redundant for v in fast.verdicts] == [v.redundant for v in slow.verdicts], model
        assert fast.checks < slow.checks or not fast.verdicts, model


def test_the_bulk_first_try_names_real_witnesses() -> None:
    """The bulk first try decides most stream waits of the benchmark schedule
    at once; each witness it names is an obligation of the property it
    names, and that property really fails without the sync (re-checked on
    a sample).  Host syncs, which no obligation needs there, are not
    named."""
    import random

    from syncproof.bench.generators import schedule_of_size
    from syncproof.engine.redundant import _GraphDecider
    from syncproof.semantics.memo import sharing

    s = schedule_of_size(1000, "decode", False, True)
    rr = find_redundant(s)
    cands = syncs_of(s)
    with sharing():
        dec = _GraphDecider(s, rr.proved)
        bulk = dec.needed_in_bulk(cands)
    waits = [k for k, sy in enumerate(cands) if sy.kind == "wait"]
    # (a wait whose reader's start has other edges into it, here a send's, goes the slow way)
    assert set(bulk) <= set(waits) and len(bulk) >= 0.8 * len(waits)
    for k in random.Random(0).sample(sorted(bulk), 8):
        prop, lazy = bulk[k]
        got_prop, ob = lazy.get()
        assert got_prop == prop
        rep = check_schedule(without(s, [cands[k]]), [prop], max_cex=1)
        assert rep.result(prop).verdict is Verdict.VIOLATED, (cands[k].label, ob)
    # and the verdicts say so, with the sentence made from the witness
    needed = [v for v in rr.verdicts if not v.redundant]
    assert len(needed) == len(waits) and all(v.how == "graph" and v.why.startswith("without it:") for v in needed)


def test_a_wait_placed_too_early_is_suggested_later_not_proved() -> None:
    from oversync_cases import early_wait

    from syncproof.engine.redundant import moved, suggest_moves

    s = early_wait()
    assert not find_redundant(s).redundant  # the wait is needed: nothing to remove
    (sg,) = suggest_moves(s)
    assert "wait(ea)" in sg.sync.label and sg.passed == (sg.after_label,), sg
    assert sg.checked and sg.makespan_after < sg.makespan_before
    assert sg.makespan_before == 30.0 and sg.makespan_after == 20.0  # a, then r; k beside a (cost model: 10 each)
    assert all(r.verdict is Verdict.PROVED for r in check_schedule(sg.schedule).results)
    # one op further (after r, its reader) breaks dataflow: the search stopped at the last good place
    k, rd = (op.id for op in s.ops if op.name in ("k", "r"))
    too_far, _ = moved(s, sg.sync.op, rd)
    assert check_schedule(too_far, ["dataflow"]).result("dataflow").verdict is Verdict.VIOLATED
    assert sg.after == k


def test_phase_steps_without_a_sync_equal_recomputing_them() -> None:
    """The phase rule's steps of the schedule without one sync, made from the
    schedule's own steps, are those computed from scratch (every wait and
    host sync of schedules whose syncs end steps)."""
    from syncproof.bench.generators import schedule_of_size
    from syncproof.semantics.obligations import phase_obligations, phase_steps, phase_steps_without

    cases = [schedule_of_size(1000, "decode", False, True), build("overlap-scheduler", {"wait": "oversync"}, None),
             build("async-decode", {}, None), build("kv", {"steps": 2}, None)]
    tried = 0
    for s in cases:
        steps = phase_steps(s)
        for sy in syncs_of(s):
            if sy.kind not in ("wait", "host sync"):
                continue
            got = phase_steps_without(s, steps, sy.op)
            if got is None:
                continue
            tried += 1
            assert set(phase_obligations(s, got)) == set(phase_obligations(without(s, [sy]))), sy.label
    assert tried > 200


def test_the_redundancy_benchmark_rows_and_its_target_line() -> None:
    """bench --redundant: both shapes at a small size (the host syncs all
    redundant, each confirmed by a re-check); the target is judged on the
    as-generated schedule at 10^5 ops only."""
    from syncproof.bench.oversync import run_redundancy
    from syncproof.commands.bench import redundancy_target

    rows = run_redundancy([800], repeats=1)
    gen, host = rows
    assert gen["shape"] == "as generated" and gen["redundant"] == 0 and gen["checks"] == 1
    assert host["shape"] == "host syncs" and host["redundant"] > 0 and host["checks"] == host["redundant"] + 1
    assert host["recheck_seconds"] > 0 and gen["ratio"] > 0
    assert "not measured" in redundancy_target(rows)
    big = {**gen, "ops": 109_824}
    assert ": met (1.5x" in redundancy_target([{**big, "ratio": 1.5}, {**host, "ratio": 90.0}])
    assert "NOT met (2.5x" in redundancy_target([{**big, "ratio": 2.5}])
