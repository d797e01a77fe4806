"""Malformed Flight Recorder dumps and profiler traces, generated: mutations
of the real fixtures (tests/fixtures/fr/) at the pickle-opcode level
(deleted, repeated, swapped and replaced opcodes, changed arguments,
inserted GLOBAL/REDUCE/BUILD/NEWOBJ, truncations), JSON field mutations
(wrong types, missing keys, huge and negative numbers, deep nesting) and
random bytes, each run through ``syncproof import flight-recorder`` and
``syncproof import profiler`` in-process.

What must hold for every input: exit 0, 1 or 2, never 4 (an internal error),
never a traceback, never a hang (a time limit per input), and exit 2 comes
with a message that names the file.  The default variant tries about a
hundred inputs; the slow one (``-m slow``) thousands, and prints how many.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import pickletools
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncproof.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "fr"
SEEDS = ("tp2_first_skip", "swap", "skip_last_mlp_decode2")
#: Seconds one input may take (the machine is shared and loaded; real inputs take well under 0.2 s).
EXAMPLE_SECONDS = 20.0

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
          HealthCheck.large_base_example]
FAST = settings(max_examples=50, deadline=None, database=None, derandomize=True, suppress_health_check=_QUIET)
SLOW = settings(max_examples=3000, deadline=None, database=None, suppress_health_check=_QUIET)


from fuzz_support import Hang, outcome, time_limit  # noqa: E402  (one alarm for every fuzz test)


@dataclass
class Tally:
    n: int = 0
    slowest: float = 0.0

    def __post_init__(self) -> None:
        self.codes: dict[int, int] = {}


TALLY = Tally()


def run(argv: list[str], mutated: Path) -> int:
    """``syncproof ARGV`` in-process under the time limit; checks the outcome."""
    out, err = io.StringIO(), io.StringIO()
    t0 = time.monotonic()
    try:
        with time_limit(EXAMPLE_SECONDS), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse
                code = exc.code if isinstance(exc.code, int) else 2
    except Hang as exc:
        pytest.fail(f"syncproof {' '.join(argv)} on {mutated.name}: {exc}")
    took = time.monotonic() - t0
    TALLY.n += 1
    TALLY.slowest = max(TALLY.slowest, took)
    TALLY.codes[code] = TALLY.codes.get(code, 0) + 1
    text = err.getvalue()
    shown = f"syncproof {' '.join(argv)} ({mutated.name} mutated) -> exit {code}\n{text[-3000:]}"
    assert "Traceback" not in text, shown
    assert code != 4 and "internal error" not in text, shown
    assert code in (0, 1, 2), shown
    if code == 2:
        assert mutated.name in text, shown
    return code


# ---------------------------------------------------------------- the seeds
def _files(name: str, sub: str) -> list[Path]:
    return sorted((FIXTURES / name / sub).iterdir())


@contextlib.contextmanager
def job_dir(name: str, sub: str, victim: int, content: bytes, with_traces: bool) -> Iterator[tuple[Path, Path]]:
    """A directory with the scenario's ``sub`` files, file ``victim`` replaced
    by ``content``, and (``with_traces``) its profiler traces next to them."""
    with tempfile.TemporaryDirectory(prefix="fuzz_fr_") as tmp:
        d = Path(tmp)
        files = _files(name, sub)
        victim %= len(files)
        for i, f in enumerate(files):
            target = d / (f"{sub}_{f.name}")
            if i == victim:
                target.write_bytes(content)
                mutated = target
            else:
                shutil.copyfile(f, target)
        if with_traces and sub != "profiler":
            for f in _files(name, "profiler"):
                shutil.copyfile(f, d / f"prof_{f.name}")
        yield d, mutated


def _seed_bytes(name: str, sub: str, victim: int) -> bytes:
    files = _files(name, sub)
    return files[victim % len(files)].read_bytes()


# ---------------------------------------------------------------- pickle mutations
_EVIL = [b"c__builtin__\neval\n", b"cos\nsystem\n(S'echo pwned'\ntR", b"\x8c\x08builtins\x8c\x04exec\x93",
         b"R", b"b", b"\x81", b"\x92", b"i__builtin__\nobject\n", b"(", b")", b"}", b"]", b"e", b"u", b"s",
         b"h\x00", b"j\x00\x00\x00\x00", b"\x8a\x08" + b"\xff" * 8, b"\x8b\xff\xff\xff\x7f",
         b"X\xff\xff\xff\x7f", b"\x8d" + b"\xff" * 8, b"q\x00", b"0", b"2", b"\x94", b"."]


def _op_bounds(data: bytes) -> list[int]:
    """Where each opcode starts (and the end)."""
    try:
        pos = [p for _op, _arg, p in pickletools.genops(data) if p is not None]
    except Exception:  # noqa: BLE001 - a seed is valid; a mutated one may not be
        pos = []
    return pos + [len(data)]


@st.composite
def pickle_mutation(draw: st.DrawFn, data: bytes) -> bytes:
    bounds = _op_bounds(data)
    out = data
    for _ in range(draw(st.integers(1, 3))):
        bounds = _op_bounds(out) if len(bounds) < 2 else bounds
        i = draw(st.integers(0, max(0, len(bounds) - 2)))
        a, b = bounds[i], bounds[min(i + 1, len(bounds) - 1)]
        how = draw(st.sampled_from(["delete", "repeat", "swap", "opcode", "argument", "insert", "truncate"]))
        if how == "delete":
            out = out[:a] + out[b:]
        elif how == "repeat":
            out = out[:b] + out[a:b] * draw(st.integers(1, 50)) + out[b:]
        elif how == "swap":
            j = draw(st.integers(0, max(0, len(bounds) - 2)))
            c, d = bounds[j], bounds[min(j + 1, len(bounds) - 1)]
            if b <= c:
                out = out[:a] + out[c:d] + out[b:c] + out[a:b] + out[d:]
        elif how == "opcode":
            out = out[:a] + bytes([draw(st.integers(0, 255))]) + out[a + 1:]
        elif how == "argument" and b - a > 1:
            k = draw(st.integers(a + 1, b - 1))
            out = out[:k] + draw(st.binary(min_size=1, max_size=4)) + out[k + 1:]
        elif how == "insert":
            out = out[:a] + draw(st.sampled_from(_EVIL)) + out[a:]
        else:
            out = out[: draw(st.integers(0, len(out)))]
        bounds = []
    return out


# ---------------------------------------------------------------- JSON mutations
_HUGE = st.sampled_from([2**63, 2**64 + 1, -(2**63) - 1, 10**40, -1, -(10**30), 10**4000])
_WEIRD = st.recursive(
    st.none() | st.booleans() | st.integers() | _HUGE | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e308, -1e308, 1e-320, 0.5]) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def _deep(n: int) -> Any:
    v: Any = [0]
    for _ in range(n):
        v = [v]
    return v


def _paths(doc: Any, limit: int = 4000) -> list[tuple[Any, Any]]:
    """(container, key) of every value in ``doc``, breadth first, up to ``limit``."""
    out: list[tuple[Any, Any]] = []
    todo = [doc]
    while todo and len(out) < limit:
        x = todo.pop(0)
        items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else []
        for k, v in items:
            out.append((x, k))
            todo.append(v)
    return out


_SMALL = st.integers(-2, 40)
_TYPED: dict[str, st.SearchStrategy[Any]] = {
    "collective_seq_id": _SMALL, "record_id": _SMALL, "p2p_seq_id": _SMALL, "time_created_ns": _SMALL,
    "state": st.sampled_from(["scheduled", "started", "completed", "weird"]),
    "retired": st.booleans(), "is_p2p": st.booleans(),
    "profiling_name": st.sampled_from(["gloo:all_reduce", "nccl:all_gather", "nccl:send 0->1", "nccl:recv 1<-0",
                                       "nccl:coalesced", "gloo:broadcast", "nccl:all_to_all", "nccl:barrier",
                                       "gloo:mystery"]),
    "process_group": st.sampled_from([["0", "default_pg"], ["1", "tp0"], ["2", "tp1"], ["9", "undefined"]]),
    "input_sizes": st.sampled_from([[[1, 8]], [[4, 8]], [], [[0]], [[2, 2, 8]]]),
    "output_sizes": st.sampled_from([[[1, 8]], [[16]], []]),
    "input_dtypes": st.sampled_from([["Float"], ["Int"], [], ["BFloat16"]]),
    # profiler events
    "ts": st.floats(0, 1e12), "dur": st.floats(0, 1e9), "name": st.sampled_from(
        ["c10d::allreduce_", "c10d::send", "c10d::recv_", "c10d::_allgather_base_", "decode1", "L0", "mlp",
         "record_param_comms", "gloo:all_reduce", "c10d::broadcast_"]),
    "ph": st.sampled_from(["X", "B", "i"]), "tid": st.integers(0, 3),
    "cat": st.sampled_from(["cpu_op", "user_annotation"]),
    "args": st.sampled_from([{}, {"Concrete Inputs": ["", "", "1", "0"]}, {"Input Dims": [[1, 8]]},
                             {"Process Group Name": "1", "dtype": "Float"},
                             {"Collective name": "allreduce", "In msg nelems": 8, "Out msg nelems": 8}]),
}


def _records(doc: Any) -> list[dict[str, Any]]:
    """The dump's entries, or the trace's events."""
    if isinstance(doc, dict):
        for key in ("entries", "traceEvents"):
            if isinstance(doc.get(key), list):
                return [e for e in doc[key] if isinstance(e, dict)]
    return []


@st.composite
def json_mutation(draw: st.DrawFn, data: bytes) -> bytes:
    doc = json.loads(data)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        parent, key = paths[draw(st.integers(0, len(paths) - 1))]
        how = draw(st.sampled_from(["replace", "replace", "delete", "deep", "huge", "string_number", "typed",
                                    "typed", "typed"]))
        if how == "typed":  # a value of the right type: reaches the analysis rather than the checks
            entries = _records(doc)
            if entries:
                rec = entries[draw(st.integers(0, len(entries) - 1))]
                key = draw(st.sampled_from(sorted(_TYPED)))
                rec[key] = draw(_TYPED[key])
        elif how == "delete":
            del parent[key]
        elif how == "deep":
            parent[key] = _deep(draw(st.integers(30, 400)))
        elif how == "huge":
            parent[key] = draw(_HUGE)
        elif how == "string_number":
            parent[key] = draw(st.sampled_from(["7", "-3", "٣", "1" * 50, "1e400", ""]))
        else:
            parent[key] = draw(_WEIRD)
    text = json.dumps(doc)
    if draw(st.integers(0, 9)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    if draw(st.integers(0, 9)) == 0:
        text = text.replace("1", "1e400", 1)  # a number that parses to infinity
    return text.encode()


# ---------------------------------------------------------------- the tests
@st.composite
def mutated_input(draw: st.DrawFn) -> tuple[str, str, int, bytes, bool]:
    name = draw(st.sampled_from(SEEDS))
    sub = draw(st.sampled_from(["pickle", "json", "profiler"]))
    victim = draw(st.integers(0, 3))
    seed = _seed_bytes(name, sub, victim)
    kind = draw(st.integers(0, 9))
    if kind == 0:
        content = draw(st.binary(min_size=1, max_size=64))
    elif kind == 1:
        content = seed[: draw(st.integers(1, max(1, len(seed) - 1)))]
    elif sub == "pickle":
        content = draw(pickle_mutation(seed))
    else:
        content = draw(json_mutation(seed))
    return name, sub, victim, content, draw(st.booleans())


def check_one(case: tuple[str, str, int, bytes, bool]) -> None:
    name, sub, victim, content, with_traces = case
    with job_dir(name, sub, victim, content, with_traces) as (d, mutated):
        run(["import", "flight-recorder", str(d)], mutated)
        if sub == "profiler" and not with_traces:
            run(["import", "profiler", str(d)], mutated)


@FAST
@given(mutated_input())
def test_mutated_inputs_never_crash(case: tuple[str, str, int, bytes, bool]) -> None:
    check_one(case)


@FAST
@given(st.sampled_from(SEEDS), st.integers(0, 3), st.binary(min_size=1, max_size=200))
def test_random_bytes_next_to_real_dumps(name: str, victim: int, junk: bytes) -> None:
    with job_dir(name, "json", victim, junk, with_traces=True) as (d, mutated):
        run(["import", "flight-recorder", str(d)], mutated)


@pytest.mark.slow
@SLOW
@given(mutated_input())
def test_mutated_inputs_never_crash_many(case: tuple[str, str, int, bytes, bool]) -> None:
    check_one(case)


@pytest.mark.slow
def test_zz_report_slow_count(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs after the slow variant (file order): the line for the release note."""
    codes = ", ".join(f"exit {c}: {n}" for c, n in sorted(TALLY.codes.items()))
    bad = TALLY.codes.get(4, 0)
    with capsys.disabled():
        print(f"\nflight-recorder/profiler import: {TALLY.n} inputs tried, {outcome(TALLY.codes)}"
              f" (slowest {TALLY.slowest:.2f} s; {codes})")
    assert TALLY.n > 0 and not bad


