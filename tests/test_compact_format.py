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
from syncproof.ir.compact import COMPACT_VERSION, MAGIC, compact_bytes, compact_bytes_v1, schedule_from_compact

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_round_trip_through_the_compact_form(path: Path) -> None:
    s = load(path)
    back = schedule_from_compact(compact_bytes(s), "x.spz")
    assert back == s
    assert dumps(back) == dumps(s)  # JSON -> compact -> JSON: the very same text
    assert back.features == s.features
    assert schedule_from_compact(compact_bytes_v1(s), "x.spz") == s  # version 1 is still read


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules(max_ranks=3, max_ops=10))
def test_random_schedules_round_trip_losslessly(s: object) -> None:
    from syncproof.ir import Schedule

    assert isinstance(s, Schedule)
    data = compact_bytes(s)
    assert data.startswith(MAGIC)
    back = loads(data, "x.spz")  # told apart by its first bytes
    assert back == s and dumps(back) == dumps(s) and back.features == s.features
    assert loads(compact_bytes_v1(s), "x.spz") == s
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


# ------------------------------------------------------------------ malformed compact files (version 1)
def _good() -> bytes:
    return compact_bytes_v1(load(ROOT / "examples" / "tp-allreduce-wait.json"))


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
    assert COMPACT_VERSION == 2 and struct.unpack_from("<I", compact_bytes(load(ROOT / "examples" /
                                                                           "tp-allreduce-wait.json")), 8)[0] == 2


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


# ------------------------------------------------------------------ malformed compact files (version 2)
# A version-2 file is taken apart into its header and typed sections, one
# section is changed, and the file is put together again with consistent
# sizes: the fault is then in the content, where only the row checks can find it.
def _v2_split(data: bytes) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    import json

    from syncproof.ir.columnar import SECTIONS

    hlen = struct.unpack_from("<I", data, 12)[0]
    header = json.loads(data[16:16 + hlen])
    at = 16 + hlen
    sec: dict[str, np.ndarray] = {}
    for name, dtype in SECTIONS:
        at += (-at) % 8
        n = header["sizes"][name]
        sec[name] = np.frombuffer(data, dtype=dtype, count=n, offset=at).copy()
        at += n * np.dtype(dtype).itemsize
    return header, sec


def _v2_join(header: dict[str, object], sec: dict[str, np.ndarray]) -> bytes:
    import json

    from syncproof.ir.columnar import SECTIONS

    header = {**header, "sizes": {name: int(sec[name].size) for name, _ in SECTIONS}}
    head = json.dumps(header).encode()
    parts = [MAGIC, struct.pack("<II", 2, len(head)), head]
    at = 16 + len(head)
    for name, dtype in SECTIONS:
        parts.append(b"\0" * ((-at) % 8))
        at += (-at) % 8
        raw = np.asarray(sec[name], dtype=dtype).tobytes()
        parts.append(raw)
        at += len(raw)
    return b"".join(parts)


def _v2(example: str = "tp-allreduce-wait.json") -> tuple[dict[str, object], dict[str, np.ndarray]]:
    return _v2_split(compact_bytes(load(ROOT / "examples" / example)))


def _shape_col(name: str) -> int:
    from syncproof.ir.columnar import SHAPE_COLUMNS

    return SHAPE_COLUMNS.index(name)


def _shapes(sec: dict[str, np.ndarray]) -> np.ndarray:
    from syncproof.ir.columnar import SHAPE_COLUMNS

    return sec["shape"].reshape(-1, len(SHAPE_COLUMNS))


def test_v2_split_and_join_give_the_schedule_back() -> None:
    s = load(ROOT / "examples" / "tp-allreduce-wait.json")
    header, sec = _v2_split(compact_bytes(s))
    assert schedule_from_compact(_v2_join(header, sec), "x.spz") == s


def test_v2_a_shape_of_unknown_kind_is_reported_at_its_first_op() -> None:
    header, sec = _v2()
    rows = _shapes(sec)
    first = int(sec["column"][0])
    rows[first, 0] = 99
    msg = _bad(_v2_join(header, sec))
    assert "kind code 99 is unknown" in msg and "rank 0, op 0" in msg


def test_v2_numbers_pointing_outside_their_tables() -> None:
    header, sec = _v2()
    rows = _shapes(sec)
    first = int(sec["column"][0])
    rows[first, _shape_col("stream")] = 10**6
    assert "stream names string 1000000, outside the table" in _bad(_v2_join(header, sec))
    header, sec = _v2()
    _shapes(sec)[int(sec["column"][0]), _shape_col("meta")] = 10**6
    assert "name a row that does not exist" in _bad(_v2_join(header, sec))
    header, sec = _v2()
    sec["column"][3] = 10**6
    assert "names shape 1000000" in _bad(_v2_join(header, sec))
    header, sec = _v2()
    sec["acc_reg"][0] = 10**6
    assert "names region 1000000" in _bad(_v2_join(header, sec))
    header, sec = _v2()
    sec["reg_buf"][0] = 77
    assert "region 0 names buffer 77" in _bad(_v2_join(header, sec))
    header, sec = _v2()
    sec["acc_off"][1] = 10**6
    assert "access list offsets" in _bad(_v2_join(header, sec))


