"""Fuzzing schedule files (issue 16): mutations of the example files, in the
JSON form (both the canonical one-op-per-line layout and any other) and in
the compact form, given to ``syncproof check`` in-process.

Every input must end with exit 0, 1, 2 or 3 (never 4, an internal error),
with no traceback, within a time bound (a signal alarm); exit 2 must come
with a message naming the file.  The default variant tries about a hundred
inputs; the slow one (``-m slow -s``) thousands, and prints how many.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncproof.cli import main
from syncproof.ir import dumps, load
from syncproof.ir.compact import compact_bytes, compact_bytes_v1

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
SEEDS_JSON = [p.read_bytes() for p in EXAMPLES]
SEEDS_COMPACT = [compact_bytes(load(p)) for p in EXAMPLES] + [compact_bytes_v1(load(p)) for p in EXAMPLES[::3]]
SECONDS = 20  # per input, on a loaded shared machine; a hang is far longer
QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture,
         HealthCheck.large_base_example, HealthCheck.filter_too_much]


from fuzz_support import Hang, outcome, time_limit  # noqa: E402  (one alarm for every fuzz test)

time_bound = time_limit


# ------------------------------------------------------------------ values and mutations
NASTY_VALUES: list[Any] = [
    None, True, False, 0, -1, -(2**63), 2**63, 2**64 + 1, 2**62, 10**30, 1.5, -0.0, 1e308, "", "²", "٣", "x" * 300,
    [], {}, [1, 2], {"a": 1}, "0:0", "5:2", "-1:3", "0:9223372036854775808", "kv[token=0:²]", "1/0", "2/1",
]
NASTY_TEXTS = [b"1" * 5000, b"-" + b"9" * 40, b"1e999", b"NaN", b"Infinity", b"-Infinity", b'"\\ud800"', b"[" * 3000,
               b'"\xff\xfe"', b"99999999999999999999", b'"\xc2\xb2"']


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value in a JSON document."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _mutate_doc(doc: Any, rnd: random.Random) -> tuple[Any, bytes | None]:
    """One structural mutation: delete, duplicate, retype or rename a field,
    a nasty value, deep nesting; maybe a raw token to splice in for a value."""
    paths = [p for p in _paths(doc) if p]
    path = rnd.choice(paths)
    parent, key = _get(doc, path[:-1]), path[-1]
    what = rnd.randrange(7)
    raw = None
    if what == 0:  # delete
        del parent[key]
    elif what == 1 and isinstance(parent, list):  # duplicate an element (an op, a member)
        parent.insert(key, json.loads(json.dumps(parent[key])))
    elif what == 2:
        parent[key] = rnd.choice(NASTY_VALUES)
    elif what == 3:  # deep nesting
        n = rnd.choice([10, 150, 199, 201, 1000, 5000])
        parent[key] = "__RAW__"
        raw = b"[" * n + b"]" * n
    elif what == 4:
        parent[key] = "__RAW__"
        raw = rnd.choice(NASTY_TEXTS)
    elif what == 5 and isinstance(parent, dict):  # rename: a key with non-ASCII digits, a huge rank, junk
        v = parent.pop(key)
        parent[rnd.choice(["²", "٣", "1" * 30, "-1", "01", " 0", str(key) + "x", "op", "stream", "99999"])] = v
    else:  # retype: the value wrapped or unwrapped
        v = parent[key]
        parent[key] = [v] if not isinstance(v, list) else (v[0] if v else {})
    return doc, raw


def _canonical_text(doc: Any) -> str:
    """The document in the one-op-per-line layout (dumps'), whatever it holds."""
    if not isinstance(doc, dict) or not isinstance(doc.get("ranks"), dict):
        return json.dumps(doc)
    ranks = doc["ranks"]
    lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in doc.items() if k != "ranks"]
    lines.append('  "ranks": {')
    items = list(ranks.items())
    for ri, (rk, ops) in enumerate(items):
        if not isinstance(ops, list):
            lines.append(f"    {json.dumps(rk)}: {json.dumps(ops)}" + ("," if ri < len(items) - 1 else ""))
            continue
        lines.append(f"    {json.dumps(rk)}: [")
        lines += ["      " + json.dumps(op) + ("," if oi < len(ops) - 1 else "") for oi, op in enumerate(ops)]
        lines.append("    ]" + ("," if ri < len(items) - 1 else ""))
    return "\n".join(lines + ["  }", "}"]) + "\n"


