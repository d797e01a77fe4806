"""Repair hints: for every broken example the hint is produced and the
re-check of the edited copy proves the property; where no local sync can
help, the hint says so instead of claiming a fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from example_cases import BROKEN, checked

from syncproof import Verdict, check_schedule
from syncproof.engine.repair import Hint, hint_for, repair_hint
from syncproof.ir import ScheduleBuilder
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


def test_hints_in_text_and_json_and_computed_once() -> None:
    s, rep = checked("tp-allreduce-nowait")
    first = hint_for(s, rep.result("dataflow"), rep)
    assert first is hint_for(s, rep.result("dataflow"), rep)
    text = report_text(s, rep)
    assert "    repair (proved by re-check): add record(fix0)" in text
    doc = report_json(s, rep)
    for item in doc["results"]:
        if item["verdict"] == "violated":
            assert item["repair"]["proved"] is True and item["repair"]["status"] == "proved"
            assert item["repair"]["recheck"][item["property"]] == "proved"
        else:
            assert "repair" not in item
    assert "repair" not in report_text(s, rep, repair=False)


def test_automatic_hints_stop_at_a_size() -> None:
    s, rep = checked("tp-allreduce-nowait")
    hint = hint_for(s, rep.result("race"), rep, max_ops=5)
    assert hint is not None and hint.status == "unproved" and "not attempted" in hint.text
