"""Repair hints: for every broken example the hint is produced and the
re-check of the edited copy proves the property; where no local sync can
help, the hint says so instead of claiming a fix.  Hints are realizable (the
edited copy loads as a file), never loop, and are labelled proved only when
nothing new breaks; the runtime model v2's rules (values carried by messages,
progress and message-blocking edges, group calls, weak collectives, puts)
get hints of their own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from example_cases import BROKEN, checked

from syncproof import Counterexample, Schedule, Verdict, check_schedule, load
from syncproof.engine.repair import MAX_ROUNDS, Hint, hint_for, repair_hint, report_hints
from syncproof.ir import ScheduleBuilder, schedule_from_dict, schedule_to_dict
from syncproof.render.jsonout import report_json
from syncproof.render.text import report_text

ROOT = Path(__file__).resolve().parent.parent

CASES = [(n, r.property) for n in BROKEN for r in checked(n)[1].results if r.verdict is Verdict.VIOLATED]


def hint_of(name: str, prop: str) -> Hint:
    s, rep = checked(name)
    hint = repair_hint(s, rep.result(prop), report=rep)
    assert hint is not None
    return hint


def test_every_broken_example_has_a_violation_to_repair() -> None:
    assert {n for n, _ in CASES} == set(BROKEN)


@pytest.mark.parametrize(("name", "prop"), CASES, ids=[f"{n}.{p}" for n, p in CASES])
def test_hint_is_proved_by_rechecking_the_edited_copy(name: str, prop: str) -> None:
    s, _ = checked(name)
    hint = hint_of(name, prop)
    assert hint.status == "proved" and hint.proved, hint.text
    assert dict(hint.recheck)[prop] == "proved"
    assert hint.repaired is not None and hint.repaired is not s
    # check the edited copy again, independently: the other engine (the hint used hybrid)
    again = check_schedule(hint.repaired, (prop,), engine="z3")
    assert again.result(prop).verdict is Verdict.PROVED, again.result(prop)
    assert hint.steps and hint.text.startswith(hint.steps[0][:20])


@pytest.mark.parametrize(("name", "prop"), [c for c in CASES if c[1] in ("dataflow", "race", "phase")],
                         ids=lambda c: str(c))
def test_order_violations_are_fixed_by_adding_one_event_per_rank(name: str, prop: str) -> None:
    s, _ = checked(name)
    hint = hint_of(name, prop)
    assert all(step.startswith("add record(") and "wait(" in step for step in hint.steps)
    assert hint.repaired is not None
    added = len(hint.repaired.ops) - len(s.ops)
    assert added == 2 * len(hint.steps)
    # nothing else changed: every original op keeps its label
    assert set(s.labels) <= set(hint.repaired.labels)


def test_the_walkthrough_hint_names_the_missing_event() -> None:
    hint = hint_of("tp-allreduce-nowait", "dataflow")
    assert hint.text.startswith("add record(fix0) on r0/comm right after all_reduce#0(tp) L0, and wait(fix0)"
                                " on r0/compute right before next_matmul L1; the same on rank 1")
    assert dict(hint.recheck) == {p: "proved" for p in ("matching", "deadlock", "dataflow", "race", "phase")}


def test_deadlock_and_matching_hints_reorder() -> None:
    dl = hint_of("pp-sendrecv-deadlock", "deadlock")
    assert "issue send(->0,tok)#0 mb0 before recv(<-0,act)#0 mb1" in dl.text
    mm = hint_of("collective-order-mismatch", "matching")
    assert mm.text.startswith("on rank 1, swap the issue order of all_reduce#0(tp) L0 and all_gather#1(tp) L0")


def test_a_hint_that_proves_one_property_says_what_is_still_broken() -> None:
    hint = hint_of("kv-decode-step-early", "dataflow")
    assert hint.proved and "still not proved: phase" in hint.text


def test_cross_rank_order_gets_a_send_recv() -> None:
    """Step 1 on rank 1 may start before rank 0 has sampled step 0's token:
    no event can help across ranks, a send/recv pair does."""
    b = ScheduleBuilder("cross")
    b.buffer("x", "step")
    b.rank(0).compute("sampler", writes={"x[step=1]": "tok1"}, phase="decode", step=0, seqs=[0], sample=True)
    b.rank(1).compute("embed", phase="decode", step=1, seqs=[0])
    s = b.build()
    rep = check_schedule(s, ("phase",))
    assert rep.result("phase").verdict is Verdict.VIOLATED
    hint = repair_hint(s, rep.result("phase"), report=rep)
    assert hint is not None and hint.proved, hint
    assert "send(->1," in hint.text and "recv(<-0," in hint.text


def test_no_local_fix_is_said_plainly() -> None:
    # a read of a value nothing writes
    b = ScheduleBuilder("nowriter")
    b.buffer("h")
    b.rank(0).compute("mm", reads={"h": "sum"})
    s = b.build()
    rep = check_schedule(s, ("dataflow",))
    hint = repair_hint(s, rep.result("dataflow"))
    assert hint is not None and hint.status == "no_fix" and not hint.proved
    assert "no local fix" in hint.text and "cannot create" in hint.text
    # SP inside a decode step: metadata, not a missing sync
    b = ScheduleBuilder("spdecode")
    b.rank(0).compute("attn", phase="decode", step=0, sp="0/2")
    s = b.build()
    rep = check_schedule(s, ("phase",))
    hint = repair_hint(s, rep.result("phase"))
    assert hint is not None and hint.status == "no_fix" and "metadata" in hint.text
    # the reader is issued before its writer on another stream: a wait would be a no-op
    b = ScheduleBuilder("issued-early")
    b.buffer("h")
    r = b.rank(0)
    r.compute("reader", stream="compute", reads={"h": "v"})
    r.compute("writer", stream="side", writes={"h": "v"})
    s = b.build()
    rep = check_schedule(s, ("dataflow",))
    hint = repair_hint(s, rep.result("dataflow"))
    assert hint is not None and hint.status == "no_fix" and "issued before" in hint.text


def test_unproved_when_the_rounds_run_out() -> None:
    s, rep = checked("tp-allreduce-nowait")
    hint = repair_hint(s, rep.result("dataflow"), max_rounds=1)
    assert hint is not None and hint.status == "unproved" and not hint.proved
    assert "still violated" in hint.text and "repair (unproved)" in hint.line()


def test_no_hint_for_a_proved_property() -> None:
    s, rep = checked("tp-allreduce-nowait")
    assert repair_hint(s, rep.result("matching")) is None
    assert hint_for(s, rep.result("phase")) is None


def test_hints_in_text_and_json_come_from_report_hints() -> None:
    s, rep = checked("tp-allreduce-nowait")
    hints = report_hints(s, rep)
    assert set(hints) == {r.property for r in rep.results if r.verdict is Verdict.VIOLATED}
    text = report_text(s, rep, hints=hints)
    assert "    repair (proved by re-check): add record(fix0)" in text
    doc = report_json(s, rep, hints=hints)
    for item in doc["results"]:
        if item["verdict"] == "violated":
            assert item["repair"]["proved"] is True and item["repair"]["status"] == "proved"
            assert item["repair"]["recheck"][item["property"]] == "proved"
        else:
            assert "repair" not in item
    assert "repair" not in report_text(s, rep)  # no hints handed in: none shown, none computed
    assert all("repair" not in item for item in report_json(s, rep)["results"])


def _count_hint_searches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count the calls of the hint search (every renderer path goes through
    ``repair_hint``); the memo of ``hint_for`` is cleared so it cannot hide
    a second caller."""
    import syncproof.engine.repair as repair

    calls: list[str] = []
    real = repair.repair_hint

    def counting(schedule: Schedule, result: Any, **kw: Any) -> Hint | None:
        calls.append(result.property)
        return real(schedule, result, **kw)

    monkeypatch.setattr(repair, "repair_hint", counting)
    monkeypatch.setattr(repair, "_CACHE", {})
    return calls


