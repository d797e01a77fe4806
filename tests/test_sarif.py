"""``check --format sarif``: SARIF 2.1.0 for code-scanning UIs.

The log is checked against the required fields and value sets of the SARIF
2.1.0 standard (OASIS, sarif-v2.1.0 sections 3.13 sarifLog, 3.14 run, 3.18
tool, 3.19 toolComponent, 3.49 reportingDescriptor, 3.27 result, 3.28
location, 3.29 physicalLocation, 3.4 artifactLocation, 3.30 region, 3.11
message, 3.20 invocation, 3.58 notification), written out here since the
schema cannot be downloaded; and each result's line is the line of its op in
the schedule file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from example_cases import BROKEN

from syncproof.cli import main
from syncproof.ir import load
from syncproof.render.sarif import op_lines

ROOT = Path(__file__).resolve().parent.parent
LEVELS = {"none", "note", "warning", "error"}


def _message(m: Any, where: str) -> None:
    assert isinstance(m, dict), where
    assert isinstance(m.get("text"), str) or isinstance(m.get("id"), str), f"{where}: message needs text or id"


def _multiformat(m: Any, where: str) -> None:
    assert isinstance(m, dict) and isinstance(m.get("text"), str), f"{where}: needs text"


def _location(loc: Any, where: str) -> None:
    assert isinstance(loc, dict), where
    if "id" in loc:
        assert isinstance(loc["id"], int) and loc["id"] >= -1, where
    if "message" in loc:
        _message(loc["message"], f"{where}.message")
    phys = loc.get("physicalLocation")
    if phys is not None:
        assert "artifactLocation" in phys or "address" in phys, f"{where}: physicalLocation needs artifactLocation"
        art = phys["artifactLocation"]
        assert isinstance(art.get("uri"), str) and art["uri"] and " " not in art["uri"], where
        if "region" in phys:
            line = phys["region"].get("startLine")
            assert isinstance(line, int) and line >= 1, f"{where}: startLine must be an integer >= 1"
    for i, lg in enumerate(loc.get("logicalLocations", [])):
        assert isinstance(lg, dict) and isinstance(lg.get("name"), str), f"{where}.logicalLocations[{i}]"


def validate_sarif(log: Any) -> None:
    """The required fields and value sets of SARIF 2.1.0 that this output uses."""
    assert isinstance(log, dict)
    assert log["version"] == "2.1.0"
    assert isinstance(log.get("$schema", ""), str)
    runs = log["runs"]
    assert isinstance(runs, list) and runs
    for k, run in enumerate(runs):
        driver = run["tool"]["driver"]
        assert isinstance(driver["name"], str) and driver["name"]
        rules = driver.get("rules", [])
        ids = [r["id"] for r in rules]
        assert len(set(ids)) == len(ids) and all(isinstance(i, str) and i for i in ids)
        for r in rules:
            for key in ("shortDescription", "fullDescription", "help"):
                if key in r:
                    _multiformat(r[key], f"rule {r['id']}.{key}")
            if "defaultConfiguration" in r:
                assert r["defaultConfiguration"].get("level", "warning") in LEVELS
        for i, res in enumerate(run.get("results", [])):
            where = f"runs[{k}].results[{i}]"
            _message(res["message"], where)
            assert res.get("level", "warning") in LEVELS
            if "ruleIndex" in res:
                assert isinstance(res["ruleIndex"], int) and 0 <= res["ruleIndex"] < len(rules)
                assert ids[res["ruleIndex"]] == res["ruleId"]
            if "ruleId" in res:
                assert res["ruleId"] in ids
            for j, loc in enumerate(res.get("locations", [])):
                _location(loc, f"{where}.locations[{j}]")
            rel = res.get("relatedLocations", [])
            for j, loc in enumerate(rel):
                _location(loc, f"{where}.relatedLocations[{j}]")
            rel_ids = [loc["id"] for loc in rel if "id" in loc]
            assert len(set(rel_ids)) == len(rel_ids), f"{where}: relatedLocations ids must be unique"
        for inv in run.get("invocations", []):
            assert isinstance(inv["executionSuccessful"], bool)
            for n in inv.get("toolExecutionNotifications", []):
                _message(n["message"], "notification")
                assert n.get("level", "warning") in LEVELS


def _sarif(capsys: pytest.CaptureFixture[str], *files: Path) -> tuple[int, dict[str, Any]]:
    code = main(["check", *map(str, files), "--format", "sarif"])
    log: dict[str, Any] = json.loads(capsys.readouterr().out)
    return code, log


def test_every_broken_example_gives_valid_sarif_at_its_ops_lines(capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    files = [Path("examples") / f"{n}.json" for n in BROKEN if (ROOT / "examples" / f"{n}.json").exists()]
    assert files
    code, log = _sarif(capsys, *files)
    assert code == 1
    validate_sarif(log)
    run = log["runs"][0]
    assert run["tool"]["driver"]["name"] == "syncproof"
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == ["matching", "deadlock", "dataflow", "race",
                                                                 "phase"]
    results = run["results"]
    assert {r["properties"]["schedule"] for r in results} == {load(ROOT / f).name for f in files}
    for res in results:
        assert res["level"] == "error"
        for loc in [*res["locations"], *res.get("relatedLocations", [])]:
            uri = loc["physicalLocation"]["artifactLocation"]["uri"]
            assert uri.startswith("examples/") and not os.path.isabs(uri)
            line = loc["physicalLocation"]["region"]["startLine"]
            text = (ROOT / uri).read_text().splitlines()[line - 1]
            sched = load(ROOT / uri)
            label = loc["logicalLocations"][0]["name"]
            op = next(o for o in sched.ops if sched.label(o.id) == label)
            # the examples hold one op per line: the line is that op's object
            rank_ops = [ln for ln in (ROOT / uri).read_text().splitlines() if ln.lstrip().startswith('{"op"')]
            assert f'"op": "{op.kind}"' in text, (label, text)
            assert text in rank_ops


def test_the_message_is_the_text_reports_sentence_and_hint(capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    _, log = _sarif(capsys, Path("examples/tp-allreduce-nowait.json"))
    assert main(["check", "examples/tp-allreduce-nowait.json", "--no-grid"]) == 1
    text = capsys.readouterr().out
    for res in log["runs"][0]["results"]:
        sentence, hint = res["message"]["text"].split("\n")
        assert f"    {sentence}" in text and f"    {hint}" in text
        assert hint.startswith("repair (proved by re-check)")
        # the culprits: the first at the result's location, the other related
        assert len(res["relatedLocations"]) >= 1


def test_unknowns_are_notes_not_results(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    _, log = _sarif(capsys, Path("examples/pp-sendrecv-deadlock.json"))
    validate_sarif(log)
    run = log["runs"][0]
    assert [r["ruleId"] for r in run["results"]] == ["deadlock"]
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert {n["descriptor"]["id"] for n in notes} == {"dataflow", "race", "phase"}
    assert all(n["level"] == "note" and "unknown" in n["message"]["text"] for n in notes)


def test_a_proved_schedule_has_no_results(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, log = _sarif(capsys, Path("examples/tp-allreduce-wait.json"))
    validate_sarif(log)
    assert code == 0 and log["runs"][0]["results"] == []


def test_op_lines_follow_the_file_not_its_formatting() -> None:
    """Ops on one line, split over lines, strings holding brackets and a
    key named ranks inside a string: each op maps to its object's first line."""
    text = ('{"syncproof": 1, "name": "a \\"ranks\\" [{", "ranks": {\n'
            '  "0": [{"op": "compute", "stream": "s", "name": "x{["},\n'
            '        {"op": "compute",\n   "stream": "s"}],\n'
            '  "1": [\n    {"op": "record", "stream": "s", "event": "e"}\n  ]\n}}\n')
    assert op_lines(text) == {(0, 0): 2, (0, 1): 3, (1, 0): 6}
    assert op_lines("not json at all [") == {}


def test_the_validator_rejects_broken_logs() -> None:
    good = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "syncproof", "rules": [{"id": "race"}]}},
                                          "results": [{"ruleId": "race", "ruleIndex": 0, "level": "error",
                                                       "message": {"text": "x"}}]}]}
    validate_sarif(good)
    for broken in (
        {**good, "version": "2.0.0"},
        {"version": "2.1.0", "runs": [{"tool": {"driver": {}}}]},
        {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "s"}}, "results": [{"level": "fatal",
                                                                                     "message": {"text": "x"}}]}]},
        {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "s"}}, "results": [{"message": {}}]}]},
    ):
        with pytest.raises((AssertionError, KeyError)):
            validate_sarif(broken)
