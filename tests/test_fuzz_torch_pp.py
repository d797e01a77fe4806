"""Issue 16, torch-pp CSV/JSON: odd cells (empty, unicode, huge numbers,
``²``, quotes, ragged rows, BOMs, binary), malformed JSON and files that are
FIFOs or devices give exit 2 from ``syncproof import torch-pp`` naming the
file, the rank/step (row/column) and the cell; never a traceback, exit 4 or
a hang.  Lists that happen to be valid convert (exit 0) or check (0, 1, 3).

The default variant keeps torch out (importing it takes longer than the whole
fuzz): a compute-only order then gets the "install torch" usage error.  The
slow variant lowers compute-only orders with torch's own passes when torch
is installed."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from fuzz_support import FAST, SLOW, Tally, assert_clean, assert_names, run_cli
from hypothesis import given
from hypothesis import strategies as st

from syncproof.errors import UsageError
from syncproof.importers import torch_bridge
from syncproof.importers.torch_pp import COMM_KINDS, COMPUTE_KINDS, NO_MB_KINDS

ODD_CELLS = ["", " ", "²", "٣F0", "0F²", "0F٣", "9" * 30 + "F0", "0F" + "9" * 30, "99999F0", "0F9999999", '"0F0',
             "0F0,1F0", "\ufeff0F0", "\x00", "null", "None", "NULL", "0F0x", "F0", "0X0", "-1F0", "0F-1", " 0 F 0 ",
             "(0F0;1B0)OVERLAP_F_B", "(0F0;1SEND_F0)OVERLAP_F_B", "(0F0", "()OVERLAP_F_B", "(;)OVERLAP_F_B",
             "((0F0))OVERLAP_F_B", "0UNSHARD1", "0SEND_F", "0\u00a0F0", "0F0\u2028", "0ＦＦ0", "𝟎F0", "0F0\r"]


@st.composite
def actions(draw: st.DrawFn) -> str:
    s, m = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    kind = draw(st.sampled_from(COMPUTE_KINDS + COMM_KINDS + NO_MB_KINDS))
    if kind in NO_MB_KINDS:
        return f"{s}{kind}"
    return f"{s}{kind}{m}"


cells = st.one_of(actions(), actions(), st.sampled_from(ODD_CELLS), st.text(max_size=8))
rows = st.lists(st.lists(cells, max_size=8), max_size=4)
json_cells = st.one_of(actions(), st.none(), st.sampled_from(ODD_CELLS), st.integers(), st.floats(), st.booleans(),
                       st.lists(actions(), max_size=2), st.dictionaries(st.text(max_size=3), actions(), max_size=1))
json_rows = st.lists(st.lists(json_cells, max_size=6) | json_cells, max_size=4)
rank_keys = st.one_of(st.integers(0, 4).map(str), st.sampled_from(["²", "٣", "-1", "01", " 1", "1.0", "9" * 50, ""]),
                      st.text(max_size=3))
json_scalars = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.booleans(), st.text(max_size=6))


FIXTURES = sorted((Path(__file__).resolve().parent / "fixtures" / "torch_pp").glob("*-p2-m[234]*.csv"))


@st.composite
def mutated_fixture(draw: st.DrawFn) -> bytes:
    """A real torch action list (lowered or compute-only) with a few cells
    dropped, duplicated, swapped, moved across ranks or replaced: near-valid
    lists that reach the lowering, torch's passes and the check."""
    path = draw(st.sampled_from(FIXTURES))
    table = [list(r) for r in csv.reader(io.StringIO(path.read_text(encoding="utf-8")))]
    for _ in range(draw(st.integers(1, 3))):
        r = draw(st.integers(0, len(table) - 1))
        row = table[r]
        op = draw(st.integers(0, 4))
        if not row:
            continue
        i = draw(st.integers(0, len(row) - 1))
        if op == 0:
            del row[i]
        elif op == 1:
            row.insert(i, row[i])
        elif op == 2:
            j = draw(st.integers(0, len(row) - 1))
            row[i], row[j] = row[j], row[i]
        elif op == 3:
            table[(r + 1) % len(table)].insert(0, row.pop(i))
        else:
            row[i] = draw(cells)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(table)
    return buf.getvalue().encode("utf-8", "surrogatepass")


@st.composite
def order_files(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 12))
    if kind >= 10:
        return draw(mutated_fixture())
    if kind == 0:
        return draw(st.binary(max_size=120))
    if kind == 1:  # deep or huge JSON
        return draw(st.sampled_from([b"[" * 5000 + b"]" * 5000, b'[["0F0"], ' + b"1" * 5000 + b"]",
                                     b'{"0": ["0F0"], "0": ["0F1"]}', b'[["0F0", NaN]]', b'[["0F0"]', b"{}",
                                     b'{"actions": null}', b'{"actions": 7}', b'"0F0"']))
    if kind in (2, 3, 4):  # CSV, quoted by the csv module or joined raw
        table = draw(rows)
        if kind == 2:
            buf = io.StringIO()
            csv.writer(buf, lineterminator=draw(st.sampled_from(["\n", "\r\n"]))).writerows(table)
            text = buf.getvalue()
        else:
            text = "\n".join(",".join(r) for r in table)
        if draw(st.booleans()):
            text = "\ufeff" + text
        return text.encode("utf-8", "surrogatepass")
    if kind in (5, 6):  # a JSON list, or an object keyed by rank
        table = draw(json_rows)
        doc: Any = table if kind == 5 else {draw(rank_keys): r for r in table}
        return json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    # an object with an "actions" field and settings
    doc = {"actions": draw(json_rows | st.dictionaries(rank_keys, st.lists(json_cells, max_size=5), max_size=3))}
    for key in draw(st.lists(st.sampled_from(["placement", "name", "n_microbatches", "format", "info", "extra"]),
                             max_size=3)):
        doc[key] = draw(st.sampled_from(["loop", "v", "zigzag", 0, 1, 8, 10**30, -1]) | json_scalars
                        | st.dictionaries(st.text(max_size=3), json_scalars, max_size=2))
    return json.dumps(doc).encode()


