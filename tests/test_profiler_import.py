"""Profiler trace import: real traces of the fixture runs (tests/fixtures/fr/),
small hand-made NCCL-style traces, and bad input.  No torch needed."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from syncproof.cli import main
from syncproof.importers.culprit import analyse
from syncproof.importers.profiler import load_profiler_job, load_trace

FIXTURES = Path(__file__).parent / "fixtures" / "fr"
SCENARIOS = sorted(p.parent.name for p in FIXTURES.glob("*/truth.json"))


def truth(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name / "truth.json").read_text())


def test_trace_ops_in_issue_order_with_labels() -> None:
    t = load_trace(FIXTURES / "clean" / "profiler" / "rank_0.trace.json")
    assert t.rank == 0 and t.world_size == 4 and t.backend == "gloo"
    assert {(name, desc) for name, desc, _m in t.groups} == {("0", "default_pg"), ("1", "tp0")}
    first = [(o.kind, o.label) for o in t.ops[:4]]
    assert first == [("all_gather", "prefill/L0/attn"), ("reduce_scatter", "prefill/L0/attn"),
                     ("all_gather", "prefill/L0/mlp"), ("reduce_scatter", "prefill/L0/mlp")]
    sends = [o for o in t.ops if o.kind == "send"]
    recvs = [o for o in t.ops if o.kind == "recv"]
    assert [o.peer for o in sends] == [2] * 4 and [o.label for o in sends][:2] == ["prefill/pp", "decode1/pp"]
    assert [o.peer for o in recvs] == [2] * 4 and recvs[0].label == "prefill/token"
    assert t.ops[0].in_sizes == ((2, 8),) and t.ops[0].out_sizes == ((4, 8),)
    assert recvs[0].out_sizes == ((1,),) and recvs[0].dtype == "int64"
    times = [o.time_ns for o in t.ops]
    assert times == sorted(times)


@pytest.mark.parametrize("name", SCENARIOS)
def test_profiler_alone(name: str) -> None:
    t = truth(name)["culprit"]
    job = load_profiler_job([FIXTURES / name / "profiler"])
    a = analyse(job)
    if t is None:
        assert a.verdict == "clean", a.text()
        return
    if name == "dtype_mismatch":  # gloo traces give no dtype for c10d::allreduce_'s tensor list
        assert a.verdict == "clean" and any("no dtype" in r for r in a.reasoning), a.text()
        return
    assert a.verdict == "fault", a.text()
    if a.decided:
        assert [c.rank for c in a.culprits] == [t["rank"]], a.text()
    else:
        assert t["rank"] in a.candidates, a.text()


def test_profiler_alone_assumes_the_only_group() -> None:
    job = load_profiler_job([FIXTURES / "clean" / "profiler"])
    assert any("assumed 'tp0'" in w for w in job.warnings)
    op = job.ranks[2].ops[1]
    assert op.kind == "all_gather" and job.group_name(op.group) == "tp1" and op.seq == 1


def test_cli_lists_ops(capsys: pytest.CaptureFixture[str]) -> None:
    d = FIXTURES / "skipped_send" / "profiler"
    code = main(["import", "profiler", str(d)])
    out = capsys.readouterr().out
    assert code == 1
    assert "rank 0 (" in out and "send(->2) [decode1/pp]" in out and "recv(<-0) [decode2/pp]" in out
    code = main(["import", "profiler", *sorted(str(p) for p in d.iterdir()), "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["decided"] is True and doc["culprits"][0]["rank"] == 0
    assert doc["culprits"][0]["op"] == "send" and doc["culprits"][0]["peer"] == 2
    assert doc["ranks"]["2"][0] == {**doc["ranks"]["2"][0], "kind": "recv", "peer": 0, "label": "prefill/pp"}


def test_cli_schedule_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.json"
    code = main(["import", "profiler", str(FIXTURES / "clean" / "profiler"), "-o", str(out), "--check"])
    assert code == 0, capsys.readouterr().out
    from syncproof.ir import load

    s = load(out)
    assert len(s.ranks) == 4 and any(op.name == "decode2/L1/mlp" for op in s.ops)


# ---------------------------------------------------------------- hand-made traces
def _trace(rank: int, events: list[dict[str, Any]], groups: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "schemaVersion": 1,
        "distributedInfo": {"backend": "nccl", "rank": rank, "world_size": 2,
                            "pg_config": groups if groups is not None else
                            [{"pg_name": "0", "pg_desc": "default_pg", "pg_size": 2, "ranks": [0, 1]},
                             {"pg_name": "3", "pg_desc": "tp", "pg_size": 2, "ranks": [0, 1]}]},
        "baseTimeNanoseconds": 1_000_000_000,
        "traceEvents": events,
    }


def _x(name: str, ts: float, dur: float, cat: str = "cpu_op", tid: int = 1, **args: Any) -> dict[str, Any]:
    return {"ph": "X", "cat": cat, "name": name, "pid": 1, "tid": tid, "ts": ts, "dur": dur, "args": args}


def _nccl_allreduce(ts: float, group: str, n: int) -> list[dict[str, Any]]:
    return [
        _x("c10d::allreduce_", ts, 10, **{"Input Dims": [[[n]], [], [], [], [], []],
                                         "Input type": ["TensorList", "", "", "", "Scalar", "Scalar"]}),
        _x("record_param_comms", ts + 1, 5, **{"Collective name": "allreduce", "Process Group Name": group,
                                                "Process Group Ranks": "[0, 1]", "dtype": "Float",
                                                "In msg nelems": n, "Out msg nelems": n}),
    ]


def test_record_param_comms_gives_the_group(tmp_path: Path) -> None:
    for r in (0, 1):
        ev = [_x("step1", 0, 100, cat="user_annotation")]
        ev += _nccl_allreduce(1, "3", 4) + _nccl_allreduce(20, "0", 4 if r == 0 else 6)
        (tmp_path / f"r{r}.json").write_text(json.dumps(_trace(r, ev)))
    job = load_profiler_job([tmp_path])
    assert not any("assumed" in w for w in job.warnings)
    ops = job.ranks[1].ops
    assert [(job.group_name(o.group), o.seq, o.dtype, o.label) for o in ops] == [
        ("tp", 1, "float32", "step1"), ("default_pg", 1, "float32", "step1")]
    a = analyse(job)
    assert a.verdict == "fault" and not a.decided and sorted(a.candidates) == [0, 1], a.text()


def test_gzip_trace(tmp_path: Path) -> None:
    src = FIXTURES / "clean" / "profiler" / "rank_1.trace.json"
    (tmp_path / "rank_1.json.gz").write_bytes(gzip.compress(src.read_bytes()))
    assert len(load_trace(tmp_path / "rank_1.json.gz").ops) == len(load_trace(src).ops)


def _err(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("content, expect", [
    (b"", "empty"),
    (b"\xff\xfe\x00garbage", "neither a Flight Recorder dump (pickle or JSON) nor a profiler trace"),
    (b"{\"traceEvents\": [\"\xff\"]}", "not UTF-8"),
    (b"{\"traceEvents\": [", "ends early"),
    (b"{\"schemaVersion\": 1}", "nor a profiler trace (key traceEvents): its keys are 'schemaVersion'"),
    (b"{\"traceEvents\": {}}", "must be a list"),
    (b"{\"traceEvents\": [{\"ph\": \"X\", \"name\": \"c10d::send\", \"ts\": \"0\", \"dur\": 1}]}",
     "\"ts\" and \"dur\" must be finite numbers"),
    (b"{\"traceEvents\": [3]}", "event 0 is not an object"),
    (b"42", "neither a Flight Recorder dump (pickle or JSON) nor a profiler trace (JSON): it starts with b'42'"),
    (b"[1, 2]", "event 0 is not an object"),
])
def test_bad_traces(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, expect: str) -> None:
    p = tmp_path / "rank_0.json"
    p.write_bytes(content)
    err = _err(["import", "profiler", str(p)], capsys)
    assert "rank_0.json" in err and expect in err, err


def test_trace_without_rank(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "trace.json"
    p.write_text(json.dumps({"traceEvents": []}))
    assert "cannot tell the rank" in _err(["import", "profiler", str(p)], capsys)


def test_duplicate_rank_traces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = FIXTURES / "clean" / "profiler" / "rank_0.trace.json"
    (tmp_path / "a_0.json").write_bytes(src.read_bytes())
    (tmp_path / "b_0.json").write_bytes(src.read_bytes())
    assert "duplicate rank 0" in _err(["import", "profiler", str(tmp_path)], capsys)


def test_empty_trace_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "no trace files" in _err(["import", "profiler", str(tmp_path)], capsys)


def test_bad_profiler_next_to_dumps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "rank_0.json").write_text("{")
    err = _err(["import", "flight-recorder", str(FIXTURES / "clean" / "json"), "--profiler", str(tmp_path)], capsys)
    assert "rank_0.json" in err
