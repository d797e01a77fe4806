"""``syncproof capture`` on the PyTorch examples (issue 15).

Each example in ``examples/pytorch/`` is ordinary PyTorch CUDA code with a
``--bug`` switch: captured at two ranks and checked, the fixed version is
proved and the buggy one gives a counterexample whose ops carry the program's
own names (module path and aten op). The captured schedules agree under both
engines and survive a save/load round trip, and every counterexample replays
on the executor. The last test documents why: run eagerly on CPU (every op in
issue order) 100 times, no bug changes a single output value.

The CLI's error paths that do not need torch run everywhere; the rest skip
without torch."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from syncproof.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "pytorch"
NAMES = ("tp_decode", "pp_stages", "async_inputs", "moe_a2a")

HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_CAPTURE = HAVE_TORCH and importlib.util.find_spec("syncproof.capture") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="needs torch (pip install -e '.[torch]')")
needs_capture = pytest.mark.skipif(not HAVE_CAPTURE, reason="needs torch and syncproof.capture")

# Where each bug is: the property that finds it first, and the program's own
# op names that its counterexample must carry.
BUGS: dict[str, tuple[str, tuple[str, ...]]] = {
    # the KV append on the side stream reads K/V before the QKV GEMM wrote them
    "tp_decode": ("dataflow", ("model.layers.0.qkv/aten.mm", "/aten.copy_")),
    # stage 1's first Linear reads the activation before irecv has written it
    "pp_stages": ("dataflow", ("stage.fc1/aten.addmm", "recv")),
    # the host refills the pinned buffer while the H2D copy still reads it
    "async_inputs": ("dataflow", ("aten.add", "aten.copy_(h2d)")),
    # the shared expert's output gets the block the comm stream still reads
    "moe_a2a": ("dataflow", ("model.layers.0.shared/aten.mm", "/aten.index_select", "record_stream")),
}


def script(name: str) -> str:
    return str(EXAMPLES / f"{name}.py")


@functools.cache
def captured(name: str, bug: bool) -> Any:
    from syncproof.capture import capture_script

    return capture_script(script(name), world=2, argv=("--bug",) if bug else ())


# ----------------------------------------------------------- without torch
def test_capture_without_torch_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # find_spec("torch") is None: not installed
    assert main(["capture", script("tp_decode"), "--world", "2", "--check"]) == 2
    err = capsys.readouterr().err
    assert "capture needs PyTorch: pip install 'syncproof[torch]'" in err
    assert "Traceback" not in err


def test_command_line_splits_capture_options_from_script_arguments() -> None:
    from syncproof.cli import _parser
    from syncproof.commands.capture import _split_command

    cases = {
        ("x.py", "--world", "2", "--check", "--", "--bug"): ("x.py", ["--bug"], 2, True),
        ("--world", "3", "x.py", "--", "--bug", "--steps", "4"): ("x.py", ["--bug", "--steps", "4"], 3, False),
        ("x.py",): ("x.py", [], 1, False),
        ("--check", "--", "x.py", "--bug"): ("x.py", ["--bug"], 1, True),
        ("x.py", "--engine", "z3", "--", "--", "y"): ("x.py", ["--", "y"], 1, False),
    }
    for argv, (path, rest, world, check) in cases.items():
        args = _parser().parse_args(["capture", *argv])
        _split_command(args)
        assert (args.script, args.script_args, args.world, args.check) == (path, rest, world, check), argv


def test_script_options_need_the_double_dash(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capture", script("tp_decode"), "--bug"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --bug" in err and "after `--`" in err


def test_missing_script_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    if not HAVE_TORCH:
        pytest.skip("without torch the install message comes first")
    assert main(["capture", str(EXAMPLES / "no_such_example.py")]) == 2
    assert "no such script" in capsys.readouterr().err


# ------------------------------------------------------- the script's errors
@needs_capture
def test_a_failing_script_shows_its_own_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import torch\n"
        "\n"
        "def project(x):\n"
        "    return x @ torch.ones(3, 4, device='cuda')  # wrong shape\n"
        "\n"
        "def main(rank, world):\n"
        "    return project(torch.randn(2, 2, device='cuda'))\n",
        encoding="utf-8",
    )
    assert main(["capture", str(bad), "--world", "2", "--check"]) == 2
    err = capsys.readouterr().err
    assert f'File "{bad}", line 7, in main' in err
    assert f'File "{bad}", line 4, in project' in err
    assert "RuntimeError: mat1 and mat2 shapes cannot be multiplied" in err
    assert "syncproof: error:" in err and "raised RuntimeError" in err
    frames = [ln for ln in err.splitlines() if ln.lstrip().startswith("File ")]
    assert all(str(bad) in ln for ln in frames), frames  # none of syncproof's or torch's frames


@needs_capture
def test_a_script_that_exits_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = tmp_path / "needs_args.py"
    s.write_text("import argparse\n\ndef main(rank, world):\n"
                 "    p = argparse.ArgumentParser()\n"
                 "    p.add_argument('--n', required=True)\n"
                 "    p.parse_args()\n", encoding="utf-8")
    assert main(["capture", str(s)]) == 2
    err = capsys.readouterr().err
    assert "the following arguments are required: --n" in err  # the script's own usage message
    assert "exited with status 2" in err


@needs_capture
def test_unknown_entry_point_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capture", script("pp_stages"), "--world", "2", "--rank-fn", "run"]) == 2
    assert "run" in capsys.readouterr().err


# ------------------------------------------------------------ the examples
@needs_capture
@pytest.mark.parametrize("name", NAMES)
def test_example_fixed_is_proved(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capture", script(name), "--world", "2", "--check"]) == 0
    out = capsys.readouterr().out
    assert "VIOLATED" not in out
    for prop in ("matching", "deadlock", "dataflow", "race", "phase"):
        assert re.search(rf"^  {prop} +proved ", out, re.M), out


@needs_capture
@pytest.mark.parametrize("name", NAMES)
def test_example_bug_is_found_with_the_programs_own_names(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capture", script(name), "--world", "2", "--check", "--", "--bug"]) == 1
    out = capsys.readouterr().out
    prop, names = BUGS[name]
    assert re.search(rf"^  {prop} +VIOLATED ", out, re.M), out
    block = out.split(f"{prop} counterexample", 1)[1]
    for n in names:
        assert n in block, (n, block[:2000])


@needs_capture
@pytest.mark.parametrize("name", NAMES)
def test_example_report_is_the_check_report(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """-o writes the schedule; `syncproof check` on it prints what --check printed."""
    sched = tmp_path / f"{name}.json"
    assert main(["capture", script(name), "--world", "2", "-o", str(sched), "--", "--bug"]) == 0
    assert f"wrote {sched}" in capsys.readouterr().err
    assert main(["check", str(sched), "--no-grid"]) == 1
    checked = capsys.readouterr().out
    assert main(["capture", script(name), "--world", "2", "--check", "--no-grid", "--", "--bug"]) == 1
    captured_out = capsys.readouterr().out

    def body(text: str) -> list[str]:  # the first line names the source and the time
        return [ln for ln in text.splitlines()[1:] if ln.strip()]

    assert body(checked) == body(captured_out)
    assert any(ln.strip().startswith("repair") for ln in body(captured_out))  # the hints, computed once by capture


@needs_capture
@pytest.mark.parametrize("bug", [False, True], ids=["fixed", "bug"])
@pytest.mark.parametrize("name", NAMES)
def test_captured_schedule_agrees_under_both_engines_and_round_trips(name: str, bug: bool) -> None:
    from syncproof.engine import check_schedule
    from syncproof.ir import dumps, loads

    s = captured(name, bug)
    assert len(s.ranks) == 2 and len(s.ops) <= 700, len(s.ops)  # small enough to read
    hybrid = check_schedule(s)
    z3 = check_schedule(s, engine="z3")
    verdicts = [(r.property, r.verdict) for r in hybrid.results]
    assert verdicts == [(r.property, r.verdict) for r in z3.results]
    assert hybrid.exit_code == (1 if bug else 0)
    for rep in (hybrid, z3):
        for r in rep.results:
            if r.counterexample is not None:
                assert r.counterexample.replayed, (r.property, r.counterexample.replay_note)

    back = loads(dumps(s))
    assert back == s
    assert dumps(back) == dumps(s)
    assert [(r.property, r.verdict) for r in check_schedule(back).results] == verdicts


@needs_capture
def test_capture_through_a_subprocess(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run(
        [sys.executable, "-m", "syncproof", "capture", "examples/pytorch/pp_stages.py", "--world", "2", "--check",
         "--out", str(tmp_path / "out"), "--", "--bug"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "stage.fc1/aten.addmm" in proc.stdout
    assert any((tmp_path / "out").iterdir())  # report and pictures


@needs_capture
def test_readme_capture_section_prints_what_it_says(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Capture from PyTorch code", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```console\n\$ syncproof (.*?)\n(.*?)```", section, re.S)
    assert block is not None
    assert len(block.group(0).splitlines()) < 15
    argv = block.group(1).split()
    assert main(argv) == 1
    out = capsys.readouterr().out
    for line in block.group(2).splitlines()[1:]:  # the first line has the time
        quoted = line.split("...", 1)[0].rstrip()
        assert quoted in out, quoted


# ---------------------------------------------- what a single run could see
@needs_torch
@pytest.mark.skipif(sys.platform != "linux", reason="spawns gloo processes; measured on Linux")
def test_a_single_observed_run_shows_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each buggy example, run eagerly on CPU 100 times (every op in issue
    order, collectives complete when issued), gives exactly the fixed
    version's output on every rank: no symptom for a run-based tool to see.
    examples/pytorch/README.md quotes this measurement."""
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the spawned ranks import run_cpu from there too
    run_cpu = importlib.import_module("run_cpu")
    same = run_cpu.compare(world=2, runs=100)
    assert same == {f"{n}.py": [100, 100] for n in NAMES}