# ---------------------------------------------------------------- hand-made worst cases
def _memo_bomb(levels: int, width: int) -> bytes:
    """A list of ``width`` references to a list of ``width`` references to
    ... : a few hundred bytes that unpickle to a value of width^levels leaves
    when walked."""
    v: Any = [0]
    for _ in range(levels):
        v = [v] * width
    return pickle.dumps({"version": "2.10", "pg_config": {}, "entries": [v]}, protocol=4)


def _entry(**kw: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"record_id": 0, "process_group": ["0", "default_pg"], "collective_seq_id": 1,
                         "profiling_name": "nccl:all_reduce", "state": "completed", "input_sizes": [[4]],
                         "output_sizes": [[4]], "time_created_ns": 1}
    e.update(kw)
    return e


def _self_reference() -> bytes:
    v: list[Any] = []
    v.append(v)
    return pickle.dumps({"version": "2.10", "entries": v}, protocol=2)


@pytest.mark.parametrize("content, expect", [
    (_memo_bomb(20, 8), "expands to more than"),
    (_self_reference(), "nests more than"),
    (b"\x80\x02}(X\x07\x00\x00\x00versionX\x04\x00\x00\x002.10X\x07\x00\x00\x00entries"
     + b"(" * 100_000 + b"l" * 100_000 + b"u.", "nests more than"),  # lists 100000 deep
    (b"\x80\x02c__builtin__\nprint\n(S'pwned'\ntR.", "refuses to load __builtin__.print"),
    (b"\x80\x04\x8c\x08builtins\x8c\x04exec\x93.", "refuses to load builtins.exec"),
    (b"\x80\x02}(X\x01\x00\x00\x00a]b.", "pickle: state is not a dictionary"),  # BUILD on a dict
    (b"\x80\x02](K\x01eK\x02\x85R.", "not a valid pickle"),  # REDUCE with a list as the callable
    (b"\x80\x02}X\x07\x00\x00\x00version\x8b\x00\x00\x10\x00" + b"\xff" * 16, "truncated"),  # huge LONG4
    (pickle.dumps({"version": "2.10", "entries": [_entry(time_created_ns=10**5000)]}, protocol=2),
     "'time_created_ns' is <an integer of 16610 bits>, out of range"),
    (pickle.dumps({"version": "2.10", "entries": [_entry(input_sizes=[[-4]])]}, protocol=2),
     "dimension -4 is out of range"),
    (pickle.dumps({"version": "2.10", "entries": [_entry(collective_seq_id=-1)]}, protocol=2),
     "'collective_seq_id' is -1, out of range"),
    (pickle.dumps({"version": "2.10", "pg_config": {"0": {"ranks": "[0, 99999999]"}}}, protocol=2),
     "rank 99999999 is out of range"),
    (json.dumps({"version": "2.10", "entries": [_entry(time_created_ns=7)]}).replace(": 7}", ": 1e400}").encode(),
     "'time_created_ns' must be an integer"),
])
def test_hostile_pickles(tmp_path: Path, content: bytes, expect: str) -> None:
    f = tmp_path / "rank_0"
    f.write_bytes(content)
    err = io.StringIO()
    t0 = time.monotonic()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["import", "flight-recorder", str(tmp_path)])
    assert time.monotonic() - t0 < EXAMPLE_SECONDS
    assert code == 2, err.getvalue()
    assert "rank_0" in err.getvalue() and expect in err.getvalue(), err.getvalue()
    assert "Traceback" not in err.getvalue()


@pytest.mark.parametrize("field, where", [("baseTimeNanoseconds", "header"), ("ts", "event"), ("dur", "event")])
def test_integers_beyond_any_float_in_a_trace(tmp_path: Path, field: str, where: str) -> None:
    """An integer of hundreds of digits where a time goes: ``math.isfinite``
    overflows on it (the slow fuzz found this as exit 4); now exit 2."""
    trace = next((FIXTURES / "clean" / "profiler").iterdir())
    doc = json.loads(trace.read_text(encoding="utf-8"))
    huge = 10**400
    if where == "header":
        doc[field] = huge
    else:
        ev = next(e for e in doc["traceEvents"] if e.get("ph") == "X")
        ev[field] = huge
    (tmp_path / trace.name).write_text(json.dumps(doc), encoding="utf-8")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["import", "profiler", str(tmp_path)])
    assert code == 2, err.getvalue()
    assert trace.name in err.getvalue() and field in err.getvalue(), err.getvalue()
    assert "Traceback" not in err.getvalue() and "internal error" not in err.getvalue()