@pytest.mark.parametrize("fmt", ["json", "text", "sarif"])
def test_check_computes_each_hint_once_for_every_output(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`check --format F --out DIR` writes the hint into the printed report,
    the JSON, the text file, the pictures and the traces, and searches for it
    once per violated property."""
    from syncproof.cli import main

    calls = _count_hint_searches(monkeypatch)
    path = ROOT / "examples" / "tp-allreduce-nowait.json"
    assert main(["check", str(path), "--format", fmt, "--out", str(tmp_path)]) == 1
    printed = capsys.readouterr().out
    violated = sorted(r.property for r in checked("tp-allreduce-nowait")[1].results
                      if r.verdict is Verdict.VIOLATED)
    assert sorted(calls) == violated
    assert "repair (proved by re-check)" in printed
    assert "repair (proved by re-check)" in (tmp_path / "tp-allreduce-nowait.txt").read_text()
    for prop in violated:
        assert "repair (proved by re-check)" in (tmp_path / f"tp-allreduce-nowait.{prop}.dot").read_text()
        trace = json.loads((tmp_path / f"tp-allreduce-nowait.{prop}.trace.json").read_text())
        assert trace["otherData"]["repair"].startswith("repair (proved by re-check)")


def test_renderers_do_not_import_the_engine() -> None:
    """The renderers get hints handed in: none of the report renderers imports
    the engine (``oversync.py``, the redundancy report, is the engine's cost
    model's renderer and is not one of them)."""
    import ast

    for path in sorted((ROOT / "formal" / "render").glob("*.py")):
        if path.name == "oversync.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                mod = "." * node.level + (node.module or "")
                assert "engine" not in mod.split("."), f"{path.name} imports {mod}"
            elif isinstance(node, ast.Import):
                assert all("engine" not in a.name.split(".") for a in node.names), path.name


def test_automatic_hints_stop_at_a_size() -> None:
    s, rep = checked("tp-allreduce-nowait")
    hint = hint_for(s, rep.result("race"), rep, max_ops=5)
    assert hint is not None and hint.status == "unproved" and "not attempted" in hint.text


# ------------------------------------------------------------ runtime model v2
LITMUS = ROOT / "tests" / "litmus"


def litmus_hint(name: str, prop: str) -> tuple[Schedule, Hint]:
    s = load(LITMUS / f"{name}.json")
    rep = check_schedule(s)
    assert rep.result(prop).verdict is Verdict.VIOLATED
    hint = repair_hint(s, rep.result(prop), report=rep)
    assert hint is not None
    return s, hint


def assert_realizable_and_clean(s: Schedule, hint: Hint) -> None:
    """The edited copy loads as a file would, proves the property on the
    other engine, and nothing proved on the original is broken."""
    assert hint.repaired is not None
    again = schedule_from_dict(schedule_to_dict(hint.repaired), "<repaired>")
    before = {r.property: r.verdict for r in check_schedule(s).results}
    after = check_schedule(again, engine="z3")
    assert after.result(hint.property).verdict is Verdict.PROVED
    for r in after.results:
        if before[r.property] is not Verdict.VIOLATED:
            assert r.verdict is Verdict.PROVED, (r.property, r.reason, r.counterexample)


V2_CASES = [
    # (litmus, property, words the hint must use)
    ("kv-swapped-one-fifo", "dataflow", "swap the issue order of recv(<-0)#0 and recv(<-0)#1"),
    ("pp-recv-mb1-before-mb0", "dataflow", "post the recv of 'act(mb0)' first"),
    ("crossed-communicators", "deadlock", "launch all_reduce#0(g1) before all_reduce#0(g2), matching rank 0"),
    ("exchange-no-batch", "deadlock", "as one group call (ncclGroupStart/End; torch batch_isend_irecv)"),
    ("one-comm-two-streams-recv-send", "deadlock", "NCCL runs communicator 'p2p:0-1''s ops in issue order"),
    ("batch-relay", "dataflow", "take send(->2)#0 out of group call 'relay'"),
    ("weak-allreduce-input-reuse", "dataflow", "add barrier(g) right after all_reduce#0(g) on every member"),
    ("put-no-wait", "race", "add wait_signal(<-0,ready) on r1/c right before read_dst"),
    ("broadcast-root-returns-early", "dataflow", "1-element eager send(->0,"),
    ("phase-relies-on-rendezvous", "phase", "marked eager"),
]


@pytest.mark.parametrize(("name", "prop", "words"), V2_CASES, ids=[c[0] for c in V2_CASES])
def test_v2_rules_get_realizable_proved_hints(name: str, prop: str, words: str) -> None:
    s, hint = litmus_hint(name, prop)
    assert hint.proved, hint.text
    assert words in hint.text, hint.text
    assert_realizable_and_clean(s, hint)


def test_every_litmus_hint_is_realizable_never_loops_and_proved_only_when_clean() -> None:
    n = 0
    for path in sorted(LITMUS.glob("*.json")):
        if path.name == "catalogue.json":
            continue
        s = load(path)
        rep = check_schedule(s)
        for r in rep.results:
            if r.verdict is not Verdict.VIOLATED:
                continue
            hint = repair_hint(s, r, report=rep)
            assert hint is not None
            assert len(hint.steps) == len(set(hint.steps)) <= MAX_ROUNDS, hint.steps
            if hint.proved:
                assert_realizable_and_clean(s, hint)
                n += 1
    assert n >= 20


def test_a_size_only_mismatch_is_not_a_reorder_and_never_loops() -> None:
    """Before: 'swap all_reduce#0 and all_reduce#1; the same on rank 1' eight
    times, each swap undoing the previous one."""
    b = ScheduleBuilder("size-only")
    b.group("tp", [0, 1, 2])
    for r in range(3):
        b.rank(r).all_reduce("tp", size=4 if r == 1 else 8)
        b.rank(r).all_reduce("tp", size=8)
    s = b.build()
    rep = check_schedule(s)
    hint = repair_hint(s, rep.result("matching"), report=rep)
    assert hint is not None and hint.status == "no_fix" and not hint.steps
    assert "all_reduce (size 4)" in hint.text and "no reorder or sync fixes that" in hint.text
    # a p2p size mismatch: the same, and a swap when the sizes are only out of order
    for recv_sizes, status in (([4, 4], "no_fix"), ([4, 8], "proved")):
        b = ScheduleBuilder("p2p-size")
        b.rank(0).send(1, size=8).send(1, size=4)
        b.rank(1).recv(0, size=recv_sizes[0]).recv(0, size=recv_sizes[1])
        s = b.build()
        rep = check_schedule(s)
        hint = repair_hint(s, rep.result("matching"), report=rep)
        assert hint is not None and hint.status == status, hint.text


def test_edits_that_undo_each_other_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the candidates, the search never revisits a schedule nor
    repeats a step, and stops after MAX_ROUNDS."""
    import syncproof.engine.repair as repair

    b = ScheduleBuilder("flip")
    b.group("tp", [0, 1])
    b.rank(0).all_reduce("tp", size=4).all_reduce("tp", size=8)
    b.rank(1).all_reduce("tp", size=8).all_reduce("tp", size=2)
    s = b.build()
    rep = check_schedule(s)

    def always_swap(sch: Schedule, cex: Counterexample) -> tuple[list[Any], str]:
        ops = [o for o in sch.by_rank[1] if o.kind.is_collective]
        return [repair._Edit("swap", ops[0].id, ops[1].id)], ""

    monkeypatch.setattr(repair, "_candidates", always_swap)
    hint = repair.repair_hint(s, rep.result("matching"), report=rep)
    assert hint is not None and hint.status == "unproved"
    assert len(hint.steps) <= 1 and len(set(hint.steps)) == len(hint.steps)


def test_a_matching_sentence_where_no_rank_waits_names_who_waits() -> None:
    """Before: 'where ranks  wait for rank 2' (an empty list)."""
    b = ScheduleBuilder("extra")
    b.group("tp", [0, 1, 2])
    for r in range(3):
        b.rank(r).all_reduce("tp")
    b.rank(2).all_reduce("tp")
    s = b.build()
    rep = check_schedule(s)
    cex = rep.result("matching").counterexample
    assert cex is not None
    sentence = cex.sentence
    assert "ranks  " not in sentence
    assert sentence.endswith("where rank 2 waits for ranks 0, 1, which never issue it")
    hint = repair_hint(s, rep.result("matching"), report=rep)
    assert hint is not None and hint.status == "no_fix" and "missing or extra collective" in hint.text


def relay(back_value: str) -> Schedule:
    """Rank 1 relays what it receives on stream s1 through an event to a
    send on s2; rank 0 posts its recv of the reply before its send."""
    b = ScheduleBuilder("relay-wait", progress="concurrent")
    b.buffer("a")
    b.buffer("z")
    b.buffer("w")
    b.init("a", "a0", ranks=[0])
    b.rank(0).recv(1, stream="comm", channel="back", writes={"w": back_value}).send(1, stream="comm",
                                                                                   reads={"a": "a0"})
    r1 = b.rank(1)
    r1.recv(0, stream="s1", writes={"z": "a0"}).record("f", stream="s1")
    r1.wait("f", stream="s2").send(0, stream="s2", channel="back", reads={"z": "a0"})
    return b.build()


def test_a_hint_never_removes_a_wait_to_break_a_cycle() -> None:
    """Before: 'on rank 1, issue record(f) before recv(<-0)#0 (proved by
    re-check; still not proved: dataflow, race)': the event no longer covers
    the recv, so the wait orders nothing, and the relay reads too early."""
    s = relay("a0")
    rep = check_schedule(s)
    hint = repair_hint(s, rep.result("deadlock"), report=rep)
    assert hint is not None and hint.proved, hint.text
    assert "record(f)" not in hint.text and hint.text.startswith("on rank 0, issue send(->1)#0 before")
    assert dict(hint.recheck) == {p: "proved" for p in ("matching", "deadlock", "dataflow", "race", "phase")}


def test_proved_only_when_nothing_that_could_not_be_checked_is_then_violated() -> None:
    """The deadlock hid a value mismatch: the edit proves deadlock, but the
    re-check then finds dataflow violated, which the original could not be
    checked for; the hint does not claim a fix."""
    s = relay("z1")
    rep = check_schedule(s)
    assert rep.result("dataflow").verdict is Verdict.UNKNOWN
    hint = repair_hint(s, rep.result("deadlock"), report=rep)
    assert hint is not None and hint.status == "unproved"
    assert "this proves deadlock, but dataflow (could not be checked before) is then violated" in hint.text
    assert dict(hint.recheck)["dataflow"] == "violated"


def test_every_candidate_edit_of_a_communicator_cycle_loads() -> None:
    """Candidates for a cycle through one communicator's issue order: the
    reorder, a communicator of its own for the messages, each realizable."""
    import syncproof.engine.repair as repair

    s = load(LITMUS / "one-comm-two-streams-recv-send.json")
    cex = check_schedule(s).result("deadlock").counterexample
    assert cex is not None
    edits, _ = repair._candidates(s, cex)
    assert {e.kind for e in edits} >= {"move", "own_comm"}
    for e in edits:
        edited, text = repair._apply(s, e, repair._Names(s))
        assert schedule_from_dict(schedule_to_dict(edited), "<edited>").ops
        if e.kind == "own_comm":
            assert "a communicator of their own (channel fix0)" in text
            assert check_schedule(edited).result("matching").verdict is Verdict.PROVED


def test_a_wait_bound_to_an_earlier_record_is_moved_after_the_record_it_was_meant_for() -> None:
    """An event recorded again each iteration: the hint re-issues the wait
    after this iteration's record instead of adding a new event pair."""
    from syncproof.engine.check import check_schedule
    from syncproof.engine.repair import hint_for
    from syncproof.ir import loads

    s = loads(json.dumps({"syncproof": 2, "buffers": {"x": ["step"]}, "ranks": {"0": [
        {"op": "compute", "stream": "copy", "name": "load0", "writes": {"x[step=0]": "in0"}},
        {"op": "record", "stream": "copy", "event": "copied"},
        {"op": "wait", "stream": "compute", "event": "copied"},
        {"op": "compute", "stream": "compute", "name": "fwd0", "reads": {"x[step=0]": "in0"}},
        {"op": "wait", "stream": "compute", "event": "copied"},
        {"op": "compute", "stream": "copy", "name": "load1", "writes": {"x[step=1]": "in1"}},
        {"op": "record", "stream": "copy", "event": "copied"},
        {"op": "compute", "stream": "compute", "name": "fwd1", "reads": {"x[step=1]": "in1"}}]}}))
    rep = check_schedule(s)
    hint = hint_for(s, rep.result("dataflow"), rep)
    assert hint.proved
    assert "issue wait(copied) right after record(copied)" in hint.line()
    assert "fix" not in hint.line()  # no new event pair