OPTIONS = st.lists(st.sampled_from([["--placement", "loop"], ["--placement", "v"], ["--eval"],
                                    ["--comm-streams", "single"], ["--p2p", "rendezvous"], ["--p2p", "eager"]]),
                   max_size=2)


def check_file(data: bytes, opts: list[list[str]], check: bool, tmp: Path,
               capsys: pytest.CaptureFixture[str]) -> int:
    suffix = ".json" if data.lstrip()[:1] in (b"[", b"{") else ".csv"
    f = tmp / f"order{suffix}"
    f.write_bytes(data)
    argv = ["import", "torch-pp", str(f), *[a for o in opts for a in o]]
    argv += ["--check", "--no-grid", "--max-cex", "1"] if check else ["-o", str(tmp / "out.json")]
    run = run_cli(argv, capsys)
    assert_clean(run, (0, 1, 2, 3) if check else (0, 2))
    if run.code == 2:
        assert str(f) in run.err or "needs torch" in run.err, run.err
    return run.code


def _no_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    if "torch" not in sys.modules:
        def absent() -> Any:
            raise UsageError("this needs torch (kept out of the fast fuzz)")

        monkeypatch.setattr(torch_bridge, "_schedules_module", absent)


def test_fuzz_torch_pp(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _no_torch(monkeypatch)

    @FAST
    @given(order_files(), OPTIONS, st.booleans())
    def one(data: bytes, opts: list[list[str]], check: bool) -> None:
        check_file(data, opts, check and len(data) < 2000, tmp_path, capsys)

    one()


@pytest.mark.slow
def test_fuzz_torch_pp_slow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tally = Tally("torch-pp CSV/JSON (syncproof import torch-pp)")

    @SLOW
    @given(order_files(), OPTIONS, st.booleans())
    def one(data: bytes, opts: list[list[str]], check: bool) -> None:
        tally.add(check_file(data, opts, check and len(data) < 2000, tmp_path, capsys))

    one()
    tally.report(capsys)


# ------------------------------------------------------------- named places
@pytest.mark.parametrize(("text", "words"), [
    ("0F0,0F²\n", ["rank 0, step 1 (row 1, column 2)", "'0F²'"]),
    ("0F0\n1F0,٣F0\n", ["rank 1, step 1 (row 2, column 2)", "'٣F0'"]),
    ("99999999999999999999F0\n", ["rank 0, step 0", "stage 999999999999... is out of range"]),
    ("0F0,0F99999999\n", ["rank 0, step 1", "microbatch 99999999 is out of range"]),
    ('0F0,"0F0,1F0"\n', ["rank 0, step 1", "cannot read action '0F0,1F0'"]),
    ("0F0," + "x" * 200000 + "\n", ["not valid CSV", "field larger than field limit"]),
    ("0F0\x00\n", ["a NUL character at offset 3"]),
    (",,\n\n", ["no ranks"]),
    (",,\n,null\n", ["the action lists are empty"]),
    ('{"²": ["0F0"]}', ["rank key '²'"]),
    ('{"٣": ["0F0"]}', ["rank key '٣'"]),
    ('{"' + "9" * 5000 + '": ["0F0"]}', ["a rank of 5000 digits"]),
    ('{"0": ["0F0"], "0": ["0F1"]}', ["key '0' appears twice"]),
    ('[["0F0"], ' + "1" * 5000 + "]", ["not valid JSON"]),
    ("[" * 5000 + "]" * 5000, ["nested more than 200 levels"]),
    ('[["0F0", NaN]]', ["NaN is not a JSON number"]),
    ('{"actions": 5}', ["expected a list of per-rank action lists"]),
    ('{"actions": null}', ["expected a list of per-rank action lists"]),
    ('{"actions": [["0F0"]], "n_microbatches": 100000000000000000}', ["n_microbatches must be"]),
    ('{"actions": [["0F0"]], "info": [1]}', ["info must be an object"]),
    ('[["0F0", ["1F0"]]]', ["rank 0, step 1", "must be a string or null, got ['1F0']"]),
])
def test_bad_cells_name_file_place_and_cell(text: str, words: list[str], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / ("o.json" if text[:1] in "[{" else "o.csv")
    f.write_text(text, encoding="utf-8")
    assert_names(run_cli(["import", "torch-pp", str(f), "-o", str(tmp_path / "out.json")], capsys), str(f), *words)


def test_bom_and_crlf_are_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bom.csv"
    f.write_bytes("\ufeff0F0,0SEND_F0,,0RECV_B0,0B0\r\n1RECV_F0,1F0,1B0,1SEND_B0\r\n".encode())
    run = run_cli(["import", "torch-pp", str(f), "--check", "--no-grid"], capsys)
    assert run.code == 0, run.err
    assert "20 ops" in run.out


def test_special_files_are_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"0F0,\xe9\n")
    for path, words in [(fifo, "not a regular file"), (Path("/dev/zero"), "not a regular file"),
                        (tmp_path, "is a directory"), (tmp_path / "missing.csv", "no such file"),
                        (latin, "not UTF-8 text (byte 4")]:
        assert_names(run_cli(["import", "torch-pp", str(path)], capsys), str(path), words)