def json_input(seed: int, rnd: random.Random) -> bytes:
    doc = json.loads(SEEDS_JSON[seed % len(SEEDS_JSON)])
    raw = None
    for _ in range(rnd.choice([1, 1, 2, 3])):
        doc, r = _mutate_doc(doc, rnd)
        raw = raw or r
    text = (_canonical_text(doc) if rnd.random() < 0.6 else json.dumps(doc, indent=rnd.choice([None, 1]))).encode()
    if raw is not None:
        text = text.replace(b'"__RAW__"', raw, 1)
    kind = rnd.randrange(10)
    if kind == 0:  # truncation
        text = text[:rnd.randrange(len(text) + 1)]
    elif kind == 1:  # random bytes spliced in
        i = rnd.randrange(len(text) + 1)
        text = text[:i] + bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 8))) + text[i:]
    elif kind == 2:  # a duplicated key, textually
        i = text.find(b'"stream": ')
        if i >= 0:
            text = text[:i] + b'"stream": "x", ' + text[i:]
    elif kind == 3:  # a non-ASCII digit in a region bound or a rank key
        text = text.replace(rnd.choice([b"=0", b"=1", b'"0"', b'"1"', b":1"]), "=²".encode(), 1)
    return text


def compact_input(seed: int, rnd: random.Random) -> bytes:
    data = bytearray(SEEDS_COMPACT[seed % len(SEEDS_COMPACT)])
    kind = rnd.randrange(6)
    if kind == 0:
        return bytes(data[:rnd.randrange(len(data) + 1)])
    if kind == 1:  # a few bytes flipped anywhere
        for _ in range(rnd.randrange(1, 6)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
    elif kind == 2:  # a 32- or 64-bit field overwritten with an absurd size
        width = rnd.choice([4, 8])
        at = rnd.randrange(0, max(1, len(data) - width))
        data[at:at + width] = rnd.choice([2**32 - 1, 2**31, 10**9, 0, 1]).to_bytes(width, "little")[:width] \
            if width == 4 else rnd.choice([2**64 - 1, 2**40, 0]).to_bytes(8, "little")
    elif kind == 3:  # the header's text mutated
        i = data.find(b"{")
        j = rnd.randrange(i, min(len(data), i + 400))
        data[j:j] = rnd.choice([b'"x":1,', b"\xb2", b"9" * 30, b"[" * 300, b"-"])
    elif kind == 4:  # bytes appended or removed in the middle
        i = rnd.randrange(16, len(data))
        data[i:i + rnd.randrange(1, 9)] = b""
    else:  # the version
        data[8:12] = rnd.choice([0, 1, 2, 3, 2**32 - 1]).to_bytes(4, "little")
    return bytes(data)


def random_input(rnd: random.Random) -> bytes:
    head = rnd.choice([b"", b"{", b"\x89SPZ\r\n\x1a\n", b'{\n  "syncproof": 2,\n  "ranks": {\n'])
    return head + bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 200)))


# ------------------------------------------------------------------ running one input
class Tally:
    def __init__(self) -> None:
        self.n = 0
        self.codes: dict[int, int] = {}

    def add(self, code: int) -> None:
        self.n += 1
        self.codes[code] = self.codes.get(code, 0) + 1

    def line(self) -> str:
        codes = ", ".join(f"exit {c}: {n}" for c, n in sorted(self.codes.items()))
        return f"schedule files: {self.n} inputs tried, {outcome(self.codes)} ({codes})"


