"""Issue 16, CLI arguments: argument vectors across the subcommands with bad
numbers (``--timeout nan``, ``--rlimit -1``, ``--max-cex`` of 100 digits,
``--set tp=²``, ``--set tp=99999999999``), missing files, directories,
``/dev/zero``, a FIFO and binary files end in exit 2 with a message (or, for
arguments that happen to be valid, 0, 1 or 3); never a traceback, exit 4 or
a hang.

The files and models are small (a 2-rank deadlock, ``paged-kv``), so a
vector that happens to be valid checks in well under a second.  ``--memory``
gets only values that are refused or too large to bite: z3 keeps state after
running out of memory (tests/test_cli.py runs that case in a subprocess).
``capture`` gets only paths that are not Python scripts: it runs what it is
given.  ``sweep`` and ``bench`` have their own fuzz test
(tests/test_fuzz_sweep_args.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fuzz_support import FAST, SLOW, Tally, assert_clean, assert_names, run_cli
from hypothesis import given
from hypothesis import strategies as st

from syncproof.commands.common import MAX_CEX, MAX_TIMEOUT_S, MAX_Z3_UNSIGNED

ROOT = Path(__file__).resolve().parent.parent
SCHEDULE = str(ROOT / "examples" / "pp-sendrecv-deadlock.json")
BAD_NUMBERS = ["nan", "NaN", "inf", "-inf", "-1", "0", "-0", "1e300", "1e-300", "10**100", "1" + "0" * 100, "9" * 5000,
               "²", "٣", "١.٥", "1_000", " 3", "3 ", "", " ", "0x10", "3.5", "+5", "1e3", "four", "\x00", "２",
               str(2**32), str(2**63), str(MAX_CEX + 1), str(int(MAX_TIMEOUT_S) + 1), str(MAX_Z3_UNSIGNED + 1)]
GOOD_NUMBERS = ["1", "2", "5", "30"]
numbers = st.sampled_from(BAD_NUMBERS) | st.sampled_from(GOOD_NUMBERS) | st.text(max_size=6)
set_values = st.sampled_from(["²", "٣", "99999999999", "-1", "0", "1", "2", "3", "1_0", "", " 2 ", "9" * 60, "a", "2.0",
                              "\u00a0" + "2"])
set_keys = st.sampled_from(["seqs", "block", "prompt", "steps", "tp", "", "=", "sëqs"])


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00\x01binary\x80")
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    return {"fifo": str(fifo), "zero": "/dev/zero", "null": "/dev/null", "dir": str(tmp_path),
            "missing": str(tmp_path / "missing.json"), "binary": str(binary), "empty": str(empty), "good": SCHEDULE}


BAD_FILES = ("fifo", "zero", "null", "dir", "missing", "binary", "empty")


@st.composite
def solver_options(draw: st.DrawFn) -> list[str]:
    out: list[str] = []
    for opt in draw(st.lists(st.sampled_from(["--timeout", "--rlimit", "--max-cex", "--memory"]), max_size=3)):
        value = draw(numbers)
        if opt == "--memory" and value in GOOD_NUMBERS:
            value = "100000"  # valid but too large to bite (see the module docstring)
        out += [opt, value]
    if draw(st.booleans()):
        out += ["--engine", draw(st.sampled_from(["hybrid", "z3", "nope"]))]
    return out


@st.composite
def argvs(draw: st.DrawFn) -> tuple[list[str], bool]:
    """An argument vector, and whether it is certainly bad input (exit 2)."""
    f = draw(st.sampled_from(BAD_FILES + ("good",)))
    cmd = draw(st.sampled_from(["check", "check-model", "render", "models", "prove", "import", "capture", "minimize",
                                "convert", "junk"]))
    opts = draw(solver_options())
    if cmd == "check":
        extra = ["--redundant", "--durations", f"@{draw(st.sampled_from(BAD_FILES))}"] if draw(st.booleans()) else []
        return ["check", f"@{f}", "--no-grid", *opts, *extra], f != "good" or bool(extra)
    if cmd == "check-model":
        sets = [a for k, v in draw(st.lists(st.tuples(set_keys, set_values), min_size=1, max_size=2))
                for a in ("--set", f"{k}={v}")]
        return ["check", "--model", draw(st.sampled_from(["paged-kv", "paged", "²"])), *sets, "--no-grid", *opts], False
    if cmd == "render":
        return ["render", f"@{f}", "-o", draw(st.sampled_from(["@dir", "@out.svg", "@missing/x.svg"]))], True
    if cmd == "models":
        return ["models", *draw(st.lists(st.sampled_from(["tp", "paged-kv", "²", "", "tpx", "\x00"]), max_size=2)),
                *draw(st.sampled_from([[], ["--format", "json"], ["--format", "yaml"]]))], False
    if cmd == "prove":
        # a directory is searched for *.toml (none here: 0 obligations, exit 0)
        return ["prove", "--list", f"@{f}", *draw(st.sampled_from([[], ["-k", "["], ["-k", "*"], ["-k", "²"]]))], \
            f not in ("good", "dir")
    if cmd == "import":
        kind = draw(st.sampled_from(["torch-pp", "flight-recorder", "profiler", "nope"]))
        return ["import", kind, f"@{f}", *(["--check", *opts] if draw(st.booleans()) else [])], True
    if cmd == "capture":
        return ["capture", f"@{draw(st.sampled_from(BAD_FILES))}", "--world", draw(numbers)], True
    if cmd == "minimize":
        return ["minimize", f"@{f}", *opts], f != "good"
    if cmd == "convert":
        return ["convert", f"@{f}"], f != "good"
    return [draw(st.sampled_from(["--nope", "chek", "-x", "--version=2", "import"])), f"@{f}"], True


def resolve(argv: list[str], files: dict[str, str], tmp: Path) -> list[str]:
    out = []
    for a in argv:
        if a.startswith("@"):
            name = a[1:]
            a = files.get(name, str(tmp / name))
        out.append(a)
    return out


def check_argv(argv: list[str], bad: bool, files: dict[str, str], tmp: Path,
               capsys: pytest.CaptureFixture[str]) -> int:
    run = run_cli(resolve(argv, files, tmp), capsys)
    assert_clean(run, (2,) if bad else (0, 1, 2, 3))
    return run.code


def test_fuzz_cli_args(files: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    @FAST
    @given(argvs())
    def one(case: tuple[list[str], bool]) -> None:
        check_argv(*case, files, tmp_path, capsys)

    one()


@pytest.mark.slow
def test_fuzz_cli_args_slow(files: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tally = Tally("CLI arguments (check, render, models, prove, import, capture, minimize)")

    @SLOW
    @given(argvs())
    def one(case: tuple[list[str], bool]) -> None:
        tally.add(check_argv(*case, files, tmp_path, capsys))

    one()
    tally.report(capsys)


# ------------------------------------------------------------- named options
@pytest.mark.parametrize(("args", "words"), [
    (["--timeout", "nan"], "--timeout must be a positive number"),
    (["--timeout", "1e300"], "--timeout must be a positive number of seconds, at most 1000000"),
    (["--timeout", "١.٥"], "argument --timeout: '١.٥' is not a number"),
    (["--rlimit", "-1"], "--rlimit must be a positive number"),
    (["--rlimit", str(2**32)], "at most 4294967295"),
    (["--memory", "9" * 30], "--memory must be a positive number of MB, at most 4294967295"),
    (["--max-cex", "1" + "0" * 100], "argument --max-cex: an integer of 101 digits (at most 40)"),
    (["--max-cex", str(10**6)], "--max-cex must be at least 1 and at most 100000"),
    (["--max-cex", "10**100"], "argument --max-cex: '10**100' is not an integer"),
    (["--max-cex", "٣"], "argument --max-cex: '٣' is not an integer (ASCII digits only)"),
    (["--rlimit", "1_000"], "argument --rlimit: '1_000' is not an integer"),
])
def test_bad_solver_options_name_the_option(args: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert_names(run_cli(["check", SCHEDULE, "--no-grid", *args], capsys), words)


@pytest.mark.parametrize(("value", "words"), [
    ("²", "tp takes an integer in 1..8 (ASCII digits), got '²'"),
    ("٣", "got '٣'"),
    ("99999999999", "tp=99999999999 is out of range 1..8"),
    ("9" * 5000, "tp takes an integer in 1..8 (ASCII digits), got '999"),
    ("-1", "tp=-1 is out of range 1..8"),
])
def test_bad_model_values_name_the_parameter(value: str, words: str, capsys: pytest.CaptureFixture[str]) -> None:
    run = run_cli(["check", "--model", "tp", "--set", f"tp={value}"], capsys)
    assert_names(run, "model tp", words)
    assert len(run.err) < 400, run.err  # a 5000-digit value is not echoed whole


def test_main_refuses_a_non_list_argv(capsys: pytest.CaptureFixture[str]) -> None:
    from syncproof.cli import main

    assert main("check x.json") == 2  # type: ignore[arg-type]
    assert main([3]) == 2  # type: ignore[list-item]
    assert "takes a list of argument strings" in capsys.readouterr().err
