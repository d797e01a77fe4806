"""The command line: exit codes, golden output, JSON shape, bad input, packaging."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from example_cases import BROKEN_PROPERTY, EXAMPLES

from syncproof.cli import main

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"
BROKEN = BROKEN_PROPERTY


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def normalise(text: str) -> str:
    text = re.sub(r"\d+\.\d+ s\b", "X s", text)
    return text.replace(str(ROOT) + os.sep, "")


def test_at_least_six_examples_half_broken() -> None:
    names = {p.stem for p in EXAMPLES}
    assert len(names) >= 6
    assert set(BROKEN) <= names
    assert len(names - set(BROKEN)) >= len(BROKEN)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_exit_code_and_property(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["check", str(path), "--format", "json"], capsys)
    doc = json.loads(out)
    verdicts = {r["property"]: r["verdict"] for r in doc["results"]}
    if path.stem in BROKEN:
        assert code == 1
        prop = BROKEN[path.stem]
        assert verdicts[prop] == "violated"
        cex = next(r for r in doc["results"] if r["property"] == prop)["counterexample"]
        assert cex["replayed"] is True
        assert cex["sentence"] and cex["culprits"]
    else:
        assert code == 0, verdicts
        assert set(verdicts.values()) == {"proved"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_golden_text(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_cli(["check", str(path), "--max-cex", "2"],
                        capsys)
    got = normalise(out)
    golden = GOLDEN / f"{path.stem}.txt"
    if os.environ.get("UPDATE_GOLDEN") or not golden.exists():
        golden.write_text(got, encoding="utf-8")
    assert got == golden.read_text(encoding="utf-8"), f"regenerate with UPDATE_GOLDEN=1 if intended ({golden})"


def test_json_report_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["check", str(ROOT / "examples/tp-allreduce-nowait.json"), "--format", "json"],
                           capsys)
    doc = json.loads(out)
    assert code == 1 and doc["exit_code"] == 1
    assert {"format", "syncproof", "schedule", "source", "ops", "engine", "results", "seconds",
            "timings", "warnings"} <= set(doc)
    df = next(r for r in doc["results"] if r["property"] == "dataflow")
    cex = df["counterexample"]
    assert cex["complete"] is True
    assert len(cex["run"]) == doc["ops"]
    for item in cex["run"]:
        assert item["start"] < item["end"]
    assert cex["missing_edge"]["from"] and cex["missing_edge"]["to"]


def test_several_files_report_the_most_severe_code(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    ok = str(ROOT / "examples/tp-allreduce-wait.json")
    broken = str(ROOT / "examples/tp-allreduce-nowait.json")
    assert run_cli(["check", ok, broken], capsys)[0] == 1
    code, out, err = run_cli(["check", ok, str(bad), broken], capsys)
    assert code == 2 and "bad.json" in err and "1 bad input" in out


def test_malformed_file_exits_2_naming_place_and_problem(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "typo.json"
    f.write_text(json.dumps({
        "syncproof": 1, "groups": {"tp": [0, 1]}, "buffers": {"x": []},
        "ranks": {"0": [{"op": "all_reduce", "stream": "comm", "group": "pt"}], "1": []},
    }), encoding="utf-8")
    code, out, err = run_cli(["check", str(f)], capsys)
    assert code == 2 and out == ""
    assert "typo.json: rank 0, op 0 (all_reduce on comm)" in err
    assert "group 'pt' is not declared" in err and "did you mean 'tp'" in err
    assert "Traceback" not in err


def test_missing_file_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["check", "/nonexistent/x.json"], capsys)
    assert code == 2 and "/nonexistent/x.json: no such file" in err
    with pytest.raises(SystemExit) as exc:
        main(["check", "--property", "nope", "x.json"])
    assert exc.value.code == 2


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    out = capsys.readouterr().out
    for line in ("0  every checked property is proved", "1  a counterexample", "2  bad input",
                 "3  no counterexample, but some verdict is unknown"):
        assert line in out


def test_out_dir_writes_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run_cli(["check", str(ROOT / "examples/pp-sendrecv-deadlock.json"), "--out",
                          str(tmp_path / "o")], capsys)
    assert code == 1
    doc = json.loads((tmp_path / "o/pp-sendrecv-deadlock.json").read_text())
    dl = next(r for r in doc["results"] if r["property"] == "deadlock")
    assert dl["counterexample"]["cycle"]
    assert "no execution can finish" in (tmp_path / "o/pp-sendrecv-deadlock.txt").read_text()


def test_cli_works_inside_a_repo_with_its_own_models_and_formal(tmp_path: Path) -> None:
    for name in ("models", "formal", "syncproof_models"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise RuntimeError('wrong package imported')\n")
    exe = Path(sys.executable).parent / "syncproof"
    for cmd in ([str(exe)], [sys.executable, "-m", "syncproof"]):
        proc = subprocess.run(cmd + ["check", str(ROOT / "examples/tp-allreduce-wait.json")],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "dataflow  proved" in proc.stdout


def test_cli_and_ir_do_not_import_z3() -> None:
    code = ("import sys, syncproof, syncproof.cli, syncproof.ir, syncproof.render.text, "
            "syncproof.render.jsonout, syncproof.models, syncproof.executor; "
            "assert 'z3' not in sys.modules, 'z3 imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_only_the_engine_imports_z3() -> None:
    offenders = []
    for base in (ROOT / "formal", ROOT / "models"):
        for py in base.rglob("*.py"):
            if "engine" in py.relative_to(ROOT).parts:
                continue
            if re.search(r"^\s*(import z3|from z3)", py.read_text(), re.M):
                offenders.append(str(py))
    assert offenders == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_both_engines_agree_on_every_example(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    got = {}
    for engine in ("hybrid", "z3"):
        code, out, _ = run_cli(["check", str(path), "--format", "json", "--engine", engine], capsys)
        doc = json.loads(out)
        assert doc["engine"] == engine
        got[engine] = (code, {r["property"]: r["verdict"] for r in doc["results"]})
    assert got["hybrid"] == got["z3"]


def test_a_schedule_name_cannot_write_outside_the_out_directory(tmp_path: Path) -> None:
    """Issue 16: a hostile ``name`` (``../``, an absolute path) must not make
    ``check --out DIR`` write anywhere but DIR."""
    out = tmp_path / "a" / "b"
    victim = tmp_path / "victim"
    for name in ("../../victim", str(victim), "..", ".hidden/../../x", "a/b\\c:d"):
        doc = {"syncproof": 2, "name": name, "groups": {}, "buffers": {"x": []},
               "ranks": {"0": [{"op": "compute", "stream": "a", "writes": {"x": "A"}},
                               {"op": "compute", "stream": "b", "reads": {"x": "A"}}]}}
        f = tmp_path / "evil.json"
        f.write_text(json.dumps(doc), encoding="utf-8")
        assert main(["check", str(f), "--out", str(out), "--no-grid"]) == 1
        written = {p.resolve() for p in tmp_path.rglob("*") if p.is_file()} - {f.resolve()}
        assert written and all(out.resolve() in p.parents for p in written), sorted(map(str, written))
        assert not victim.exists()


def test_an_unexpected_exception_exits_4_not_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Exit code 1 means "counterexample found": a crash must never read as one."""
    import syncproof.engine as engine

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(engine, "check_schedule", boom)
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"syncproof": 2, "ranks": {"0": []}}), encoding="utf-8")
    assert main(["check", str(f)]) == 4
    assert "internal error" in capsys.readouterr().err


