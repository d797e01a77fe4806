"""Reports grow with the answer, not with the schedule (issue 16, items 1-2).

Above ``jsonout.EMBED_MAX_OPS`` ops (lowered here so that the tests stay
small) a report references its schedule file by path and sha256 instead of
embedding it, stores each counterexample's run for its cone only, and the
Perfetto trace covers a window around the culprits.  What is written is
enough: ``syncproof render`` draws the same picture and trace from it, and a
replay of the stored partial run confirms the violation.  Replay works on
regions, not points: a region of 2^40 elements costs what a small one does.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from example_cases import BROKEN, checked

from syncproof import check_schedule
from syncproof.bench.generators import schedule_of_size
from syncproof.cli import main
from syncproof.executor import build_model, replay
from syncproof.executor.replay import partial_run, replay_needs
from syncproof.ir import load, save
from syncproof.render import jsonout
from syncproof.render.cone import stored_ops
from syncproof.render.dot import seeds
from syncproof.render.jsonout import counterexample_from_json, model_ref, read_report_json
from syncproof.render.outputs import write_outputs
from syncproof.result import Verdict

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 100  # EMBED_MAX_OPS for these tests


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A ~900-op schedule with a missing wait, checked by the CLI with
    ``--out`` under a 100-op embedding limit: (schedule file, out dir, stem)."""
    d = tmp_path_factory.mktemp("big")
    path = d / "sched.json"
    save(schedule_of_size(1000, fault=True), path)
    out = d / "out"
    mp = pytest.MonkeyPatch()
    mp.setattr(jsonout, "EMBED_MAX_OPS", LIMIT)
    try:
        assert main(["check", str(path), "--out", str(out), "--no-grid"]) == 1
    finally:
        mp.undo()
    return path, out, load(path).name


def _report(big: tuple[Path, Path, str]) -> dict[str, Any]:
    _, out, stem = big
    doc: dict[str, Any] = json.loads((out / f"{stem}.json").read_text())
    return doc


