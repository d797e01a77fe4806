"""Proof obligations: the TOML format, `syncproof prove`, the pytest plugin
(and that the two agree), and the parametric proofs."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from syncproof.cli import main
from syncproof.engine.parametric import ENCODINGS, HappensBefore, prove
from syncproof.ir import ScheduleBuilder
from syncproof.proofs import PARAMETRIC, PARAMETRIC_FAULTS, PARAMETRIC_PARAMS, ObligationError, parse, run
from syncproof.result import Verdict
from syncproof.semantics.precedence import end, start

ROOT = Path(__file__).resolve().parent.parent

SMALL = """\
[[proof]]
name = "paged-ok"
model = "paged-kv"
expect = "proved"

[[proof]]
name = "paged-reuse"
model = "paged-kv"
fault = "early-reuse"
expect = "violated: dataflow"

[[proof]]
name = "wrong-expectation"
model = "paged-kv"
fault = "no-load-wait"
expect = "proved"

[[proof]]
name = "kv-all-steps"
parametric = "kv-steps"
expect = "proved"

[[proof]]
name = "known-bad"
model = "paged-kv"
fault = "early-reuse"
expect = "proved"
xfail = "a known failure"
"""


def write(tmp: Path, text: str, name: str = "small.toml") -> Path:
    d = tmp / "proofs"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_text(text, encoding="utf-8")
    return p


# ------------------------------------------------------------------ format
@pytest.mark.parametrize(("text", "message"), [
    ('[[proof]]\nname = "a"\nmodel = "tp"\nexpect = "proven"\n', "expect must be"),
    ('[[proof]]\nname = "a"\nmodel = "tp"\nexpect = "violated: dataflw"\n', "did you mean 'dataflow'"),
    ('[[proof]]\nname = "a"\nmodel = "tpx"\nexpect = "proved"\n', "did you mean 'tp'"),
    ('[[proof]]\nname = "a"\nmodel = "tp"\nparams = { tpp = 2 }\nexpect = "proved"\n', "did you mean 'tp'"),
    ('[[proof]]\nname = "a"\nmodel = "tp"\nfault = "nope"\nexpect = "proved"\n', "has no fault"),
    ('[[proof]]\nname = "a"\nmodel = "tp"\nexpct = "proved"\n', "did you mean 'expect'"),
    ('[[proof]]\nname = "a"\nexpect = "proved"\n', "exactly one of model"),
    ('[[proof]]\nname = "a"\nmodel = "tp"\nexpect = "proved"\n[[proof]]\nname = "a"\nmodel = "tp"\n'
     'expect = "proved"\n', "used twice"),
    ('[[proof]]\nname = "a"\nmodel = "tp"\nproperties = ["race"]\nexpect = "violated: dataflow"\n',
     "not among the checked"),
    ('[[proof]]\nname = "a"\nparametric = "sp-casual"\nexpect = "proved"\n', "did you mean 'sp-causal'"),
    ('[proof]\nname = "a"\n', "[[proof]] table"),
    ('[[proof]\n', "not valid TOML"),
])
def test_malformed_files_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ObligationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(text, Path("x.toml"))


def test_loading_imports_no_solver() -> None:
    code = ("import sys, pathlib; from syncproof.proofs import discover, load; "
            "obs = [o for f in discover(['proofs']) for o in load(f)]; assert len(obs) > 100; "
            "import syncproof.pytest_plugin; assert 'z3' not in sys.modules, 'z3 imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_parametric_names_match_the_engine() -> None:
    assert set(PARAMETRIC) == set(ENCODINGS)


def test_parametric_parameters_match_the_engine() -> None:
    """proofs.py checks parametric parameters and faults at load time against
    its own copy of the encodings' declarations (loading imports no solver)."""
    for name, enc in ENCODINGS.items():
        assert set(PARAMETRIC_FAULTS[name]) == set(enc.faults), name
        mine = PARAMETRIC_PARAMS[name]
        assert set(mine) == {p.name for p in enc.params}, name
        for p in enc.params:
            assert mine[p.name] == (p.choices if p.choices else (p.lo, p.hi)), (name, p.name)


# ------------------------------------------------------------------ running
def test_outcomes(tmp_path: Path) -> None:
    obs = {o.name: o for o in parse(SMALL, tmp_path / "small.toml")}
    assert run(obs["paged-ok"]).status == "ok"
    out = run(obs["paged-reuse"])
    assert out.status == "ok" and "overwrote" in out.detail
    out = run(obs["wrong-expectation"])
    assert out.status == "regression" and out.got.startswith("violated: dataflow")
    assert run(obs["kv-all-steps"]).status == "ok"
    assert run(obs["known-bad"]).status == "xfail"