def test_v2_an_empty_interval_and_an_interval_out_of_range() -> None:
    header, sec = _v2()
    sec["reg_bounds"][1] = sec["reg_bounds"][0]
    assert re.search(r"region [0-9]+: the interval 0:0 is empty", _bad(_v2_join(header, sec)))
    header, sec = _v2()
    sec["reg_bounds"][1] = 2**62 + 5
    assert "is empty or out of range" in _bad(_v2_join(header, sec))


def test_v2_fields_a_kind_does_not_have() -> None:
    from syncproof.ir.columnar import NONE, ROW_KINDS
    from syncproof.ir.ops import Kind

    header, sec = _v2()
    rows = _shapes(sec)
    compute = next(i for i in range(len(rows)) if rows[i, 0] == ROW_KINDS.index(Kind.COMPUTE))
    rows[compute, _shape_col("peer")] = 1
    op = int(np.flatnonzero(sec["column"] == compute)[0])
    msg = _bad(_v2_join(header, sec))
    assert "a compute op has no peer" in msg and f"op {op}" in msg
    header, sec = _v2()
    rows = _shapes(sec)
    coll = next(i for i in range(len(rows)) if ROW_KINDS[rows[i, 0]].is_collective)
    rows[coll, _shape_col("group")] = -1
    assert "a all_reduce op needs group" in _bad(_v2_join(header, sec))
    header, sec = _v2()
    rows = _shapes(sec)
    rows[compute, _shape_col("size")] = -5
    assert "has no size or dtype" in _bad(_v2_join(header, sec))
    assert NONE == -(2**63)


def test_v2_metadata_is_checked_as_in_the_json_form() -> None:
    from syncproof.ir.columnar import META_COLUMNS

    for column, value, expect in [("layer", -1, "layer -1 is negative"), ("mb", -3, "mb -3 is negative"),
                                  ("sample", 7, "sample must be 0 or 1"), ("seqs_hi", 10**6, "seqs"),
                                  ("tokens_lo", 5, "tokens interval"), ("phase", 10**6, "phase must be")]:
        header, sec = _v2()
        sec["meta"].reshape(-1, len(META_COLUMNS))[:, META_COLUMNS.index(column)] = value
        msg = _bad(_v2_join(header, sec))
        assert expect in msg and "rank 0, op" in msg, (column, msg)


def test_v2_a_p2p_mode_needs_format_version_2_and_a_known_mode() -> None:
    import json

    s = load(ROOT / "examples" / "tp-allreduce-wait.json")
    text = dumps(s)
    doc = json.loads(text)
    doc["ranks"]["0"].insert(0, {"op": "send", "stream": "s", "to": 1, "p2p": "eager"})
    doc["ranks"]["1"].insert(0, {"op": "recv", "stream": "s", "from": 0, "p2p": "eager"})
    good = loads(json.dumps(doc), "p.json")
    header, sec = _v2_split(compact_bytes(good))
    assert schedule_from_compact(_v2_join(header, sec), "p.spz") == good
    header["strings"] = ["bogus" if x == "eager" else x for x in header["strings"]]  # type: ignore[union-attr]
    assert "p2p on an op must be" in _bad(_v2_join(header, sec))
    header, sec = _v2_split(compact_bytes(good))
    header["schedule"]["syncproof"] = 1  # type: ignore[index]
    assert "needs format version 2" in _bad(_v2_join(header, sec))


def test_v2_sizes_and_header_are_checked_against_the_file() -> None:
    data = compact_bytes(load(ROOT / "examples" / "tp-allreduce-wait.json"))
    header, sec = _v2_split(data)
    assert "unknown header field 'strin9s'" in _bad(_header_swap(data, b'"strings":', b'"strin9s":'))
    assert "'sizes'" in _bad(_header_swap(data, b'"sizes":{"reg_buf"', b'"sizes":{"x":1,"reg_buf"'))
    assert "'column'" in _bad(_header_swap(data, f'"column":{sec["column"].size}'.encode(),
                                           b'"column":99999999999'))
    assert "sections end at byte" in _bad(data + b"\0" * 8)
    assert "'strings' is not a list of strings" in _bad(_header_swap(data, b'"strings":[', b'"strings":[1,'))
    assert "lone UTF-16 surrogate" in _bad(_header_swap(data, b'"strings":["', b'"strings":["\\udc00'))