def run_check(data: bytes, directory: Path, name: str, capsys: pytest.CaptureFixture[str]) -> int:
    path = directory / name
    path.write_bytes(data)
    capsys.readouterr()
    try:
        with time_bound(SECONDS):
            try:
                code = main(["check", str(path), "--no-grid"])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 2
    except Hang:
        pytest.fail(f"a hang on {name} ({len(data)} bytes): {data[:300]!r}")
    err = capsys.readouterr().err
    shown = f"exit {code} on {name} ({len(data)} bytes): {data[:400]!r}\n{err[-1500:]}"
    assert "Traceback" not in err and "internal error" not in err, shown
    assert code in (0, 1, 2, 3), shown
    if code == 2:
        assert str(path) in err, shown
    return code


INPUTS = st.tuples(st.sampled_from(["json", "json", "json", "compact", "random"]), st.integers(0, 10**6),
                   st.integers(0, 2**32))


def _one(case: tuple[str, int, int], directory: Path, capsys: pytest.CaptureFixture[str]) -> int:
    form, seed, salt = case
    rnd = random.Random(salt)
    if form == "json":
        return run_check(json_input(seed, rnd), directory, "fuzz.json", capsys)
    if form == "compact":
        return run_check(compact_input(seed, rnd), directory, "fuzz.spz", capsys)
    return run_check(random_input(rnd), directory, rnd.choice(["fuzz.json", "fuzz.spz"]), capsys)


def test_mutated_schedule_files(capsys: pytest.CaptureFixture[str]) -> None:
    tally = Tally()
    with tempfile.TemporaryDirectory() as d:
        @settings(max_examples=100, deadline=None, database=None, derandomize=True, suppress_health_check=QUIET)
        @given(INPUTS)
        def inner(case: tuple[str, int, int]) -> None:
            tally.add(_one(case, Path(d), capsys))

        inner()
    assert tally.n >= 100
    assert 2 in tally.codes  # the mutations do reach the loader's errors
    assert set(tally.codes) - {2}  # and some mutated files still load and check


@pytest.mark.slow
def test_mutated_schedule_files_many(capsys: pytest.CaptureFixture[str]) -> None:
    tally = Tally()
    with tempfile.TemporaryDirectory() as d:
        @settings(max_examples=10000, deadline=None, database=None, suppress_health_check=QUIET)
        @given(INPUTS)
        def inner(case: tuple[str, int, int]) -> None:
            tally.add(_one(case, Path(d), capsys))

        inner()
    with capsys.disabled():
        print("\n" + tally.line())
    out = os.environ.get("SYNCPROOF_FUZZ_SUMMARY")
    if out:
        with open(out, "a", encoding="utf-8") as f:
            f.write(tally.line() + "\n")


