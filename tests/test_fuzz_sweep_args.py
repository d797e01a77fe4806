"""Issue 16: malformed ``syncproof sweep`` / ``syncproof prove`` arguments
end in exit 2 with a message, never a traceback, an exit 4 or a hang.

Hypothesis draws argument vectors: half of the ``sweep`` ones valid (a real
model, its real parameters with small values, real faults, the solver and
fan-out options: they run checks), the others with tokens broken (ranges like ``1..10**12``,
``²`` or ``١`` for a digit, unknown names, empty lists, negative ``--jobs``,
garbage ``--ray`` addresses, raw text), and runs each in-process through
``syncproof.cli.main``: the exit code must be 0, 1, 2 or 3 (an argparse
error is a ``SystemExit(2)``), an exit 2 must say what is wrong on stderr,
and nothing may print a traceback or take longer than :data:`LIMIT_S`.
``import ray`` is made to fail, so that a well-formed ``--ray`` address is
"ray is not installed" (exit 2) rather than a connection attempt.

The default test tries :data:`DEFAULT_EXAMPLES` vectors (derandomized); the
slow one tries :data:`SLOW_EXAMPLES` and prints how many it tried (also
written to ``$SYNCPROOF_FUZZ_REPORT`` when set).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from syncproof.cli import main
from syncproof.models.registry import list_models

DEFAULT_EXAMPLES = 50
SLOW_EXAMPLES = 3000
LIMIT_S = 60.0

SPECS = {m.name: m for m in list_models()}
BAD_INTS = ("10**12", "²", "١", "1_0", "-1", "0", "99999999999999999999999999999999999999999999", "1e3", " ", "",
            "0x2", "+1", "1.5", "nan", "∞", "9" * 5000)
BAD_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)
GARBAGE_RAY = ("%%%", "head", "head:", "head:0", "head:70000", "http://x:1", "ray://", ":::", "a b:1", "\t", "")
GOOD_RAY = ("auto", "local", "127.0.0.1:6379", "ray://head:10001")

TINY_PROOF = """[[proof]]
name = "tp2"
model = "tp"
params = { tp = 2, layers = 1, phase = "prefill" }
properties = ["matching"]
expect = "proved"
"""
BAD_PROOFS = (
    "[[proof]\nname = 'x'",  # not TOML
    "[[proof]]\nname = 'x'\nmodel = 'tp'\nexpect = 5\n",
    "[[proof]]\nmodel = 'tp'\nexpect = 'proved'\n",
    "[[proof]]\nname = 'x'\nmodel = 'nope'\nexpect = 'proved'\n",
    "[[proof]]\nname = 'x'\nmodel = 'tp'\nparams = 3\nexpect = 'proved'\n",
    "[[proof]]\nname = 'x'\nmodel = 'tp'\nparams = { tp = 99 }\nexpect = 'proved'\n",
    "proof = 1\n",
    "",
)


from fuzz_support import Hang, time_limit  # noqa: E402  (one alarm for every fuzz test)


@contextlib.contextmanager
def no_ray() -> Iterator[None]:
    """``import ray`` fails inside (only that key of sys.modules is touched:
    restoring all of it would drop the modules imported meanwhile)."""
    missing = object()
    old = sys.modules.get("ray", missing)
    sys.modules["ray"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if old is missing:
            del sys.modules["ray"]
        else:
            sys.modules["ray"] = old  # type: ignore[assignment]


# ------------------------------------------------------------------ argument vectors
def _pick(draw: st.DrawFn, clean: bool, good: tuple[str, ...], bad: tuple[str, ...] = ()) -> str:
    """A token from ``good``; when not ``clean``, from ``good`` and ``bad``."""
    return draw(st.sampled_from(good if clean or not bad else (*good, *bad)))


def _int_token(draw: st.DrawFn, clean: bool, lo: int, hi: int) -> str:
    if not clean and draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(BAD_INTS))
    if not clean and draw(st.integers(0, 3)) == 0:
        return str(hi + draw(st.integers(1, 3)))
    return str(draw(st.integers(lo, min(hi, lo + 2))))


@st.composite
def _values(draw: st.DrawFn, clean: bool, spec: Any, key: str) -> str:
    """One --set's VALUES: a list of items (values, LO..HI ranges), small,
    and when not ``clean`` sometimes broken."""
    pick = draw(st.integers(0, 9))
    if not clean and pick == 0:
        return draw(BAD_TEXT)
    if not clean and pick == 1:
        return draw(st.sampled_from((",", "1,", ",1", "1,,2", "..", "1..", "..2", "2..1", "1..2..3", "1..10**12",
                                     "1..1000000000000", "0..99999", "1.. 2", "a..b")))
    names = [p.name for p in spec.params]
    param = spec.param(key) if key in names else None
    items = []
    for _ in range(draw(st.integers(1, 2))):
        if param is not None and param.choices:
            items.append(_pick(draw, clean, param.choices, ("nope", "", " ")))
        elif param is not None:
            lo, hi = int(param.lo), int(param.hi)
            if draw(st.booleans()):
                a = _int_token(draw, clean, lo, hi)
                b = _int_token(draw, clean, lo, hi) if draw(st.integers(0, 3)) else a
                items.append(f"{a}..{b}")
            else:
                items.append(_int_token(draw, clean, lo, hi))
        else:
            items.append(draw(st.sampled_from(("1", "2", "prefill", "x"))))
    return ",".join(items)


@st.composite
def sweep_argv(draw: st.DrawFn) -> list[str]:
    """Half of the vectors are clean (valid, small grids: they run checks),
    half have broken tokens anywhere."""
    clean = draw(st.booleans())
    name = draw(st.sampled_from(sorted(SPECS)))
    spec = SPECS[name]
    argv = ["sweep"]
    if clean or draw(st.integers(0, 9)):
        argv += ["--model", _pick(draw, clean, (name,), ("nope", "", "TP", " tp", "--set"))]
    keys = [p.name for p in spec.params]
    used: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        key = _pick(draw, clean, tuple(keys), ("nope", "", " " + keys[0], keys[0].upper()))
        if key in used and (clean or draw(st.integers(0, 3))):
            continue
        used.append(key)
        vals = draw(_values(clean, spec, key))
        if clean or draw(st.integers(0, 5)):
            argv += ["--set", f"{key}={vals}"]
        else:
            argv += ["--set", draw(st.sampled_from((key, f"={vals}", f"{key}==1", "=")))]
    if draw(st.integers(0, 2)) == 0:
        argv += ["--fault", _pick(draw, clean, tuple(f.name for f in spec.faults) or ("nope",), ("nope", ""))]
    if draw(st.integers(0, 3)) == 0:
        argv += ["--property", _pick(draw, clean, ("matching", "deadlock", "dataflow", "race", "phase"), ("nope",))]
    if draw(st.integers(0, 6)) == 0:
        argv += ["--engine", _pick(draw, clean, ("hybrid", "z3"), ("bogus",))]
    if not clean and draw(st.integers(0, 6)) == 0:  # positive --memory is left out: z3 can crash at a tiny limit
        argv += ["--memory", draw(st.sampled_from(("0", "-1", "x", "1e3")))]
    for opt, good, bad in (("--timeout", ("1e-300", "5"), ("nan", "inf", "-inf", "-1", "0", "x", "1e400")),
                           ("--rlimit", ("1", "100000", "99999999999999999999"), ("-5", "0", "x")),
                           ("--max-cex", ("1", "2", "99999999999"), ("0", "-1", "x"))):
        if draw(st.integers(0, 7)) == 0:
            argv += [opt, _pick(draw, clean, good, bad)]
    argv += _fanout(draw, clean)
    if draw(st.integers(0, 3)) == 0:
        argv += ["--format", _pick(draw, clean, ("text", "json"), ("xml",))]
    return argv if clean else _noise(draw, argv)


def _fanout(draw: st.DrawFn, clean: bool) -> list[str]:
    out: list[str] = []
    if draw(st.integers(0, 4)) == 0:
        # --jobs 2 starts worker processes: valid but rare, so that the test stays quick
        out += ["--jobs", _pick(draw, clean, ("1", "1", "1", "2"), ("-1", "-99", "1025", "x", "", "2.5", "²"))]
    if not clean and draw(st.integers(0, 4)) == 0:  # (a good address is exit 2 here: ray is made missing)
        out += ["--ray", draw(st.sampled_from((*GARBAGE_RAY, *GOOD_RAY)))]
    return out


def _noise(draw: st.DrawFn, argv: list[str]) -> list[str]:
    """Sometimes one token replaced, dropped, or a raw one inserted."""
    pick = draw(st.integers(0, 9))
    if pick == 0 and len(argv) > 1:
        i = draw(st.integers(1, len(argv) - 1))
        argv = [*argv[:i], draw(BAD_TEXT), *argv[i + 1:]]
    elif pick == 1 and len(argv) > 1:
        i = draw(st.integers(1, len(argv) - 1))
        argv = argv[:i] + argv[i + 1:]
    elif pick == 2:
        i = draw(st.integers(1, len(argv)))
        argv = [*argv[:i], draw(st.sampled_from(("--", "-", "--set", "--jobs", "--ray", "-k", "--bogus"))),
                *argv[i:]]
    return argv


@st.composite
def prove_argv(draw: st.DrawFn, files: dict[str, str]) -> list[str]:
    argv = ["prove"]
    listing = draw(st.booleans())
    paths = draw(st.lists(st.sampled_from(sorted(files)), max_size=2))
    if listing:  # only --list may read the real proofs/ (running it all is far too slow here)
        paths += draw(st.lists(st.sampled_from(("proofs", "proofs/tp.toml", "proofs/nope.toml")), max_size=1))
    argv += [files.get(p, p) for p in paths]
    if listing:
        argv.append("--list")
    if draw(st.integers(0, 2)) == 0:
        argv += ["-k", draw(st.sampled_from(("tp2", "*::tp2", "*", "[", "", "no-such", "*[!", "?")) | BAD_TEXT)]
    argv += _fanout(draw, False)
    if draw(st.integers(0, 3)) == 0:
        argv += ["--format", draw(st.sampled_from(("text", "json", "yaml")))]
    argv = _noise(draw, argv)
    # Running all of proofs/ takes minutes: the real suite only with --list, and some file always given.
    if "--list" not in argv:
        argv = [a for a in argv if not a.startswith("proofs")]
        if not any(a in files.values() for a in argv):
            argv.insert(1, files["tiny"])
    return argv


# ------------------------------------------------------------------ running them
@pytest.fixture(scope="module")
def proof_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("fuzzproofs")
    files = {"tiny": d / "tiny.toml", "dir": d / "several", "missing": d / "missing.toml"}
    files["tiny"].write_text(TINY_PROOF)
    files["dir"].mkdir()
    (files["dir"] / "ok.toml").write_text(TINY_PROOF)
    for i, text in enumerate(BAD_PROOFS):
        p = d / f"bad{i}.toml"
        p.write_text(text)
        files[f"bad{i}"] = p
    return {k: str(v) for k, v in files.items()}


def run_argv(argv: list[str]) -> tuple[int, str, float]:
    """Exit code, stderr and seconds of ``syncproof ARGV`` in this process."""
    err = io.StringIO()
    t0 = time.perf_counter()
    with no_ray(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err), \
            time_limit(LIMIT_S):
        try:
            code: Any = main(argv)
        except SystemExit as exc:  # argparse: a usage error (2), or --help (0)
            code = exc.code
    return (code if isinstance(code, int) else 2 if code else 0), err.getvalue(), time.perf_counter() - t0


def check(argv: list[str]) -> int:
    note(repr(argv))
    try:
        code, err, secs = run_argv(argv)
    except Hang:
        raise AssertionError(f"syncproof {argv!r} did not answer within {LIMIT_S} s") from None
    assert code in (0, 1, 2, 3), f"exit {code} for {argv!r}:\n{err}"
    assert "Traceback" not in err, f"a traceback for {argv!r}:\n{err}"
    if code == 2:
        assert "error" in err, f"exit 2 without a message for {argv!r}:\n{err!r}"
    return code


TRIED: dict[str, Any] = {"n": 0, "codes": {}, "slowest": 0.0}


def _tally(code: int) -> None:
    TRIED["n"] += 1
    TRIED["codes"][code] = TRIED["codes"].get(code, 0) + 1


_SETTINGS: dict[str, Any] = {"deadline": None, "database": None,
                             "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


def _vectors(files: dict[str, str]) -> st.SearchStrategy[list[str]]:
    return st.one_of(sweep_argv(), sweep_argv(), prove_argv(files))


def test_malformed_sweep_and_prove_arguments_exit_cleanly(proof_files: dict[str, str]) -> None:
    codes: dict[int, int] = {}

    @settings(max_examples=DEFAULT_EXAMPLES, derandomize=True, **_SETTINGS)
    @given(_vectors(proof_files))
    def one(argv: list[str]) -> None:
        code = check(argv)
        codes[code] = codes.get(code, 0) + 1

    one()
    assert sum(codes.values()) >= DEFAULT_EXAMPLES
    assert codes.get(2, 0) >= DEFAULT_EXAMPLES // 4, codes  # the vectors do hit the error paths...
    assert codes.get(0, 0) + codes.get(1, 0) + codes.get(3, 0) > 0, codes  # ...and some are valid runs


@pytest.mark.slow
def test_malformed_sweep_and_prove_arguments_exit_cleanly_many(proof_files: dict[str, str]) -> None:
    TRIED.update(n=0, codes={})
    t0 = time.perf_counter()

    @settings(max_examples=SLOW_EXAMPLES, **_SETTINGS)
    @given(_vectors(proof_files))
    def one(argv: list[str]) -> None:
        _tally(check(argv))

    one()
    line = (f"{TRIED['n']} argument vectors tried in {time.perf_counter() - t0:.0f} s, exit codes"
            f" {dict(sorted(TRIED['codes'].items()))}: no traceback, no exit 4, no hang (limit {LIMIT_S:.0f} s)")
    print(line)
    report = os.environ.get("SYNCPROOF_FUZZ_REPORT")
    if report:
        Path(report).write_text(line + "\n")
    assert TRIED["n"] >= SLOW_EXAMPLES


@pytest.mark.parametrize("argv", [
    ["sweep", "--model", "tp", "--set", "tp=1..10**12"],
    ["sweep", "--model", "tp", "--set", "tp=1..1000000000000"],
    ["sweep", "--model", "tp", "--set", "tp=²"],
    ["sweep", "--model", "tp", "--set", "tp=١"],
    ["sweep", "--model", "tp", "--set", "tp=1..2.5"],
    ["sweep", "--model", "tp", "--set", "tp="],
    ["sweep", "--model", "tp", "--set", "=1"],
    ["sweep", "--model", "tp", "--set", "tp=1..8", "--set", "layers=1..8", "--set", "steps=1..8",
     "--set", "prompt=1..64"],
    ["sweep", "--model", "nope"],
    ["sweep", "--model", "tp", "--set", "nope=1"],
    ["sweep", "--model", "tp", "--set", "tp=1", "--fault", "skip-allreduce"],
    ["sweep", "--model", "tp", "--jobs", "-1"],
    ["sweep", "--model", "tp", "--ray", "%%%"],
    ["sweep", "--model", "tp", "--ray", "auto"],
    ["prove", "--jobs", "-4"],
    ["prove", "-k", "no-such-obligation"],
])
def test_the_issue_examples_exit_2_with_a_message(argv: list[str]) -> None:
    code, err, _ = run_argv(argv)
    assert code == 2, err
    assert err.startswith("syncproof") and "Traceback" not in err and len(err.splitlines()) <= 3, err
