"""Flight Recorder import and culprit analysis, on dumps of real gloo runs
(tests/fixtures/fr/, made by scripts/gen_fr_fixtures.py with an injected
fault and its ground truth) and on small hand-made NCCL-style dumps.  No
torch needed."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from syncproof.cli import main
from syncproof.errors import ScheduleError
from syncproof.importers.culprit import Analysis, analyse, job_to_schedule
from syncproof.importers.flight_recorder import load_flight_recorder, parse_dump, read_dump, safe_loads

FIXTURES = Path(__file__).parent / "fixtures" / "fr"
SCENARIOS = sorted(p.parent.name for p in FIXTURES.glob("*/truth.json"))
UNDECIDABLE = {"tp2_first_skip"}  # no history at all: the data cannot tell


def truth(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name / "truth.json").read_text())


def analysis(name: str, fmt: str = "pickle", profiler: bool = True) -> Analysis:
    d = FIXTURES / name
    job = load_flight_recorder([d / fmt], [d / "profiler"] if profiler else [])
    return analyse(job)


def test_fixtures_present() -> None:
    assert {"clean", "skip_collective", "swap", "size_mismatch", "skipped_send"} <= set(SCENARIOS)
    for name in SCENARIOS:
        d = FIXTURES / name
        assert (d / "pickle").is_dir() and (d / "json").is_dir() and (d / "profiler").is_dir()


# ---------------------------------------------------------------- the ground truth
@pytest.mark.parametrize("name", SCENARIOS)
def test_dumps_and_profiler_name_the_culprit(name: str) -> None:
    t = truth(name)["culprit"]
    a = analysis(name)
    if t is None:
        assert a.verdict == "clean" and a.exit_code == 0, a.text()
        return
    assert a.verdict == "fault" and a.exit_code == 1
    if name in UNDECIDABLE:
        assert not a.decided and t["rank"] in a.candidates, a.text()
        return
    assert a.decided, a.text()
    assert [(c.rank, c.op) for c in a.culprits] == [(t["rank"], t["op"])], a.text()
    assert a.culprits[0].label == t["label"]
    if "peer" in t:
        assert a.culprits[0].peer == t["peer"]
    else:
        assert a.culprits[0].group == t["group"]


@pytest.mark.parametrize("fmt", ["pickle", "json"])
@pytest.mark.parametrize("name", SCENARIOS)
def test_dumps_alone_never_blame_the_wrong_rank(name: str, fmt: str) -> None:
    """Without the profiler, gloo dumps show no send/recv: the analysis may not
    decide, but the culprit is always among the candidates, and a decided
    verdict is right."""
    t = truth(name)["culprit"]
    a = analysis(name, fmt, profiler=False)
    if t is None:
        assert a.verdict == "clean", a.text()
        return
    assert a.verdict == "fault", a.text()
    if a.decided:
        assert [(c.rank, c.op) for c in a.culprits] == [(t["rank"], t["op"])], a.text()
    else:
        assert t["rank"] in a.candidates, a.text()
        assert a.candidates, a.text()


def test_dumps_alone_decide_what_they_can() -> None:
    # a wrong dtype, a wrong size and a swap are visible in the collectives themselves
    for name in ("dtype_mismatch", "size_mismatch", "swap"):
        a = analysis(name, profiler=False)
        assert a.decided, (name, a.text())
    # gloo records no send/recv: a skipped send cannot be pinned on a rank
    a = analysis("skipped_send", profiler=False)
    assert not a.decided
    assert any("send/recv" in r for r in a.reasoning)


def test_reasoning_names_program_and_waits() -> None:
    a = analysis("skip_collective")
    text = a.text()
    assert "departs from the program" in text
    assert "cycle" in text
    assert a.blocked[0].startswith("16 collectives") and "waits for rank 1" in a.blocked[0]


def test_missing_rank_is_reported_not_fatal() -> None:
    d = FIXTURES / "size_mismatch"
    job = load_flight_recorder([d / "pickle"], [d / "profiler"])
    assert job.missing == (2,)
    assert any("rank 2" in w for w in job.warnings)
    a = analyse(job)
    assert "no dump" in a.blocked[2] or "no data" in a.blocked[2]


def test_truncated_ring_buffer() -> None:
    d = FIXTURES / "skip_collective_small_buffer"
    dumps = {r: parse_dump(d / "pickle" / f"rank_{r}", r) for r in range(4)}
    assert not any(x.complete_from_start for x in dumps.values())
    a = analysis("skip_collective_small_buffer", profiler=False)
    assert any("ring buffers start" in r for r in a.reasoning)


def test_gloo_membership_inferred_or_from_profiler() -> None:
    d = FIXTURES / "skip_collective"
    alone = load_flight_recorder([d / "pickle"])
    assert {g.name: (g.members, g.how) for g in alone.groups.values()} == {
        "tp0": ((0, 1), "inferred"), "tp1": ((2, 3), "inferred")}
    both = load_flight_recorder([d / "pickle"], [d / "profiler"])
    assert both.groups["1"].how == "profiler" and both.groups["0"].members == (0, 1, 2, 3)


def test_profiler_on_another_clock(tmp_path: Path) -> None:
    """Traces whose clock does not match the dumps' are paired by order from the end."""
    d = FIXTURES / "skip_collective"
    for src in (d / "profiler").iterdir():
        doc = json.loads(src.read_text())
        doc["baseTimeNanoseconds"] += 3_600 * 10**9
        (tmp_path / src.name).write_text(json.dumps(doc))
    job = load_flight_recorder([d / "pickle"], [tmp_path])
    assert any("share no clock" in w for w in job.warnings)
    a = analyse(job)
    assert a.decided and [(c.rank, c.op, c.label) for c in a.culprits] == [(1, "all_reduce", "decode2/L1/mlp")]