# ------------------------------------------------------------------ the inputs the issue names
@pytest.mark.parametrize("text", [
    b'{"syncproof": 2, "ranks": {"0": [{"op": "compute", "stream": "s", "size": ' + b"9" * 5000 + b"}]}}",
    b'{"syncproof": 2, "ranks": {"\xc2\xb2": []}}',
    b'{"syncproof": 2, "buffers": {"x": ["t"]}, "ranks": {"0": [{"op": "compute", "stream": "s",'
    b' "reads": {"x[t=\xc2\xb2]": "v"}}]}}',
    b'{"syncproof": 2, "buffers": {"x": ["t"]}, "ranks": {"0": [{"op": "compute", "stream": "s",'
    b' "writes": {"x[t=0:9223372036854775808]": "v"}}]}}',
    b'{"syncproof": 2, "buffers": {"x": {"t": 9223372036854775808}}, "ranks": {"0": []}}',
    b'{"syncproof": 2, "ranks": {"0": [{"op": "compute", "stream": "s", "layer": 9223372036854775808}]}}',
    b'{"syncproof": 2, "ranks": {"0": [{"op": "compute", "stream": "s", "tokens": "0:\xd9\xa3"}]}}',
    b'{"syncproof": 2, "ranks": {"0": [{"op": "compute", "stream": "s", "sp": "\xc2\xb2/4"}]}}',
    b"[" * 100000 + b"]" * 100000,
    b'{"syncproof": 2, "ranks": {"0": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
    b'{"syncproof": 2, "ranks": {"99999999999999999999": []}}',
    b'{"syncproof": 2, "name": "a\\ud800", "ranks": {"0": []}}',  # half a UTF-16 pair: found by the slow fuzz
    b'{"syncproof": 2, "ranks": {"0": [{"op": "compute", "stream": "s", "name": "\\udfff"}]}}',
])
def test_inputs_the_issue_names(text: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_check(text, tmp_path, "bad.json", capsys) == 2
    canonical = tmp_path / "canon.json"  # the same fault in the one-op-per-line layout, where it parses
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return
    assert run_check(_canonical_text(doc).encode(), tmp_path, canonical.name, capsys) == 2


def test_special_files_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # no writer: reading it would block forever
    for path in ("/dev/zero", str(fifo), str(tmp_path)):
        capsys.readouterr()
        with time_bound(SECONDS):
            code = main(["check", path])
        err = capsys.readouterr().err
        assert code == 2 and path in err, err
        with time_bound(SECONDS):
            assert main(["convert", path, str(tmp_path / "out.spz")]) == 2


def test_many_ranks_load(tmp_path: Path) -> None:
    """100k ranks, each with one op, load in about a second: the loader used to look each rank up in a
    list of the ranks so far (5 * 10^9 comparisons here; the test would not finish)."""
    n = 100_000
    p = tmp_path / "ranks.json"
    p.write_text(json.dumps({"syncproof": 2, "ranks": {str(r): [{"op": "compute", "stream": "s"}]
                                                       for r in range(n)}}), encoding="utf-8")
    s = load(p)
    assert s.size == n and s.ranks == tuple(range(n))


def _outcome(text: bytes) -> object:
    from syncproof.errors import ScheduleError
    from syncproof.ir import loads

    try:
        s = loads(text, "f.json")
    except ScheduleError as exc:
        return str(exc)
    return s, s.features  # the features too: the fast path tracks them on the way


def _generated_seed() -> bytes:
    from syncproof.bench.generators import schedule_of_size

    return dumps(schedule_of_size(200, fault=True)).encode()  # TP ranks: identical op lines, shared when loaded


SEEDS_DIFF = SEEDS_JSON + [_generated_seed()]


@settings(max_examples=100, deadline=None, database=None, derandomize=True, suppress_health_check=QUIET)
@given(st.integers(0, 10**6), st.integers(0, 2**32))
def test_canonical_and_other_layouts_load_alike(seed: int, salt: int) -> None:
    """The loader's fast path for the one-op-per-line layout (identical
    lines built once, the rank-dependent checks redone per rank) against the
    general one, on mutated documents: the same schedule or the same error."""
    rnd = random.Random(salt)
    doc = json.loads(SEEDS_DIFF[seed % len(SEEDS_DIFF)])
    for _ in range(rnd.choice([0, 1, 1, 2])):
        doc, raw = _mutate_doc(doc, rnd)
        if raw is not None:  # a raw token: keep the document plain JSON
            doc = json.loads(json.dumps(doc).replace('"__RAW__"', "0"))
    try:
        canonical = _canonical_text(doc).encode()
    except (ValueError, RecursionError):
        return
    assert canonical.startswith(b"{\n") or not isinstance(doc, dict)
    assert _outcome(canonical) == _outcome(json.dumps(doc, indent=1).encode())


def test_a_canonical_file_and_its_reformatted_twin_load_alike(tmp_path: Path) -> None:
    for p in EXAMPLES:
        s = load(p)
        twin = tmp_path / p.name
        twin.write_text(json.dumps(json.loads(dumps(s)), indent=3), encoding="utf-8")
        assert load(twin) == s


@pytest.mark.parametrize("depth", [150, 250, 990, 100_000])
def test_deep_nesting_in_a_big_file(depth: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Over 4 MiB the depth pre-scan is skipped (too slow); the parser's lowered recursion limit refuses
    what nests more than about 200 deep, with a message, never a RecursionError elsewhere."""
    path = tmp_path / "deep.json"
    path.write_bytes(b'{"syncproof": 2, "description": "' + b"d" * (5 * 1024**2) + b'", "name": '
                     + b"[" * depth + b"]" * depth + b', "ranks": {}}')
    capsys.readouterr()
    with time_bound(SECONDS):
        code = main(["check", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and str(path) in err, err
    assert ("nested too deeply" in err) == (depth > 200), err  # else: name must be a string