@pytest.mark.parametrize("mutation", ["group-without-rank", "peer-is-itself", "region-outside-extent",
                                      "negative-size", "unknown-group", "wait-never-recorded",
                                      "wait-never-recorded-on-a-later-rank", "wait-on-another-ranks-event"])
def test_v2_an_op_validate_refuses_is_refused_with_the_json_forms_message(mutation: str) -> None:
    """Ops the row checks pass but validate refuses (they depend on the rank,
    or on the schedule): the compact form gives the JSON form's very error."""
    import dataclasses
    import json

    doc = json.loads(dumps(load(ROOT / "examples" / "tp-allreduce-wait.json")))
    doc["buffers"] = {k: {a: 64 for a in v} if isinstance(v, list) else v for k, v in doc["buffers"].items()}
    s = loads(json.dumps(doc), "m.json")
    ops = list(s.ops)
    i = next(k for k, op in enumerate(ops) if op.kind.is_collective)
    op = ops[i]
    if mutation == "group-without-rank":
        s = dataclasses.replace(s, groups=s.groups + (("solo", (1 - op.rank,)),))
        ops[i] = dataclasses.replace(op, group="solo")
    elif mutation == "peer-is-itself":
        j = next(k for k, o in enumerate(ops) if o.kind.name == "COMPUTE")
        from syncproof.ir.ops import Kind

        ops[j] = dataclasses.replace(ops[j], kind=Kind.SEND, peer=ops[j].rank, writes=())
    elif mutation == "region-outside-extent":
        from syncproof.ir.region import Interval, Region

        acc = op.reads[0]
        box = tuple((a, Interval(60, 70)) for a, _ in acc.region.box)
        ops[i] = dataclasses.replace(op, reads=(dataclasses.replace(acc, region=Region(acc.region.buffer, box)),))
    elif mutation == "negative-size":
        ops[i] = dataclasses.replace(op, size=-4)
    elif mutation == "wait-on-another-ranks-event":  # the hint names the rank that records it
        low = min(o.rank for o in ops)
        e = next(o.event for o in ops if o.rank == low and o.kind.name == "RECORD")
        for k, o in enumerate(ops):
            if o.rank == low and o.event == e:
                ops[k] = dataclasses.replace(o, event="solo")
        j = next(k for k, o in enumerate(ops) if o.rank != low and o.kind.name == "WAIT")
        ops[j] = dataclasses.replace(ops[j], event="solo")
    elif mutation.startswith("wait-never-recorded"):  # the last (or first) rank's first wait names an unknown event
        waits = [k for k, o in enumerate(ops) if o.kind.name == "WAIT"]
        last = mutation.endswith("later-rank")
        j = next(k for k in (reversed(waits) if last else waits)
                 if ops[k].rank == (max if last else min)(o.rank for o in ops))
        ops[j] = dataclasses.replace(ops[j], event="never")
    else:
        ops[i] = dataclasses.replace(op, group="nope")
    bad = dataclasses.replace(s, ops=tuple(ops))
    with pytest.raises(ScheduleError) as from_json:
        loads(dumps(bad), "m.json")
    with pytest.raises(ScheduleError) as from_compact:
        loads(compact_bytes(bad), "m.json")
    assert str(from_compact.value) == str(from_json.value)
    if mutation == "wait-on-another-ranks-event":
        assert "is recorded on rank" in str(from_compact.value)


@pytest.mark.parametrize("rerecord", [False, True])
def test_v2_events_recorded_again_and_first_records_as_in_the_json_form(rerecord: bool) -> None:
    """A rank that records one event twice shows "re-recorded"; a wait binds as the JSON form binds it."""
    import json

    def rank(r: int) -> list[dict[str, object]]:
        ops: list[dict[str, object]] = [
            {"op": "compute", "stream": "a", "name": "k0", "writes": {f"x[i={r}]": "v"}},
            {"op": "record", "stream": "a", "event": "e"},
            {"op": "wait", "stream": "b", "event": "e"},
            {"op": "compute", "stream": "b", "name": "k1", "reads": {f"x[i={r}]": "v"}},
        ]
        if rerecord and r == 1:
            ops += [{"op": "record", "stream": "a", "event": "e"}, {"op": "wait", "stream": "b", "event": "e"}]
        return ops

    doc = {"syncproof": 2, "name": "rerecord", "buffers": {"x": ["i"]}, "ranks": {str(r): rank(r) for r in range(3)}}
    s = loads(json.dumps(doc), "r.json")
    c = loads(compact_bytes(s), "r.spz")
    assert ("re-recorded" in c.features) is rerecord
    assert c.features == s.features
    assert c.ops == s.ops