def test_a_large_report_references_its_schedule_by_path_and_hash(big: tuple[Path, Path, str]) -> None:
    path, _, _ = big
    doc = _report(big)
    assert "schedule_doc" not in doc
    ref = doc["schedule_ref"]
    assert Path(ref["path"]) == path.resolve()
    assert ref["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ref["bytes"] == path.stat().st_size


def test_a_large_reports_runs_keep_the_cone_only(big: tuple[Path, Path, str]) -> None:
    doc = _report(big)
    n = doc["ops"]
    cexs = [r["counterexample"] for r in doc["results"] if "counterexample" in r]
    assert cexs
    for cex in cexs:
        part = cex["run_partial"]
        assert part["ops"] == n and part["stored"] == len(cex["run"]) < n // 2
        ids = {item["id"] for item in cex["run"]}
        assert set(cex["culprit_ids"]) <= ids


def test_render_from_the_written_report_reproduces_the_pictures_and_traces(
        big: tuple[Path, Path, str], tmp_path: Path) -> None:
    _, out, stem = big
    doc = _report(big)
    for r in doc["results"]:
        if "counterexample" not in r:
            continue
        prop = r["property"]
        dot, trace = tmp_path / f"{prop}.dot", tmp_path / f"{prop}.json"
        assert main(["render", str(out / f"{stem}.json"), "-p", prop, "-o", str(dot)]) == 0
        assert dot.read_text() == (out / f"{stem}.{prop}.dot").read_text()
        assert main(["render", str(out / f"{stem}.json"), "-p", prop, "-o", str(trace)]) == 0
        assert json.loads(trace.read_text()) == json.loads((out / f"{stem}.{prop}.trace.json").read_text())


def test_a_replay_of_the_stored_partial_run_confirms_the_violation(big: tuple[Path, Path, str]) -> None:
    _, out, _ = big
    doc = _report(big)
    s, items = read_report_json(doc, "report", out)
    model = build_model(s, light=True)
    replayed = 0
    for item in items:
        if "counterexample" in item:
            cex = counterexample_from_json(item["counterexample"], len(s.ops))
            assert cex.run is not None and cex.run.known is not None and len(cex.run.known) < len(s.ops)
            assert replay(s, cex, model=model) == (True, "")
            replayed += 1
    assert replayed >= 1


def test_a_changed_schedule_file_is_refused_with_exit_2(big: tuple[Path, Path, str], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path, out, stem = big
    doc = _report(big)
    copy = tmp_path / "sched.json"
    copy.write_bytes(path.read_bytes() + b"\n")
    doc["schedule_ref"]["path"] = str(copy)
    doc["schedule_ref"].pop("relative", None)
    rep = tmp_path / "report.json"
    rep.write_text(json.dumps(doc))
    assert main(["render", str(rep), "-o", str(tmp_path / "x.dot")]) == 2
    err = capsys.readouterr().err
    assert str(rep) in err and "schedule_ref.sha256" in err and "Traceback" not in err


def test_full_trace_writes_every_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.json"
    save(schedule_of_size(300, fault=True), path)
    monkeypatch.setattr(jsonout, "EMBED_MAX_OPS", LIMIT)
    n = len(load(path).ops)
    assert main(["check", str(path), "--out", str(tmp_path / "o"), "--full-trace", "--no-grid"]) == 1
    stem = load(path).name
    doc = json.loads((tmp_path / "o" / f"{stem}.json").read_text())
    for r in doc["results"]:
        if "counterexample" in r:
            assert "run_partial" not in r["counterexample"] and len(r["counterexample"]["run"]) == n
            trace = json.loads((tmp_path / "o" / f"{stem}.{r['property']}.trace.json").read_text())
            slices = {e["args"]["id"] for e in trace["traceEvents"] if e["ph"] in ("X", "i")}
            assert slices == set(range(n))


def test_a_model_built_schedule_is_written_beside_the_report_once(tmp_path: Path) -> None:
    s = schedule_of_size(300, fault=True)
    rep = check_schedule(s)
    paths = write_outputs(s, rep, tmp_path, ref=model_ref("synthetic", {"n": "300"}, "fault"),
                          embed_max_ops=LIMIT)
    beside = tmp_path / f"{s.name}.schedule.json"
    assert beside in paths and len(load(beside).ops) == len(s.ops)
    doc = json.loads((tmp_path / f"{s.name}.json").read_text())
    assert doc["schedule_ref"]["model"] == "synthetic" and doc["schedule_ref"]["relative"] == beside.name
    assert main(["render", str(tmp_path / f"{s.name}.json"), "-o", str(tmp_path / "x.dot")]) == 0


def _violations() -> list[tuple[str, str]]:
    return [(n, r.property) for n in BROKEN for r in checked(n)[1].results
            if r.verdict is Verdict.VIOLATED and r.counterexample is not None and r.counterexample.run is not None
            and r.selection is None]


@pytest.mark.parametrize(("name", "prop"), _violations(), ids=[f"{n}.{p}" for n, p in _violations()])
def test_every_example_violation_replays_from_its_cone(name: str, prop: str) -> None:
    """Cut to what a replay needs (plus the named ops), every example's run
    replays as the full run does: order, overlap, read, hang, cycle, message
    and metadata observations alike."""
    s, rep = checked(name)
    cex = rep.result(prop).counterexample
    assert cex is not None and cex.run is not None
    full = replay(s, cex)
    keep = replay_needs(s, cex) | set(seeds(cex))
    cut = partial_run(cex.run, keep)
    assert cut.known is not None and set(cut.known) == keep
    from dataclasses import replace

    assert replay(s, replace(cex, run=cut)) == full
    assert stored_ops(s, cex) >= keep


def test_a_partial_run_out_of_order_is_not_confirmed() -> None:
    """The pinned events must be enabled in their stored order: swapping a
    culprit's times with another op's breaks the replay."""
    from dataclasses import replace

    s, rep = checked("tp-allreduce-nowait")
    cex = rep.result("dataflow").counterexample
    assert cex is not None and cex.run is not None
    keep = replay_needs(s, cex)
    start, end = list(cex.run.start), list(cex.run.end)
    o = max(keep, key=lambda k: start[k] or 0)
    first = s.streams[(s.ops[o].rank, s.ops[o].stream)][0].id
    start[o], end[o], start[first], end[first] = start[first], end[first], start[o], end[o]
    bad = partial_run(replace(cex.run, start=tuple(start), end=tuple(end)), keep | {first})
    ok, why = replay(s, replace(cex, run=bad))
    assert not ok and "not admissible" in why


HUGE = 2**40


def _huge_region_schedule(tmp_path: Path) -> Path:
    text = (ROOT / "examples" / "tp-allreduce-nowait.json").read_text()
    for buf in ("part", "h"):
        for layer in (0, 1):
            text = text.replace(f'"{buf}[layer={layer}]"', f'"{buf}[layer={layer}, e=0:{HUGE}]"')
        text = text.replace(f'"{buf}": ["layer"]', f'"{buf}": ["layer", "e"]')
    path = tmp_path / "huge.json"
    path.write_text(text)
    return path


def test_replay_does_not_visit_every_point_of_a_huge_region(tmp_path: Path) -> None:
    """Regions of 2^40 elements: the check's counterexamples replay (it
    used to enumerate every point and run out of memory)."""
    s = load(_huge_region_schedule(tmp_path))
    t0 = time.perf_counter()
    rep = check_schedule(s)
    seconds = time.perf_counter() - t0
    got = {r.property: r for r in rep.results}
    for prop in ("dataflow", "race"):
        cex = got[prop].counterexample
        assert got[prop].verdict is Verdict.VIOLATED and cex is not None
        assert cex.replayed, cex.replay_note
        assert f"e=0:{HUGE}" in cex.sentence
    assert seconds < 30  # generous: a points walk would not end at all


def test_a_read_of_a_huge_region_partly_overwritten_is_seen(tmp_path: Path) -> None:
    """The cells of a read: a write of one element inside a 2^40 region
    splits it, and the read of the rest still expects the old value."""
    from syncproof.ir import loads

    s = loads(json.dumps({"syncproof": 1, "name": "cells", "buffers": {"x": ["e"]},
                          "init": {f"x[e=0:{HUGE}]": "v0"}, "ranks": {"0": [
                              {"op": "compute", "stream": "a", "name": "w", "writes": {f"x[e={HUGE // 2}]": "v1"}},
                              {"op": "compute", "stream": "b", "name": "r", "reads": {f"x[e=0:{HUGE}]": "v0"}}]}}))
    rep = check_schedule(s)
    r = rep.result("dataflow")
    assert r.verdict is Verdict.VIOLATED and r.counterexample is not None and r.counterexample.replayed