@pytest.mark.parametrize("args, code", [
    (["--memory", "1"], 3), (["--memory", "8"], 3), (["--timeout", "nan"], 2), (["--timeout", "inf"], 2),
    (["--timeout", "-1"], 2), (["--rlimit", "-5"], 2), (["--rlimit", "0"], 2), (["--memory", "0"], 2),
])
def test_solver_limits_give_unknown_or_a_usage_error(args: list[str], code: int,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 16: a limit z3 hits is ``unknown`` (exit 3); a limit that is not a
    positive finite number is bad usage (exit 2); never a traceback."""
    argv = ["check", "examples/pp-sendrecv-deadlock.json", "--engine", "z3", "--no-grid", *args]
    if "--memory" in args:  # z3 keeps state after running out of memory: keep it out of this process
        proc = subprocess.run([sys.executable, "-m", "syncproof", *argv], capture_output=True, text=True,
                              timeout=120)
        got, err = proc.returncode, proc.stderr
    else:
        got = main(argv)
        err = capsys.readouterr().err
    assert got == code, err
    assert "Traceback" not in err and "internal error" not in err


def test_output_cut_short_by_its_reader_is_no_internal_error() -> None:
    """``syncproof check ... | head -1``: the reader closes the pipe early; no
    traceback, no "internal error", exit 2 (the output could not be written)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "-m", "syncproof", "check", *sorted(
        str(p) for p in (root / "examples").glob("*.json"))], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the first line is written: every write fails (EPIPE)
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert "internal error" not in err and "Traceback" not in err, err
    assert code == 2


def test_a_limit_hit_while_finding_a_deadlock_cycle_is_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 16: ``--rlimit 20000`` on a deadlocking model stopped z3 while it
    looked for the cycle of waits; that was exit 4, it is unknown (exit 3)."""
    code = main(["check", "--model", "pp", "--set", "mb=2", "--fault", "single-stream-p2p", "--engine", "z3",
                 "--rlimit", "20000", "--no-grid"])
    out, err = capsys.readouterr()
    assert code == 3, err
    assert re.search(r"^  deadlock +unknown .*solver gave up", out, re.M), out
    assert "internal error" not in err