def test_prove_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, SMALL)
    assert main(["prove", str(p)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "5 obligations" in out and "(1 parametric)" in out
    assert main(["prove", str(p), "-k", "*::paged-*"]) == 0
    capsys.readouterr()
    assert main(["prove", str(tmp_path / "nowhere")]) == 2
    bad = write(tmp_path, '[[proof]]\nname = "a"\n', "bad.toml")
    assert main(["prove", str(bad)]) == 2
    assert "bad.toml" in capsys.readouterr().err


def _pytest(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # (hypothesis's plugin is switched off only to start faster)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)


def _junit(path: Path) -> dict[str, str]:
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        kids = {c.tag for c in case}
        status = "failed" if kids & {"failure", "error"} else "skipped" if "skipped" in kids else "passed"
        out[case.attrib["name"]] = status
    return out


def agreement(tmp: Path, proof_dir: Path) -> None:
    """`syncproof prove` and `pytest` give the same verdict for every obligation."""
    proc = subprocess.run([sys.executable, "-m", "syncproof", "prove", str(proof_dir), "--format", "json"],
                          capture_output=True, text=True, timeout=900, cwd=tmp)
    doc = json.loads(proc.stdout)
    prove_status = {o["id"].split("::")[1]: o["status"] for o in doc["outcomes"]}
    xml = tmp / "junit.xml"
    res = _pytest([str(proof_dir), f"--junitxml={xml}", "-q", "-m", ""], tmp)
    assert res.returncode in (0, 1), res.stdout + res.stderr
    junit = _junit(xml)
    assert set(junit) == set(prove_status)
    expected = {"ok": "passed", "xfail": "skipped", "regression": "failed", "xpass": "failed", "unknown": "failed"}
    for name, status in prove_status.items():
        assert junit[name] == expected[status], (name, status, junit[name])
    assert (proc.returncode == 0) == (res.returncode == 0)


def test_prove_and_pytest_agree_on_a_small_suite(tmp_path: Path) -> None:
    write(tmp_path, SMALL)
    agreement(tmp_path, tmp_path / "proofs")


@pytest.mark.slow
def test_prove_and_pytest_agree_on_the_whole_suite(tmp_path: Path) -> None:
    agreement(tmp_path, ROOT / "proofs")


def test_plugin_ignores_other_toml_files_and_reads_its_ini_option(tmp_path: Path) -> None:
    write(tmp_path, '[tool.something]\nx = 1\n', "config.toml")
    (tmp_path / "settings.toml").write_text('[[proof]]\nname = "not in a proofs dir"\n', encoding="utf-8")
    (tmp_path / "test_plain.py").write_text("def test_ok():\n    assert True\n", encoding="utf-8")
    res = _pytest(["-q"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed" in res.stdout
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "serving.toml").write_text("[[proof]]" + SMALL.split("[[proof]]")[1],
                                                  encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\nsyncproof_proofs = ["ci/*.toml"]\n',
                                             encoding="utf-8")
    res = _pytest(["-q"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 passed" in res.stdout


def test_plugin_reports_a_malformed_file_and_a_failure(tmp_path: Path) -> None:
    write(tmp_path, '[[proof]]\nname = "a"\nmodel = "tp"\nexpect = "proven"\n', "bad.toml")
    res = _pytest([str(tmp_path / "proofs"), "-q"], tmp_path)
    assert res.returncode != 0
    assert "expect must be" in res.stdout
    (tmp_path / "proofs" / "bad.toml").unlink()
    write(tmp_path, SMALL)
    res = _pytest([str(tmp_path / "proofs"), "-q", "-k", "wrong"], tmp_path)
    assert res.returncode == 1
    assert "expected: proved" in res.stdout and "got:      violated: dataflow" in res.stdout


# ------------------------------------------------------------------ parametric
@pytest.mark.parametrize(("name", "params", "fault", "verdict"), [
    ("sp-causal", {"variant": "allgather"}, None, Verdict.PROVED),
    ("sp-causal", {"variant": "ring"}, None, Verdict.PROVED),
    ("sp-causal", {"variant": "ring"}, "no-wait-kv", Verdict.VIOLATED),
    ("kv-steps", {}, None, Verdict.PROVED),
    ("kv-steps", {}, "no-append-wait", Verdict.VIOLATED),
    ("ep-routing", {"ep": 3, "tokens": 2}, None, Verdict.PROVED),
    ("ep-routing", {"ep": 3, "tokens": 2, "capacity": 5}, None, Verdict.VIOLATED),
])
def test_parametric_verdicts(name: str, params: dict[str, object], fault: str | None, verdict: Verdict) -> None:
    res = prove(name, params, fault)  # type: ignore[arg-type]
    assert res.verdict is verdict, res.reason
    if verdict is Verdict.VIOLATED:
        assert res.counterexample
    else:
        assert all(g.status == "unsat" for g in res.goals)


def test_parametric_counterexample_is_small() -> None:
    res = prove("sp-causal", {"variant": "allgather"}, "no-wait-kv")
    cex = res.counterexample
    assert cex is not None and cex["n"] <= 4 and cex["k"] < cex["i"]


def test_a_solver_limit_gives_unknown() -> None:
    res = prove("ep-routing", {"ep": 8, "tokens": 64}, None, rlimit=1, link=False)
    assert res.verdict is Verdict.UNKNOWN and "gave up" in res.reason


def test_happens_before_sees_a_missing_wait() -> None:
    b = ScheduleBuilder("hb")
    b.buffer("x")
    r = b.rank(0)
    r.compute("a", stream="s1", writes={"x": "v"})
    r.record("e", stream="s1")
    r.wait("e", stream="s2")
    r.compute("b", stream="s2", reads={"x": "v"})
    r.compute("c", stream="s1", reads={"x": "v"})
    hb = HappensBefore(b.build())
    assert hb.before(end(0), start(3))
    assert not hb.before(end(3), start(4)) and not hb.before(end(4), start(3))


def test_bad_parametric_requests() -> None:
    from syncproof.errors import UsageError

    with pytest.raises(UsageError, match="unknown parametric"):
        prove("sp-acusal")
    with pytest.raises(UsageError, match="no fault"):
        prove("kv-steps", {}, "no-wait-kv")
    with pytest.raises(UsageError, match="out of range"):
        prove("ep-routing", {"ep": 99})