def test_world_reveals_a_missing_last_rank(tmp_path: Path) -> None:
    d = FIXTURES / "clean" / "json"
    for r in range(3):
        (tmp_path / f"rank_{r}.json").write_bytes((d / f"rank_{r}.json").read_bytes())
    assert load_flight_recorder([tmp_path]).missing == ()
    job = load_flight_recorder([tmp_path], world=4)
    assert job.missing == (3,)
    assert analyse(job).verdict == "fault"


def test_pickle_and_json_agree() -> None:
    d = FIXTURES / "skip_collective"
    a = load_flight_recorder([d / "pickle"])
    b = load_flight_recorder([d / "json"])
    for r in a.ranks:
        sig_a = [(o.kind, o.group, o.seq, o.in_sizes, o.dtype, o.state) for o in a.ranks[r].ops]
        sig_b = [(o.kind, o.group, o.seq, o.in_sizes, o.dtype, o.state) for o in b.ranks[r].ops]
        assert sig_a == sig_b


# ---------------------------------------------------------------- the schedule
def test_schedule_of_clean_run_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = FIXTURES / "clean"
    out = tmp_path / "clean.json"
    code = main(["import", "flight-recorder", str(d / "pickle"), "--profiler", str(d / "profiler"), "--check",
                 "-o", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "verdict: clean" in text and "matching  proved" in text
    from syncproof.ir import load

    s = load(out)
    assert {g for g, _m in s.groups} == {"tp0", "tp1", "default_pg"} or {g for g, _m in s.groups} >= {"tp0", "tp1"}
    assert sum(1 for op in s.ops if op.kind.is_p2p) == 32


def test_check_finds_the_hang(capsys: pytest.CaptureFixture[str]) -> None:
    d = FIXTURES / "skip_collective"
    code = main(["import", "flight-recorder", str(d / "pickle"), "--profiler", str(d / "profiler"), "--check",
                 "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    verdicts = {r["property"]: r["verdict"] for r in doc["check"]["results"]}
    assert verdicts["matching"] == "violated"


def test_cli_json_culprits(capsys: pytest.CaptureFixture[str]) -> None:
    d = FIXTURES / "skip_collective"
    code = main(["import", "flight-recorder", str(d / "pickle"), "--profiler", str(d / "profiler"),
                 "--format", "json", "--list"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    assert doc["decided"] is True
    assert doc["culprits"] == [{"rank": 1, "op": "all_reduce", "label": "decode2/L1/mlp", "what": "skipped",
                                "group": "tp0", "seq": 16}]
    assert set(doc["ranks"]) == {"0", "1", "2", "3"}
    assert doc["ranks"]["0"][0]["label"] == "prefill/L0/attn"


def test_cli_undecided_lists_candidates(capsys: pytest.CaptureFixture[str]) -> None:
    d = FIXTURES / "tp2_first_skip"
    code = main(["import", "fr", str(d / "json"), "--profiler", str(d / "profiler"), "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["decided"] is False and doc["culprits"] == []
    assert sorted(doc["candidates"]) == [0, 1]


def test_cli_clean_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "flight-recorder", str(FIXTURES / "clean" / "json")]) == 0
    assert "verdict: clean" in capsys.readouterr().out


# ---------------------------------------------------------------- bad input
def _dump(entries: list[dict[str, Any]] | None = None, **top: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"version": "2.10", "pg_config": {}, "pg_status": {},
                           "entries": entries if entries is not None else [_entry()]}
    doc.update(top)
    return doc


def _entry(**kw: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "record_id": 0, "pg_id": 0, "process_group": ("0", "default_pg"), "collective_seq_id": 1,
        "p2p_seq_id": 0, "op_id": 1, "profiling_name": "nccl:all_reduce", "time_created_ns": 1,
        "input_sizes": [[4]], "input_dtypes": ["Float"], "output_sizes": [[4]], "output_dtypes": ["Float"],
        "state": "completed", "time_discovered_started_ns": None, "time_discovered_completed_ns": None,
        "retired": True, "timeout_ms": 600000, "is_p2p": False, "frames": [],
    }
    e.update(kw)
    return e


def _write(d: Path, name: str, doc: Any, fmt: str = "pickle") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_bytes(pickle.dumps(doc, protocol=2) if fmt == "pickle" else json.dumps(doc).encode())
    return p


def _cli_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return err


class Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("pwned",))


@pytest.mark.parametrize("content, expect", [
    (b"hello, I am not a dump", "neither a Flight Recorder dump (pickle or JSON) nor a profiler trace"),
    (b"", "empty"),
    (b"{\"version\": \"2.10\", \"entries\": [", "not valid JSON"),
    (b"\x80\x02}q\x00(X\x07\x00\x00\x00versionq", "truncated pickle"),
    (pickle.dumps([1, 2, 3], protocol=2), "holds a list"),
    (pickle.dumps(Evil(), protocol=2), "refuses to load __builtin__.print"),
])
def test_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, expect: str) -> None:
    (tmp_path / "rank_0").write_bytes(content)
    err = _cli_error(["import", "flight-recorder", str(tmp_path)], capsys)
    assert "rank_0" in err and expect in err
    assert "pwned" not in capsys.readouterr().out


@pytest.mark.parametrize("doc, expect", [
    ({"entries": []}, "missing key 'version'"),
    ({"version": "2.10", "foo": 1}, "missing key 'entries'"),
    ({"version": 2, "entries": []}, "\"version\" must be a string"),
    ({"version": "2.10", "entries": {}}, "\"entries\" must be a list"),
    (_dump([_entry(state=3)]), "entry 0 (record_id 0): 'state' must be a string, got 3"),
    (_dump([_entry(record_id="x")]), "'record_id' must be an integer"),
    (_dump([{k: v for k, v in _entry().items() if k != "profiling_name"}]), "missing key 'profiling_name'"),
    (_dump([_entry(input_sizes=[4])]), "'input_sizes' must be a list of shapes"),
    (_dump([_entry(process_group=("0",))]), "'process_group' must be [name, description]"),
    (_dump([_entry(profiling_name="allreduce")]), "is not 'backend:op'"),
    (_dump([_entry(frames=[{"name": "f"}])]), "frame 0 must be"),
    (_dump(pg_config={"0": {"ranks": "[0, x]"}}), "pg_config['0'].ranks"),
    (_dump([_entry(collective_seq_id=True)]), "'collective_seq_id' must be an integer, got True"),
])
@pytest.mark.parametrize("fmt", ["pickle", "json"])
def test_bad_dumps(tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: dict[str, Any], expect: str,
                   fmt: str) -> None:
    _write(tmp_path, "rank_0", doc, fmt)
    err = _cli_error(["import", "flight-recorder", str(tmp_path)], capsys)
    assert "rank_0" in err and expect in err, err


def test_empty_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _cli_error(["import", "flight-recorder", str(tmp_path)], capsys)
    assert "empty" in err and str(tmp_path) in err


def test_no_such_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _cli_error(["import", "flight-recorder", str(tmp_path / "nope")], capsys)
    assert "no such file or directory" in err


def test_duplicate_rank(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, "rank_0", _dump())
    _write(tmp_path, "rank_0.json", _dump(), "json")
    err = _cli_error(["import", "flight-recorder", str(tmp_path)], capsys)
    assert "duplicate rank 0" in err


def test_no_rank_in_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, "notes", _dump())
    err = _cli_error(["import", "flight-recorder", str(tmp_path)], capsys)
    assert "cannot tell the rank" in err


def test_truncated_real_dump(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = FIXTURES / "skip_collective"
    for fmt, name in (("pickle", "rank_1"), ("json", "rank_1.json")):
        d = tmp_path / fmt
        d.mkdir()
        data = (src / fmt / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])
        err = _cli_error(["import", "flight-recorder", str(d)], capsys)
        assert name in err and ("truncated" in err or "ends early" in err), err


def test_safe_loads_refuses_classes() -> None:
    with pytest.raises(pickle.UnpicklingError, match="refuses"):
        safe_loads(pickle.dumps(Evil(), protocol=2))
    assert safe_loads(pickle.dumps({"a": (1, 2.5, None, True, "x", b"y", [1])}, protocol=4)) == \
        {"a": (1, 2.5, None, True, "x", b"y", [1])}


def test_read_dump_reports_format(tmp_path: Path) -> None:
    p = _write(tmp_path, "rank_0", _dump(), "json")
    doc, fmt = read_dump(p)
    assert fmt == "json" and doc["version"] == "2.10"
    with pytest.raises(ScheduleError, match="no such file"):
        read_dump(tmp_path / "rank_9")


# ---------------------------------------------------------------- NCCL-style dumps (hand-made)
def _nccl_job(tmp_path: Path, per_rank: dict[int, list[dict[str, Any]]], members: list[int]) -> Analysis:
    cfg = {"0": {"name": "0", "desc": "default_pg", "ranks": str(members)}}
    for r, entries in per_rank.items():
        for i, e in enumerate(entries):
            e.setdefault("record_id", i)
            e.setdefault("time_created_ns", 1000 * (i + 1) + r)
        _write(tmp_path, f"nccl_trace_rank_{r}", _dump(entries, pg_config=cfg))
    return analyse(load_flight_recorder([tmp_path]))


def _ar(seq: int, size: int = 4, state: str = "completed", **kw: Any) -> dict[str, Any]:
    return _entry(collective_seq_id=seq, input_sizes=[[size]], output_sizes=[[size]], state=state, **kw)


def _p2p(kind: str, src: int, dst: int, n: int, state: str = "completed") -> dict[str, Any]:
    name = f"nccl:send {src}->{dst}" if kind == "send" else f"nccl:recv {dst}<-{src}"
    return _entry(profiling_name=name, is_p2p=True, p2p_seq_id=n, collective_seq_id=0, state=state)


def test_nccl_majority_names_the_odd_rank(tmp_path: Path) -> None:
    per = {r: [_ar(1), _ar(2), _ar(3, size=8 if r == 2 else 4, state="started")] for r in range(3)}
    a = _nccl_job(tmp_path, per, [0, 1, 2])
    assert a.decided and [(c.rank, c.what) for c in a.culprits] == [(2, "wrong size")], a.text()


def test_nccl_p2p_skipped_send(tmp_path: Path) -> None:
    """Each step: all_reduce, then rank 0 sends to rank 1.  In step 3 rank 0
    skips its send and enters the next all_reduce; rank 1 waits in recv."""
    per = {
        0: [_ar(1), _p2p("send", 0, 1, 1), _ar(2), _p2p("send", 0, 1, 2), _ar(3), _ar(4, state="started")],
        1: [_ar(1), _p2p("recv", 0, 1, 1), _ar(2), _p2p("recv", 0, 1, 2), _ar(3),
            _p2p("recv", 0, 1, 3, state="started")],
    }
    a = _nccl_job(tmp_path, per, [0, 1])
    assert a.decided, a.text()
    assert [(c.rank, c.op, c.peer) for c in a.culprits] == [(0, "send", 1)], a.text()


def test_nccl_skip_shows_in_source_frames(tmp_path: Path) -> None:
    """With NCCL a skipped all_reduce does not leave a hole: the rank's next
    all_reduce pairs with the others' skipped one.  The source frames show it."""
    attn = [{"name": "attn", "filename": "/srv/model.py", "line": 10},
            {"name": "step", "filename": "/srv/model.py", "line": 30}]
    mlp = [{"name": "mlp", "filename": "/srv/model.py", "line": 20},
           {"name": "step", "filename": "/srv/model.py", "line": 31}]
    steps = [_ar(1, frames=attn), _ar(2, frames=mlp), _ar(3, frames=attn), _ar(4, frames=mlp)]
    per = {
        0: steps + [_ar(5, frames=attn), _ar(6, frames=mlp, state="started")],
        1: [dict(e) for e in steps] + [_ar(5, frames=mlp)],  # step 3's attn all_reduce skipped
    }
    a = _nccl_job(tmp_path, per, [0, 1])
    assert a.decided, a.text()
    assert [(c.rank, c.seq) for c in a.culprits] == [(1, 5)], a.text()
    # the op it skipped (attn), and the one it issued in its place
    assert a.culprits[0].label == "step:30 > attn:10", a.text()
    assert a.culprits[0].what == "skipped; issued step:31 > mlp:20 in its place, and the group ran on one op off"


def test_nccl_clean(tmp_path: Path) -> None:
    per = {r: [_ar(1), _ar(2), _ar(3)] for r in range(2)}
    a = _nccl_job(tmp_path, per, [0, 1])
    assert a.verdict == "clean", a.text()


def test_all_to_all_uneven_sizes_are_fine(tmp_path: Path) -> None:
    def a2a(seq: int, i: int, o: int) -> dict[str, Any]:
        return _entry(profiling_name="nccl:all_to_all", collective_seq_id=seq, input_sizes=[[i]],
                      output_sizes=[[o]])
    ok = {0: [a2a(1, 3, 5)], 1: [a2a(1, 5, 3)]}
    assert _nccl_job(tmp_path / "ok", ok, [0, 1]).verdict == "clean"
    bad = {0: [a2a(1, 3, 5)], 1: [a2a(1, 5, 4)]}
    assert _nccl_job(tmp_path / "bad", bad, [0, 1]).verdict == "fault"


def test_schedule_from_nccl_dump_has_p2p(tmp_path: Path) -> None:
    per = {0: [_ar(1), _p2p("send", 0, 1, 1)], 1: [_ar(1), _p2p("recv", 0, 1, 1)]}
    _nccl_job(tmp_path, per, [0, 1])
    s = job_to_schedule(load_flight_recorder([tmp_path]))
    assert [str(op.kind) for op in s.ops] == ["all_reduce", "send", "all_reduce", "recv"]



def test_schedule_communicators(tmp_path: Path) -> None:
    """Format v2: a collective runs on its process group's communicator; a
    single send/recv on the two-rank communicator ProcessGroupNCCL creates
    for the pair inside the group; the tag is no channel."""
    per = {0: [_ar(1), _p2p("send", 0, 1, 1)], 1: [_ar(1), _p2p("recv", 0, 1, 1)]}
    _nccl_job(tmp_path, per, [0, 1])
    job = load_flight_recorder([tmp_path])
    s = job_to_schedule(job)
    from syncproof.ir.fileformat import schedule_to_dict

    assert schedule_to_dict(s)["syncproof"] == 2
    comms = [(str(op.kind), op.communicator) for op in s.ops]
    assert comms == [("all_reduce", "default_pg"), ("send", "default_pg:0-1"), ("all_reduce", "default_pg"),
                     ("recv", "default_pg:0-1")]
    assert all(op.channel == "0" and op.batch is None for op in s.ops)


def _coalesced(n: int, p2p: bool = True) -> dict[str, Any]:
    return _entry(profiling_name="nccl:coalesced", is_p2p=p2p, p2p_seq_id=n if p2p else 0,
                  collective_seq_id=0 if p2p else n, input_sizes=[], output_sizes=[])


def test_coalesced_p2p_is_one_group_call(tmp_path: Path) -> None:
    """batch_isend_irecv: the dump records each send/recv, then a
    ``coalesced`` entry with the same p2p sequence number.  Both ranks send
    first and receive second; as one group call (ncclGroupStart/End) that
    cannot hang, and ProcessGroupNCCL runs a batched p2p on the group's own
    communicator."""
    per = {0: [_ar(1), _p2p("send", 0, 1, 1), _p2p("recv", 1, 0, 1), _coalesced(1), _ar(2)],
           1: [_ar(1), _p2p("send", 1, 0, 1), _p2p("recv", 0, 1, 1), _coalesced(1), _ar(2)]}
    a = _nccl_job(tmp_path, per, [0, 1])
    assert a.verdict == "clean", a.text()
    job = load_flight_recorder([tmp_path])
    assert [op.batch is not None for op in job.ranks[0].ops] == [False, True, True, False]
    s = job_to_schedule(job)
    for r in (0, 1):
        ops = s.by_rank[r]
        assert [str(op.kind) for op in ops] == ["all_reduce", "send", "recv", "all_reduce"]
        assert ops[1].batch is not None and ops[1].batch == ops[2].batch
        assert ops[0].batch is None and ops[3].batch is None
        assert ops[1].communicator == ops[2].communicator == "default_pg"
    from syncproof import check_schedule
    from syncproof.result import Verdict

    rep = check_schedule(s, properties=("matching", "deadlock"))
    assert all(r.verdict is Verdict.PROVED for r in rep.results), [(r.property, r.reason) for r in rep.results]
    # the same sends and recvs issued one by one cross: a hang once the messages are too large to buffer
    plain = {r: [e for e in es if e["profiling_name"] != "nccl:coalesced"] for r, es in per.items()}
    _nccl_job(tmp_path / "plain", plain, [0, 1])
    s2 = job_to_schedule(load_flight_recorder([tmp_path / "plain"]))
    assert all(op.batch is None for op in s2.ops)
    assert check_schedule(s2, properties=("matching", "deadlock")).result("deadlock").verdict is Verdict.VIOLATED


def test_single_sends_are_not_a_group(tmp_path: Path) -> None:
    """Two plain sends have their own p2p sequence numbers: a ``coalesced``
    entry for another number leaves them alone."""
    per = {0: [_p2p("send", 0, 1, 1), _p2p("send", 0, 1, 2), _p2p("send", 0, 1, 3), _p2p("send", 0, 1, 3),
               _coalesced(3)],
           1: [_p2p("recv", 0, 1, 1), _p2p("recv", 0, 1, 2), _p2p("recv", 0, 1, 3), _p2p("recv", 0, 1, 3),
               _coalesced(3)]}
    _nccl_job(tmp_path, per, [0, 1])
    job = load_flight_recorder([tmp_path])
    assert [op.batch is not None for op in job.ranks[1].ops] == [False, False, True, True]
    s = job_to_schedule(job)
    assert [op.communicator for op in s.by_rank[0]] == ["default_pg:0-1"] * 2 + ["default_pg"] * 2


# ---------------------------------------------------------------- no torch, no z3
def test_importers_do_not_import_torch_or_z3() -> None:
    code = (
        "import sys\n"
        "import syncproof.importers.flight_recorder, syncproof.importers.profiler, syncproof.importers.culprit\n"
        "import syncproof.commands.import_flight_recorder, syncproof.commands.import_profiler\n"
        f"from syncproof.importers.flight_recorder import load_flight_recorder\n"
        f"from syncproof.importers.culprit import analyse\n"
        f"d = {str(FIXTURES / 'skip_collective')!r}\n"
        "analyse(load_flight_recorder([d + '/pickle'], [d + '/profiler']))\n"
        "bad = [m for m in ('torch', 'z3') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- dumps and traces in one directory
def _mixed(tmp_path: Path, name: str, fmt: str = "pickle") -> Path:
    """The scenario's dumps and traces in one directory, under names that do not say which is which."""
    d = FIXTURES / name
    out = tmp_path / "job"
    out.mkdir()
    for f in sorted((d / fmt).iterdir()):
        (out / f"fr_rank{f.name.split('_')[-1].split('.')[0]}.pkl").write_bytes(f.read_bytes())
    for f in sorted((d / "profiler").iterdir()):
        (out / f"prof_rank{f.name.split('_')[-1].split('.')[0]}.json").write_bytes(f.read_bytes())
    return out


@pytest.mark.parametrize("name", ["skip_collective", "skip_last_mlp_decode2", "swap_rank0", "clean"])
def test_mixed_directory_same_as_given_apart(tmp_path: Path, name: str) -> None:
    d = FIXTURES / name
    apart = analyse(load_flight_recorder([d / "pickle"], [d / "profiler"]))
    job = load_flight_recorder([_mixed(tmp_path, name)])
    together = analyse(job)
    assert all(rt.fr_file and rt.profiler_file for rt in job.ranks.values())
    assert (together.verdict, together.decided, [c.to_json() for c in together.culprits]) == \
        (apart.verdict, apart.decided, [c.to_json() for c in apart.culprits])


def test_mixed_directory_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mixed = _mixed(tmp_path, "skip_last_mlp_decode2", "json")
    (mixed / ".hidden_notes").write_text("not read")
    (mixed / "subdir").mkdir()
    (mixed / "subdir" / "junk").write_text("not read either")
    code = main(["import", "flight-recorder", str(mixed), "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["decided"]
    assert [(c["rank"], c["op"], c["label"]) for c in doc["culprits"]] == [(3, "all_reduce", "decode2/L3/mlp")]


def test_mixed_directory_other_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mixed = _mixed(tmp_path, "tp2_first_skip")
    (mixed / "README.txt").write_text("dumps of the hung job\n")
    (mixed / "truth.json").write_text(json.dumps({"scenario": "x"}))
    err = _cli_error(["import", "flight-recorder", str(mixed)], capsys)
    assert "README.txt" in err and "neither a Flight Recorder dump" in err
    (mixed / "README.txt").unlink()
    err = _cli_error(["import", "flight-recorder", str(mixed)], capsys)
    assert "truth.json" in err and "its keys are 'scenario'" in err


def test_mixed_directory_two_traces_for_a_rank(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mixed = _mixed(tmp_path, "tp2_first_skip")
    (mixed / "again_1.json").write_bytes((mixed / "prof_rank1.json").read_bytes())
    err = _cli_error(["import", "flight-recorder", str(mixed)], capsys)
    assert "duplicate rank 1" in err and "profiler trace" in err


def test_trace_given_as_dump_and_dump_as_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The content decides, not the option: a trace among the DIRs and the dumps under --profiler work."""
    d = FIXTURES / "skip_collective"
    code = main(["import", "flight-recorder", str(d / "profiler"), "--profiler", str(d / "json"), "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["decided"] and doc["culprits"][0]["rank"] == 1
    err = _cli_error(["import", "profiler", str(d / "json" / "rank_0.json")], capsys)
    assert "rank_0.json" in err and "a Flight Recorder dump, not a profiler trace" in err


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no FIFOs here")
def test_fifo_in_the_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    mixed = _mixed(tmp_path, "tp2_first_skip")
    os.mkfifo(mixed / "rank_5")  # no writer: reading it would block forever
    err = _cli_error(["import", "flight-recorder", str(mixed)], capsys)
    assert "rank_5" in err and "not a regular file" in err
    err = _cli_error(["import", "flight-recorder", str(mixed / "rank_5")], capsys)
    assert "not a regular file" in err


def test_gzip_bomb_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import gzip as gz

    from syncproof.importers import documents

    (tmp_path / "rank_0.json.gz").write_bytes(gz.compress(b"[" + b" " * 5_000_000 + b"]"))
    old = documents.MAX_UNCOMPRESSED_BYTES
    documents.MAX_UNCOMPRESSED_BYTES = 1_000_000
    try:
        err = _cli_error(["import", "flight-recorder", str(tmp_path)], capsys)
    finally:
        documents.MAX_UNCOMPRESSED_BYTES = old
    assert "rank_0.json.gz" in err and "expands to more than 1000000 bytes" in err


def test_huge_rank_in_a_name_or_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = FIXTURES / "tp2_first_skip"
    (tmp_path / "rank_9999999").write_bytes((src / "pickle" / "rank_0").read_bytes())
    err = _cli_error(["import", "flight-recorder", str(tmp_path)], capsys)
    assert "rank_9999999" in err and "over the limit" in err
    (tmp_path / "rank_9999999").unlink()
    doc = json.loads((src / "profiler" / "rank_0.trace.json").read_text())
    doc["distributedInfo"]["world_size"] = 10**12
    (tmp_path / "t_0.json").write_text(json.dumps(doc))
    err = _cli_error(["import", "profiler", str(tmp_path)], capsys)
    assert "t_0.json" in err and "distributedInfo.world_size" in err


@pytest.mark.parametrize("mutate, expect", [
    (lambda ev: ev.update(ts=1e400), "\"ts\" and \"dur\" must be finite numbers"),
    (lambda ev: ev.update(dur=-5), "\"ts\" and \"dur\" must be finite numbers"),
    (lambda ev: ev.update(pid=[1]), "\"pid\" and \"tid\" must be numbers or strings"),
    (lambda ev: ev["args"].update({"Input Dims": [[-8]]}), "a tensor dimension out of range"),
])
def test_bad_trace_events(tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate: Any, expect: str) -> None:
    doc = json.loads((FIXTURES / "tp2_first_skip" / "profiler" / "rank_0.trace.json").read_text())
    i, ev = next((i, e) for i, e in enumerate(doc["traceEvents"]) if str(e.get("name", "")).startswith("c10d::"))
    mutate(ev)
    (tmp_path / "rank_0.json").write_text(json.dumps(doc).replace("Infinity", "1e400"))
    err = _cli_error(["import", "profiler", str(tmp_path)], capsys)
    assert "rank_0.json" in err and f"event {i}" in err and expect in err, err


def test_many_missing_ranks_stay_linear(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["import", "flight-recorder", str(FIXTURES / "clean" / "json"), "--world", "100000"])
    out = capsys.readouterr().out
    assert code == 1
    assert "ranks 4-99999 left no data" in out and "r4-r99999: no dump (missing)" in out
    assert len(out) < 10_000


# ---------------------------------------------------------------- a 2-rank group that runs on one op off
def _tp_pair_job(*, skip: tuple[int, int] | None = None, swap: tuple[int, int] | None = None, steps: int = 3,
                 labels: bool = True, first_only: bool = False) -> Any:
    """Ranks 2 and 3 of one TP group (tp1), each decode step all-reducing
    attn then mlp in layers L2 and L3, every op the same size (so a skipped
    op lets the next instances pair up one op off, as gloo and NCCL do).
    ``skip=(rank, step)``: that rank skips L3/mlp of that step;
    ``swap=(rank, step)``: it issues L3/mlp before L3/attn."""
    from syncproof.importers.culprit import CommOp, Group, Job, RankTrace

    ranks = {}
    for r in (2, 3):
        ops, t = [], 0
        for s in range(steps):
            plan = [(L, b) for L in (2, 3) for b in ("attn", "mlp")]
            if swap == (r, s):
                plan[2], plan[3] = plan[3], plan[2]
            for L, b in plan:
                t += 1000
                if skip == (r, s) and (L, b) == (3, "mlp"):
                    continue
                line = 10 if b == "attn" else 20
                ops.append(CommOp(rank=r, kind="all_reduce", group="1", seq=len(ops) + 1, in_sizes=((1, 8),),
                                  out_sizes=((1, 8),), dtype="float32", state="completed",
                                  label=f"decode{s}/L{L}/{b}" if labels else "",
                                  frames=(("all_reduce", "m.py", line), ("layer", "m.py", 30)), time_ns=t,
                                  source="profiler" if labels else "fr"))
        ranks[r] = RankTrace(r, ops, "x", None, "nccl", True, True)
    if skip is not None:
        ranks[5 - skip[0]].ops[-1].state = "in_flight"  # the other rank waits in the last instance
    return Job("pair", (2, 3), {"1": Group("1", "tp1", (2, 3), "profiler")}, ranks)


@pytest.mark.parametrize("skipper", [2, 3])
@pytest.mark.parametrize("labels", [True, False])
def test_skip_in_a_pair_names_the_skipped_op(skipper: int, labels: bool) -> None:
    """A rank skips the last MLP all_reduce of decode step 1; step 0 shows that
    L3/attn is followed by L3/mlp, so the rank that issued the next op early is
    the culprit, and its culprit op is the one it skipped."""
    a = analyse(_tp_pair_job(skip=(skipper, 1), labels=labels))
    assert a.decided, a.text()
    [c] = a.culprits
    assert (c.rank, c.op, c.group, c.seq) == (skipper, "all_reduce", "tp1", 8), a.text()
    assert c.what.startswith("skipped"), a.text()
    if labels:
        assert c.label == "decode1/L3/mlp" and "decode2/L2/attn in its place" in c.what


def test_swap_in_a_pair_is_out_of_order() -> None:
    a = analyse(_tp_pair_job(swap=(3, 1)))
    assert a.decided, a.text()
    [c] = a.culprits
    assert (c.rank, c.label, c.what) == (3, "decode1/L3/mlp", "out of order"), a.text()


def test_pair_skip_of_the_last_op_in_a_single_step() -> None:
    """One step only: rank 3 skips L3/mlp, the last op, and is not blocked in
    any op the (NCCL-style, send/recv-recording) data holds, so it never
    issued it; the truly undecidable case, both ranks stopping at the very
    first collective, is the real fixture tp2_first_skip."""
    a = analyse(_tp_pair_job(skip=(3, 0), steps=1))
    assert a.decided, a.text()
    assert [(c.rank, c.label, c.what) for c in a.culprits] == [(3, "decode0/L3/mlp", "skipped")], a.text()
    t = analyse(load_flight_recorder([FIXTURES / "tp2_first_skip" / "pickle"],
                                     [FIXTURES / "tp2_first_skip" / "profiler"]))
    assert not t.decided and set(t.candidates) == {0, 1}
    assert any("no history" in r or "the same point" in r for r in t.reasoning), t.text()


def test_gloo_dumps_alone_list_the_waiting_rank_too() -> None:
    """With gloo dumps alone, rank 1 (not in a recorded op) may be waiting in
    a recv for rank 0, which then skipped its send: both are candidates."""
    a = analysis("tp2_skip_last_mlp_decode2", profiler=False)
    assert not a.decided and a.candidates == [1, 0], a.text()
    assert any("may have skipped a send that rank 1 waits for in turn" in r for r in a.reasoning), a.text()


def test_profiler_group_conflict_names_both_traces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = FIXTURES / "tp2_first_skip" / "profiler"
    for f in src.iterdir():
        doc = json.loads(f.read_text())
        if doc["distributedInfo"]["rank"] == 1:
            for g in doc["distributedInfo"]["pg_config"]:
                g["ranks"] = [1]
        (tmp_path / f.name).write_text(json.dumps(doc))
    err = _cli_error(["import", "profiler", str(tmp_path)], capsys)
    assert "rank_0.trace.json" in err and "rank_1.trace.json" in err and "has members" in err, err
