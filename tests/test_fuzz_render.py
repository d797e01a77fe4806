"""``syncproof render`` on tampered reports (issue 16, item 5).

Real reports, written by ``check --format json`` for every example's
violations (and one large-format report that references its schedule by
path and sha256), are mutated by hypothesis: a value anywhere replaced by
one of another type, a huge or negative number, a key dropped or added, a
list cut or repeated, a value nested hundreds deep, the text cut short or
not JSON at all; plus a directory and ``/dev/zero``.  Each goes through
``syncproof.cli.main(["render", ...])`` in-process: the exit code must be 0
(the mutation left a drawable report) or 2 (a message naming the file), never
4 (an internal error), never 1, never a traceback, and within a deadline (no
hang).  The default test tries ~100 inputs in a few seconds; the slow one
(``-m slow``) thousands, and prints how many it tried."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncproof.cli import main
from syncproof.ir import save
from syncproof.render import jsonout

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
WORK = Path(os.environ.get("SYNCPROOF_FUZZ_DIR", "")) if os.environ.get("SYNCPROOF_FUZZ_DIR") else None


def _quiet_main(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


_BASES: list[tuple[str, str]] = []


def bases(tmp: Path) -> list[tuple[str, str]]:
    """(name, report text) of real reports with a counterexample."""
    if _BASES:
        return _BASES
    for path in EXAMPLES:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = main(["check", str(path), "--format", "json"])
        if code == 1:
            _BASES.append((path.stem, out.getvalue()))
    # one report of several schedules (a list)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        main(["check", *map(str, EXAMPLES[:3]), "--format", "json"])
    _BASES.append(("several", out.getvalue()))
    # one report in the large format: the schedule referenced, the run partial
    from syncproof.bench.generators import schedule_of_size

    sched = tmp / "big.json"
    save(schedule_of_size(300, fault=True), sched)
    mp = pytest.MonkeyPatch()
    mp.setattr(jsonout, "EMBED_MAX_OPS", 50)
    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["check", str(sched), "--format", "json"]) == 1
    finally:
        mp.undo()
    _BASES.append(("big", out.getvalue()))
    return _BASES


# ------------------------------------------------------------- mutations
ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 1, 2**31, 2**53, 10**40]),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8), st.sampled_from(["", "x", "r0/s"]),
    st.lists(st.integers(-3, 10**6), max_size=4), st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:6]):  # the first few items of long lists (runs) are enough
            out.extend(_paths(v, (*prefix, i)))
    return out


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        doc = doc[k]
    return doc


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


@st.composite
def mutated(draw: st.DrawFn, tmp: Path) -> bytes:
    """The bytes of one tampered report."""
    name, text = draw(st.sampled_from(bases(tmp)))
    doc = json.loads(text)
    how = draw(st.sampled_from(["replace", "replace", "replace", "drop", "add", "cut", "repeat", "nest",
                                "truncate", "garbage", "swap_ids"]))
    if how == "truncate":
        return text.encode()[: draw(st.integers(0, len(text) - 1))]
    if how == "garbage":
        return draw(st.binary(max_size=64))
    paths = _paths(doc)
    path = draw(st.sampled_from(paths))
    target = _get(doc, path)
    if how == "replace":
        doc = _set(doc, path, draw(ODD_VALUES))
    elif how == "drop" and path:
        parent = _get(doc, path[:-1])
        del parent[path[-1]]
    elif how == "add" and isinstance(target, dict):
        target[draw(st.sampled_from(["run_partial", "schedule_ref", "ids", "x", "run"]))] = draw(ODD_VALUES)
    elif how == "cut" and isinstance(target, list) and target:
        del target[draw(st.integers(0, len(target) - 1)):]
    elif how == "repeat" and isinstance(target, list) and target:
        target.append(target[draw(st.integers(0, len(target) - 1))])
    elif how == "nest":
        deep: Any = draw(ODD_VALUES)
        for _ in range(draw(st.integers(1, 400))):
            deep = [deep]
        doc = _set(doc, path, deep)
    elif how == "swap_ids":
        ids = [p for p in paths if p and p[-1] in ("id", "a", "b", "culprit_ids", "ids", "start", "end")]
        if ids:
            p = draw(st.sampled_from(ids))
            doc = _set(doc, p, draw(st.sampled_from([-1, 10**9, 2**63, 3, None, "0", [0, 0]])))
    return json.dumps(doc).encode()


TRIED = [0]


def _render_one(data: bytes, tmp: Path, suffix: str) -> None:
    report = tmp / "report.json"
    report.write_bytes(data)
    code, err = _quiet_main(["render", str(report), "-o", str(tmp / f"out{suffix}")])
    TRIED[0] += 1
    assert code in (0, 2), f"exit {code}: {err[-2000:]}"
    assert "Traceback" not in err and "internal error" not in err, err[-2000:]
    if code == 2:
        assert str(report) in err, f"the message must name the file: {err}"


def _fuzz(tmp: Path, examples: int) -> None:
    @settings(max_examples=examples, deadline=10_000, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=mutated(tmp), suffix=st.sampled_from([".dot", ".json"]))
    def check(data: bytes, suffix: str) -> None:
        _render_one(data, tmp, suffix)

    check()


def test_tampered_reports_exit_0_or_2(tmp_path: Path) -> None:
    start = TRIED[0]
    _fuzz(tmp_path, 100)
    assert TRIED[0] - start >= 100


@pytest.mark.slow
def test_tampered_reports_exit_0_or_2_thousands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = TRIED[0]
    _fuzz(tmp_path, int(os.environ.get("SYNCPROOF_FUZZ_EXAMPLES", "3000")))
    tried = TRIED[0] - start
    with capsys.disabled():
        print(f"\ntest_fuzz_render: {tried} inputs tried, none gave a traceback, exit 4 or a hang")
    assert tried >= 1000


@pytest.mark.parametrize("special", ["dir", "/dev/zero", "empty", "not-json", "deep", "huge-int", "nan"])
def test_special_inputs_exit_2_naming_the_file(special: str, tmp_path: Path) -> None:
    if special == "dir":
        path = tmp_path / "d"
        path.mkdir()
    elif special == "/dev/zero":
        if not Path("/dev/zero").exists():
            pytest.skip("no /dev/zero here")
        path = Path("/dev/zero")
    else:
        path = tmp_path / "r.json"
        path.write_text({"empty": "", "not-json": "{results: [}", "deep": "[" * 100_000 + "]" * 100_000,
                         "huge-int": '{"results": [' + "9" * 5000 + "]}",
                         "nan": '{"results": [], "x": NaN}'}[special])
    code, err = _quiet_main(["render", str(path), "-o", str(tmp_path / "o.dot")])
    assert code == 2, err
    assert str(path) in err and "Traceback" not in err


def test_field_errors_name_the_field(tmp_path: Path) -> None:
    """A few targeted tamperings: the message names the field that is wrong."""
    _, text = next(b for b in bases(tmp_path) if b[0] == "tp-allreduce-nowait")
    cases = {
        ("results", 2, "counterexample", "culprit_ids", 0): (10**6, "culprit_ids[0]"),
        ("results", 2, "counterexample", "run"): ([], "counterexample.run"),
        ("results", 2, "counterexample", "observation", "kind"): (3, "observation.kind"),
        ("results", 2, "counterexample", "run", 0, "start"): ("soon", "run[0].start"),
        ("results", 2, "counterexample", "run", 0, "end"): (2**80, "run[0].end"),
        ("results",): ({}, "results"),
    }
    for path, (value, field) in cases.items():
        doc = json.loads(text)
        assert doc["results"][2]["property"] == "dataflow"
        _set(doc, path, value)
        report = tmp_path / "r.json"
        report.write_text(json.dumps(doc))
        code, err = _quiet_main(["render", str(report), "-o", str(tmp_path / "o.dot")])
        assert code == 2 and str(report) in err and field in err, (path, err)
