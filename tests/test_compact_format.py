"""The compact form of a schedule file (.spz): a lossless round trip with
the JSON form, told apart by content, and every malformed compact file a
ScheduleError naming the file and the fault (docs/format.md, "Compact form")."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from strategies import schedules

from syncproof.cli import main
from syncproof.errors import ScheduleError
from syncproof.ir import dumps, load, loads, save
from syncproof.ir.compact import COMPACT_VERSION, MAGIC, compact_bytes, schedule_from_compact

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_round_trip_through_the_compact_form(path: Path) -> None:
    s = load(path)
    back = schedule_from_compact(compact_bytes(s), "x.spz")
    assert back == s
    assert dumps(back) == dumps(s)  # JSON -> compact -> JSON: the very same text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules(max_ranks=3, max_ops=10))
def test_random_schedules_round_trip_losslessly(s: object) -> None:
    from syncproof.ir import Schedule

    assert isinstance(s, Schedule)
    data = compact_bytes(s)
    assert data.startswith(MAGIC)
    back = loads(data, "x.spz")  # told apart by its first bytes
    assert back == s and dumps(back) == dumps(s)
    assert loads(dumps(back), "x.json") == s


def test_load_and_check_tell_the_forms_apart_by_content(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = ROOT / "examples" / "tp-allreduce-nowait.json"
    disguised = tmp_path / "looks-like.json"  # compact bytes under a .json name
    disguised.write_bytes(compact_bytes(load(src)))
    assert load(disguised) == load(src)
    assert main(["check", str(disguised), "--no-grid"]) == main(["check", str(src), "--no-grid"]) == 1
    plain = tmp_path / "plain.spz"  # JSON under a .spz name
    save(load(src), plain)
    assert load(plain) == load(src)


def test_convert_both_ways(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = ROOT / "examples" / "pp-sendrecv-ordered.json"
    spz, back = tmp_path / "s.spz", tmp_path / "s.json"
    assert main(["convert", str(src), str(spz)]) == 0
    assert spz.read_bytes().startswith(MAGIC)
    assert main(["convert", str(spz), str(back)]) == 0
    assert back.read_text(encoding="utf-8") == dumps(load(src))
    assert main(["convert", str(src), str(tmp_path / "s.bin"), "--to", "compact"]) == 0
    assert load(tmp_path / "s.bin") == load(src)
    capsys.readouterr()
    assert main(["convert", str(src), str(tmp_path / "s.xyz")]) == 2
    assert "s.xyz" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "missing.json"), str(spz)]) == 2
    assert "missing.json: no such file" in capsys.readouterr().err


def test_big_schedules_shrink_and_share_documents() -> None:
    from syncproof.bench.generators import schedule_of_size

    s = schedule_of_size(5000)
    data = compact_bytes(s)
    assert len(data) * 2 < len(dumps(s).encode())  # each distinct op document stored once (TP4 here)
    assert schedule_from_compact(data, "big.spz") == s


# ------------------------------------------------------------------ malformed compact files
def _good() -> bytes:
    return compact_bytes(load(ROOT / "examples" / "tp-allreduce-wait.json"))


def _parts(data: bytes) -> tuple[int, int, int, int, int]:
    """(header end, offsets start, blob start, column start, number of docs) of a compact file."""
    import json

    hlen = struct.unpack_from("<I", data, 12)[0]
    header = json.loads(data[16:16 + hlen])
    at = 16 + hlen
    at += (-at) % 8
    blob = at + 8 * (header["docs"] + 1)
    blob_len = int(np.frombuffer(data, "<u8", count=1, offset=blob - 8)[0])
    col = blob + blob_len
    col += (-col) % 4
    return 16 + hlen, at, blob, col, header["docs"]


def _header_swap(data: bytes, old: bytes, new: bytes) -> bytes:
    """Replace text in the header, keeping the layout: the header length is
    rewritten and the rest shifted to keep its 8-byte alignment."""
    hlen = struct.unpack_from("<I", data, 12)[0]
    head = data[16:16 + hlen]
    assert old in head
    head2 = head.replace(old, new, 1)
    at, at2 = 16 + hlen, 16 + len(head2)
    rest = data[at + (-at) % 8:]
    return data[:12] + struct.pack("<I", len(head2)) + head2 + b"\0" * ((-at2) % 8) + rest


def _bad(data: bytes) -> str:
    with pytest.raises(ScheduleError) as e:
        schedule_from_compact(data, "bad.spz")
    msg = str(e.value)
    assert msg.startswith("bad.spz"), msg
    return msg


def test_a_good_file_loads() -> None:
    assert schedule_from_compact(_good(), "ok.spz").size == 14


@pytest.mark.parametrize("cut", [0, 5, 15, 16, 40, -1, -4, -5])
def test_truncated(cut: int) -> None:
    data = _good()
    msg = _bad(data[:cut] if cut > 0 else data[:len(data) + cut]) if cut else _bad(b"")
    assert "compact" in msg or "JSON" in msg


def test_wrong_magic_and_version() -> None:
    data = _good()
    assert "magic" in _bad(b"\x89SPY" + data[4:])
    assert "version 7 is not supported" in _bad(data[:8] + struct.pack("<I", 7) + data[12:])
    assert COMPACT_VERSION == 1


def test_header_sizes_are_checked_against_the_file_before_anything_is_allocated() -> None:
    data = _good()
    assert "header claims" in _bad(data[:12] + struct.pack("<I", 0xFFFFFFFF) + data[16:])
    # absurd numbers of documents and ops: refused from the file length, never allocated
    docs = re.search(rb'"docs":[0-9]+', data)
    assert docs is not None
    assert "'docs'" in _bad(_header_swap(data, docs.group(0), b'"docs":999999999999'))
    assert "'ops'" in _bad(_header_swap(data, b'"ops":14', b'"ops":4000000000'))
    assert "'ops'" in _bad(_header_swap(data, b'"ops":14', b'"ops":-1'))


def test_column_lengths_disagreeing() -> None:
    data = _good()
    msg = _bad(_header_swap(data, b'"ops":14', b'"ops":13'))
    assert "op column" in msg or "sum to" in msg
    assert "sum to" in _bad(_header_swap(data, b'["0",7]', b'["0",6]'))


def test_indices_out_of_range() -> None:
    data = bytearray(_good())
    *_, col, n_docs = _parts(bytes(data))
    struct.pack_into("<I", data, col + 4, n_docs + 5)
    assert f"op 1 names document {n_docs + 5}" in _bad(bytes(data))


def test_offsets_not_increasing() -> None:
    data = bytearray(_good())
    _, offs, *_ = _parts(bytes(data))
    struct.pack_into("<Q", data, offs + 8, 10**15)
    assert "offsets" in _bad(bytes(data))


def test_a_document_that_is_not_an_op_object() -> None:
    data = bytearray(_good())
    _, _, blob, *_ = _parts(bytes(data))
    data[blob] = ord("[")
    assert "document 0 is not a JSON object" in _bad(bytes(data))


def test_header_is_checked() -> None:
    data = _good()
    assert "unknown header field" in _bad(_header_swap(data, b'"docs":', b'"pickle":1,"docs":'))
    assert "not valid JSON" in _bad(_header_swap(data, b'{"schedule"', b'{"schedule"{'))
    assert "twice" in _bad(_header_swap(data, b'"docs":', b'"ops":1,"docs":'))


def test_the_ops_are_checked_as_in_the_json_form() -> None:
    data = _good()
    _, _, blob, _, _ = _parts(data)
    i = data.index(b'"stream": "', blob) + len(b'"stream": ')
    j = data.index(b'"', i + 1) + 1  # the value, quotes included: replaced by a number of the same width
    bad = data[:i] + b"5".ljust(j - i) + data[j:]
    assert len(bad) == len(data)
    msg = _bad(bad)
    assert "stream must be a non-empty string" in msg and "rank 0, op 0" in msg


def test_loading_never_unpickles() -> None:
    import pickle

    assert "magic" in _bad(pickle.dumps({"a": 1}))
    assert "magic" in _bad(b"PK\x03\x04" + b"\0" * 40)  # an .npz (zip) is not the compact form


# ------------------------------------------------------------------ syncproof bench --load
def test_bench_load_prints_both_forms_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["bench", "--load", "--ops", "300", "--no-end-to-end", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (row,) = doc["runs"]
    assert row["ops"] > 0 and row["compact_mb"] <= row["json_mb"]
    for key in ("parse_stdlib_seconds", "parse_stdlib_hook_seconds", "load_json_seconds", "load_compact_seconds",
                "check_seconds"):
        assert row[key] >= 0, key
    assert "end_to_end_json" not in row


@pytest.mark.parametrize("argv", [["--ops", "0"], ["--ops", "-3"], ["--ops", "10000001"], ["--ops", "²"],
                                  ["--ops", "1" * 60], ["--load", "--choices"], ["--no-end-to-end"],
                                  ["--choices", "--ranks", "0"], ["--choices", "--ranks", "999999"]])
def test_bench_refuses_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["bench", *argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    assert code == 2
    assert "error" in capsys.readouterr().err


def test_a_lone_surrogate_in_a_compact_file() -> None:
    data = _good()
    _, _, blob, *_ = _parts(data)
    i = data.index(b'"stream": "', blob) + len(b'"stream": "')
    bad = data[:i] + b"\\udc00" + data[i + 6:]
    assert len(bad) == len(data)
    assert "lone UTF-16 surrogate" in _bad(bad)
