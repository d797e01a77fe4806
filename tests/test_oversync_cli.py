"""Issue 14 on the command line: ``check --redundant [--durations FILE]``,
``minimize``, their JSON, the durations file, and the critical path's trace
and picture (``--out``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncproof.cli import COMMANDS, main
from syncproof.engine import check_schedule
from syncproof.engine.redundant import makespan, syncs_of
from syncproof.ir import ScheduleBuilder, load
from syncproof.models.registry import build
from syncproof.render.oversync import COST_MODEL, earliest_times, load_durations, sync_costs
from syncproof.render.picture import backend

OVERSYNC = ["--model", "overlap-scheduler", "--set", "wait=oversync"]
STEM = "overlap-scheduler[wait=oversync]"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def sched_state_waits() -> set[str]:
    """``r<rank>#<index>`` of every forward-stream wait(sched_state): the
    direction the SGLang fix added that nothing needs."""
    s = build("overlap-scheduler", {"wait": "oversync"})
    return {f"r{op.rank}#{op.index}" for op in s.ops
            if op.kind.value == "wait" and op.event == "sched_state" and op.stream == "forward"}


def test_minimize_is_a_command() -> None:
    assert "minimize" in COMMANDS


def test_redundant_names_exactly_the_forward_waits_on_the_schedule_stream(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["check", *OVERSYNC, "--redundant", "--format", "json"], capsys)
    assert code == 0
    red = json.loads(out)["redundant"]
    want = sched_state_waits()
    assert len(want) == 4  # tp=2, steps=3: one per rank and batch after the first
    got = {d["id"] for d in red["syncs"] if d["redundant"]}
    assert got == want
    for d in red["syncs"]:
        assert set(d) >= {"label", "id", "op_ids", "kind", "redundant", "verdict", "how", "decided", "confirmed",
                          "needed_for", "why", "cost", "on_critical_path"}
        if d["redundant"]:
            assert d["label"] == f"r{d['id'][1]}/forward: wait(sched_state)"
            assert d["confirmed"] is True and d["how"] in ("implied", "graph", "re-check") and d["needed_for"] is None
        else:
            assert d["verdict"] == "needed" and d["needed_for"] in ("dataflow", "race") and d["why"]
            assert "__removed_sync_" not in d["why"]
    assert red["count"] == len(red["syncs"]) == 20 and red["redundant_count"] == 4
    assert red["durations"].startswith("cost model: ")
    s = build("overlap-scheduler", {"wait": "oversync"})
    assert red["makespan"] == makespan(s)[0]
    assert red["critical_path_ids"] == list(makespan(s)[1])
    assert red["proved"] == ["matching", "deadlock", "dataflow", "race", "phase"]


def test_redundant_text_says_how_each_was_decided(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["check", *OVERSYNC, "--redundant", "--no-grid"], capsys)
    assert code == 0
    assert "dataflow  proved" in out  # the usual report comes first
    section = out[out.index("over-synchronization:"):]
    assert "20 syncs, 4 redundant, 16 needed" in section
    lines = section.splitlines()
    red = [i for i, line in enumerate(lines) if line.strip().startswith("redundant ")]
    assert len(red) == 4
    for i in red:
        assert "wait(sched_state)" in lines[i] and "cost 0 us" in lines[i]
        assert "confirmed by re-check" in lines[i + 1]
        assert ("the schedule without it proves everything that was proved" in lines[i + 1]
                or "implied by other edges" in lines[i + 1])
    needed = [i for i, line in enumerate(lines)
              if line.strip().startswith("needed ") and not line.strip().startswith("needed for")]
    assert len(needed) == 16
    assert all(lines[i + 1].strip().startswith(("needed for dataflow: without it:", "needed for race: without it:"))
               for i in needed)
    assert f"cost model: {COST_MODEL}" in section
    assert "makespan " in section and "no sync lengthens the makespan" in section


def test_the_exit_code_stays_the_checks(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["check", "examples/tp-allreduce-nowait.json", "--redundant", "--no-grid"], capsys)
    assert code == 1
    assert "dataflow  VIOLATED" in out and "over-synchronization:" in out
    code, out, _ = run_cli(["check", "examples/choices/dp-idle-skips-gather.json", "--redundant", "--no-grid"],
                           capsys)
    assert code == 1
    if "against what was proved: nothing" in out:
        assert "not judged" in out and "redundant " not in out.split("over-synchronization:")[1]


def test_minimize_removes_exactly_those_and_writes_a_proved_schedule(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "min.json"
    code, out, _ = run_cli(["minimize", *OVERSYNC, "-o", str(out_file), "--format", "json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert {d["id"] for d in doc["removed"]} == sched_state_waits()
    assert len(doc["kept"]) == 16 and doc["syncs"] == 20
    assert doc["optimal"] is True and doc["already_minimal"] is False
    assert doc["recheck"]["from_scratch"] is True and doc["recheck"]["exit_code"] == 0
    assert {r["verdict"] for r in doc["recheck"]["results"]} == {"proved"}
    assert doc["written"] == str(out_file)
    assert set(doc["makespan"]) == {"before", "after", "durations"}
    m = load(out_file)
    assert len(m.ops) == 90 - 4
    assert not any(op.event == "sched_state" and op.kind.value == "wait" for op in m.ops)
    assert check_schedule(m).exit_code == 0
    assert len(syncs_of(m)) == 16


def test_minimize_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "min.json"
    code, out, _ = run_cli(["minimize", *OVERSYNC, "-o", str(out_file)], capsys)
    assert code == 0
    assert "removes 4, keeps 16: optimal" in out
    assert sum(1 for line in out.splitlines() if line.strip().startswith("removed ")) == 4
    assert ("re-checked from scratch (every property that was proved): matching proved, deadlock proved,"
            " dataflow proved, race proved, phase proved") in out
    assert f"wrote {out_file}" in out
    code, out, _ = run_cli(["minimize", "--model", "overlap-scheduler"], capsys)
    assert code == 0
    assert "the given schedule is already minimal" in out


def test_minimize_by_cost_and_on_a_schedule_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "d.json"
    d.write_text(json.dumps({"r0/schedule: prepare_batch": 100}), encoding="utf-8")
    code, out, _ = run_cli(["minimize", *OVERSYNC, "--weights", "cost", "--durations", str(d), "--format",
                            "json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["weights"] == "cost" and {x["id"] for x in doc["removed"]} == sched_state_waits()
    assert doc["makespan"]["durations"].startswith(f"durations: {d}")
    code, out, _ = run_cli(["minimize", "examples/tp-allreduce-wait.json", "--format", "json"], capsys)
    assert code == 0 and json.loads(out)["already_minimal"] is True


@pytest.mark.parametrize("content, words", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"r0#0": -1}', "non-negative number"),
    ('{"r0#0": "ten"}', "non-negative number"),
    ('{"r0#0": true}', "non-negative number"),
    ('{"r0#0": 1' + "0" * 400 + '}', "at most 1e+15"),  # beyond any float: math.isfinite overflowed on it
    ('{"r0#0": 1e400}', "at most 1e+15"),
    ('{"no such op": 3}', "no op is labelled"),
    ('{"r9#0": 3}', "no op"),
    ('{"r0#0": 3, "r0/host: schedule_batch": 4}', None),  # a shared label: every op with it; r0#0 wins
])
def test_durations_file_errors_exit_2_and_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         content: str, words: str | None) -> None:
    d = tmp_path / "durations.json"
    d.write_text(content, encoding="utf-8")
    for cmd in (["check", *OVERSYNC, "--redundant", "--no-grid", "--durations", str(d)],
                ["minimize", *OVERSYNC, "--durations", str(d)]):
        code, _, err = run_cli(cmd, capsys)
        if words is None:
            assert code == 0, err
            continue
        assert code == 2, err
        assert str(d) in err and words in err
        assert "Traceback" not in err and "internal error" not in err


def test_durations_file_missing_and_durations_without_redundant(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["check", *OVERSYNC, "--redundant", "--durations", str(tmp_path / "nope.json")], capsys)
    assert code == 2 and "nope.json" in err
    code, _, err = run_cli(["check", *OVERSYNC, "--durations", str(tmp_path / "nope.json")], capsys)
    assert code == 2 and "--durations needs --redundant" in err


def test_durations_give_costs_and_the_top_syncs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "d.json"
    d.write_text(json.dumps({"r0/schedule: prepare_batch": 100, "r1#1": 50}), encoding="utf-8")
    s = build("overlap-scheduler", {"wait": "oversync"})
    dur = load_durations(d, s)
    assert dur[s.by_rank[1][1].id] == 50.0
    assert sorted(v for o, v in dur.items() if s.ops[o].rank == 0) == [100.0, 100.0, 100.0]
    code, out, _ = run_cli(["check", *OVERSYNC, "--redundant", "--no-grid", "--durations", str(d)], capsys)
    assert code == 0
    assert "top syncs by cost (makespan with minus without):" in out
    assert f"durations: {d} (4 ops)" in out
    code, out, _ = run_cli(["check", *OVERSYNC, "--redundant", "--durations", str(d), "--format", "json"], capsys)
    red = json.loads(out)["redundant"]
    assert red["makespan"] == makespan(s, dur)[0] > makespan(s)[0]
    assert red["top"] and red["top"][0]["cost"] > 0
    assert [t["cost"] for t in red["top"]] == sorted((t["cost"] for t in red["top"]), reverse=True)
    assert all(x["cost"] == 0 for x in red["syncs"] if x["redundant"])


def test_out_writes_the_critical_path_trace_and_picture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    code, _, _ = run_cli(["check", *OVERSYNC, "--redundant", "--no-grid", "--out", str(out)], capsys)
    assert code == 0
    for suffix in (".json", ".txt", ".redundant.json", ".redundant.txt", ".critical.trace.json", ".critical.dot"):
        assert (out / f"{STEM}{suffix}").is_file(), suffix
    if backend() is not None:
        assert (out / f"{STEM}.critical.svg").read_text(encoding="utf-8").lstrip().startswith(("<?xml", "<svg"))
    s = build("overlap-scheduler", {"wait": "oversync"})
    span, path = makespan(s)
    trace = json.loads((out / f"{STEM}.critical.trace.json").read_text(encoding="utf-8"))
    slices = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(slices) == len(s.ops)
    assert sorted(e["args"]["id"] for e in slices if e["args"].get("critical")) == sorted(path)
    assert max(e["ts"] + e["dur"] for e in slices) == span == trace["otherData"]["makespan_us"]
    assert any(e["ph"] == "s" and e["cat"] == "critical" for e in trace["traceEvents"])
    dot = (out / f"{STEM}.critical.dot").read_text(encoding="utf-8")
    assert all(f"o{o} [" in dot for o in path)
    assert "#d62728" in dot  # the syncs on the path are red
    redundant = json.loads((out / f"{STEM}.redundant.json").read_text(encoding="utf-8"))
    assert redundant["redundant_count"] == 4


@pytest.mark.parametrize("model, params", [("overlap-scheduler", {"wait": "oversync"}), ("overlap-scheduler", {}),
                                           ("async-decode", {})])
def test_earliest_times_follow_the_engines_makespan(model: str, params: dict[str, str]) -> None:
    s = build(model, params)
    dur = {op.id: float(op.id % 7) for op in s.ops}
    for d in (None, dur):
        t = earliest_times(s, d)
        assert t.complete
        assert t.makespan == makespan(s, d)[0]
        for op in s.ops:
            st, en = t.start[op.id], t.end[op.id]
            assert st is not None and en is not None and en >= st + t.duration[op.id] - 1e-9
        for ops in s.streams.values():
            for a, b in zip(ops, ops[1:], strict=False):
                if a.batch is None or a.batch != b.batch:
                    assert (t.start[b.id] or 0) >= (t.end[a.id] or 0) - 1e-9


@pytest.mark.parametrize("model, params", [("overlap-scheduler", {"wait": "oversync"}), ("async-decode", {}),
                                           ("overlap-scheduler", {"tp": "1"})])
def test_costs_off_the_critical_path_are_zero_as_computed_one_by_one(model: str, params: dict[str, str]) -> None:
    from syncproof.engine.redundant import without
    from syncproof.render.oversync import removed_durations

    s = build(model, params)
    syncs = syncs_of(s)
    for dur in ({}, {op.id: float(op.id % 5) * 3 for op in s.ops}):
        costs = sync_costs(s, syncs, dur, "")
        for sy in syncs:
            brute = costs.makespan - makespan(without(s, [sy]), removed_durations(dur, [sy]))[0]
            assert costs.per_sync[sy.ops] == pytest.approx(brute), sy.label


def test_a_cycle_of_waits_says_no_run_finishes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"syncproof": 2, "name": "cyc", "groups": {}, "buffers": {"x": [], "y": []}, "ranks": {
        "0": [{"op": "recv", "from": 1, "stream": "p2p", "writes": {"x": "B"}},
              {"op": "send", "to": 1, "stream": "p2p", "reads": {"y": "A"}},
              {"op": "record", "event": "e", "stream": "p2p"}, {"op": "wait", "event": "e", "stream": "c"}],
        "1": [{"op": "recv", "from": 0, "stream": "p2p", "writes": {"y": "A"}},
              {"op": "send", "to": 0, "stream": "p2p", "reads": {"x": "B"}}]}}
    f = tmp_path / "cyc.json"
    f.write_text(json.dumps(doc), encoding="utf-8")
    code, out, err = run_cli(["check", str(f), "--redundant", "--no-grid", "--out", str(tmp_path / "o")], capsys)
    assert code == 1, err
    assert "ops never run (a cycle of waits)" in out
    trace = json.loads((tmp_path / "o/cyc.critical.trace.json").read_text(encoding="utf-8"))
    assert any(e.get("args", {}).get("never_runs") for e in trace["traceEvents"])


def test_a_removed_barrier_takes_no_time() -> None:
    """A sync's cost is the makespan with it minus without it: the barrier is
    deleted, its own duration goes with it (it does not become a compute)."""
    b = ScheduleBuilder("bar").group("g", [0, 1]).buffer("x").buffer("y")
    b.rank(0).compute("a", stream="compute", writes={"x": "A"}).barrier("g", stream="compute")
    b.rank(1).barrier("g", stream="compute").compute("b", stream="compute", writes={"y": "B"})
    s = b.build()
    syncs = syncs_of(s)
    assert [sy.kind for sy in syncs] == ["barrier"]
    costs = sync_costs(s, syncs, {}, "cost model")
    # rank 1's barrier ends once rank 0's has started, after a (10); then b (10)
    assert costs.makespan == 20.0
    assert costs.per_sync[syncs[0].ops] == 10.0  # without it a and b run side by side


def test_minimize_suggests_a_wait_later_as_a_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A wait placed before an independent compute: nothing can be removed,
    and minimize suggests moving the wait after it (a change, re-checked),
    in text and JSON; --suggest 0 turns it off; a bad count exits 2."""
    from oversync_cases import early_wait

    from syncproof.ir import save

    f = tmp_path / "early.json"
    save(early_wait(), f)
    assert main(["minimize", str(f)]) == 0
    out = capsys.readouterr().out
    assert "already minimal" in out
    assert "suggestions (changes to the minimized schedule, not results about it" in out
    assert "move r0/c: wait(ea) later, to just after r0/c: k" in out and "30 us -> 20 us" in out
    assert main(["minimize", str(f), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (sg,) = doc["suggestions"]
    assert sg["kind"] == "suggestion" and sg["move_after"] == "r0/c: k" and sg["rechecked_from_scratch"]
    assert sg["makespan_before"] == 30.0 and sg["makespan_after"] == 20.0
    assert doc["already_minimal"] is True  # the suggestion is not a removal
    assert main(["minimize", str(f), "--suggest", "0", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["suggestions"] == []
    assert main(["minimize", str(f), "--suggest", "-1"]) == 2
    assert "--suggest" in capsys.readouterr().err
