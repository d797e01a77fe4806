"""The host models (models/host.py): ``async-decode`` (vLLM's async-scheduling
decode loop) and ``overlap-scheduler`` (SGLang's overlap scheduler).

Every default is proved by both engines (z3 where the schedule is small) and
by the operational executor (on the sizes it can enumerate); every fault
violates exactly the properties pinned here (a buffer rewritten under a
reader is both a dataflow and a race violation; the fault's ``breaks`` is one
of them), its counterexample names the culprit, and every counterexample
replays.  The sizes that proofs/host.toml pins run there.
"""

from __future__ import annotations

import json
from functools import cache

import pytest

from syncproof.engine.check import check_schedule
from syncproof.errors import UsageError
from syncproof.executor import explore
from syncproof.ir import Kind, Schedule, dumps, loads
from syncproof.ir.builder import HOST
from syncproof.models.registry import build, get
from syncproof.result import PROPERTIES, Report

P, V, U = "proved", "violated", "unknown"
MODELS = ("async-decode", "overlap-scheduler")
# (model, params) the executor enumerates in well under a second (or a few seconds for tp=2)
SMALL = {"async-decode": {"tp": 1, "steps": 2}, "overlap-scheduler": {"tp": 1, "steps": 2}}
BROKEN = {p: (V if p in ("dataflow", "race") else P) for p in PROPERTIES}
PROVED = dict.fromkeys(PROPERTIES, P)


@cache
def _report(s: Schedule, engine: str) -> Report:
    return check_schedule(s, engine=engine)


def _verdicts(rep: Report) -> dict[str, str]:
    return {r.property: r.verdict.value for r in rep.results}


def _executor(s: Schedule) -> dict[str, str]:
    got = explore(s).violated
    return {p: V if got.get(p) is True else P if got.get(p) is False else U for p in PROPERTIES}


def check(s: Schedule, want: dict[str, str], *, z3: bool = True, executor: bool = True,
          mentions: tuple[str, ...] = ()) -> Report:
    """The engines (and the executor) give ``want``, without warnings; every
    counterexample replays and its sentence mentions each of ``mentions``."""
    rep = _report(s, "hybrid")
    for engine in ("hybrid", "z3") if z3 else ("hybrid",):
        r = _report(s, engine)
        assert _verdicts(r) == want, f"{s.name} ({engine})"
        assert not r.warnings, (s.name, engine, r.warnings)
        for x in r.results:
            if x.verdict.value == V:
                cex = x.counterexample
                assert cex is not None and cex.replayed, f"{s.name} ({engine}) {x.property}: did not replay"
                for text in mentions:
                    assert text in cex.sentence, f"{s.name} {x.property}: {text!r} not in {cex.sentence!r}"
    if executor:
        assert _executor(s) == want, f"{s.name} (executor)"
    return rep


# ------------------------------------------------------------------ defaults
@pytest.mark.parametrize("params", [{}, {"tp": 1, "steps": 1}, {"tp": 1, "steps": 2}, {"tp": 1, "steps": 3},
                                    {"tp": 2, "steps": 4}, {"inputs": "double"},
                                    {"tp": 1, "steps": 3, "inputs": "double"}, {"tp": 4, "steps": 6}])
def test_async_decode_is_proved(params: dict[str, int | str]) -> None:
    s = build("async-decode", params)
    # the executor enumerates one rank's three steps in under a second, two ranks' one step in seconds
    check(s, PROVED, z3=len(s.ops) <= 300, executor=params.get("tp") == 1 and int(params.get("steps", 3)) <= 3)


@pytest.mark.parametrize("params", [{}, {"tp": 1, "steps": 1}, {"tp": 1, "steps": 2}, {"tp": 2, "steps": 2},
                                    {"wait": "oversync"}, {"tp": 1, "steps": 2, "wait": "oversync"},
                                    {"tp": 4, "steps": 6}])
def test_overlap_scheduler_is_proved(params: dict[str, int | str]) -> None:
    s = build("overlap-scheduler", params)
    check(s, PROVED, z3=len(s.ops) <= 300, executor=len(s.ops) <= 60)


@pytest.mark.parametrize(("model", "params"), [("async-decode", {"tp": 8, "steps": 16}),
                                               ("async-decode", {"tp": 4, "steps": 8, "inputs": "double"}),
                                               ("overlap-scheduler", {"tp": 8, "steps": 16}),
                                               ("overlap-scheduler", {"tp": 4, "steps": 8, "wait": "oversync"})])
def test_large_sizes_with_the_hybrid_engine(model: str, params: dict[str, int | str]) -> None:
    """8 ranks x 16 steps (2,320 and 1,784 ops) in well under a second; a whole-schedule z3 formula takes
    minutes there (measured: 446 s for async-decode), so z3 checks the small sizes only."""
    s = build(model, params)
    assert len(s.ops) >= 500
    check(s, PROVED, z3=False, executor=False)


def test_the_defaults_round_trip_and_use_the_host_model() -> None:
    """Host work on the host stream, event syncs, re-recorded events, the
    allocator: no pseudo-stream stands in for the host."""
    for name in MODELS:
        s = build(name, {})
        assert dumps(s) == dumps(build(name, {})) and loads(dumps(s)) == s
        assert "host" in s.features, name
        assert not any("host" in op.stream and op.stream != HOST for op in s.ops), name
        assert any(op.kind is Kind.SYNC for op in s.ops), name
        records: dict[str, int] = {}
        for op in s.ops:
            if op.kind is Kind.RECORD and op.rank == 0:
                records[str(op.event)] = records.get(str(op.event), 0) + 1
        assert max(records.values()) == 3, (name, records)  # an event recorded again every step
    kinds = {op.kind for op in build("async-decode", {}).ops}
    assert {Kind.ALLOC, Kind.FREE, Kind.RECORD_STREAM} <= kinds


def test_vllm_guards_its_one_pinned_buffer_with_an_event() -> None:
    """The default is what vLLM does (prepare_inputs_event.synchronize()
    before the refill); two alternating buffers need no such sync."""
    one, two = build("async-decode", {"tp": 1}), build("async-decode", {"tp": 1, "inputs": "double"})
    assert [op.event for op in one.ops if op.kind is Kind.SYNC].count("prep_inputs") == 2
    assert "prep_inputs" not in [op.event for op in two.ops if op.kind is Kind.SYNC]
    assert {str(a.region) for op in one.ops for a in op.writes if a.region.buffer == "pin_in"} == {"pin_in[slot=0]"}


def test_the_host_overlaps_the_device_step() -> None:
    """Async scheduling: the host prepares step t+1 before it synchronizes on
    step t's output (issue order), and host work carries no step metadata."""
    s = build("async-decode", {"tp": 1, "steps": 3})
    ops = list(s.ops)
    prep = [i for i, op in enumerate(ops) if op.name == "prepare_inputs"]
    syncs = [i for i, op in enumerate(ops) if op.kind is Kind.SYNC and str(op.event).startswith("out")]
    assert prep[1] < syncs[0] and prep[2] < syncs[1]
    assert all(op.meta.step is None for op in ops if op.stream in (HOST, "h2d", "d2h"))


def test_record_stream_decides_the_trace_not_the_order() -> None:
    """With the default trace (x{t} gets x{t-2}'s block) the host's syncs
    already order the reuse: dropping only the record_stream ops keeps every
    proof.  What record_stream changes is which block is handed out; without
    it the allocator gives x{t-1}'s, the no-record-stream fault."""
    d = json.loads(dumps(build("async-decode", {"tp": 1, "steps": 3})))
    for r in d["ranks"]:
        d["ranks"][r] = [o for o in d["ranks"][r] if o["op"] != "record_stream"]
    check(loads(json.dumps(d)), PROVED)


def test_oversync_adds_one_redundant_wait_per_batch() -> None:
    """The second direction the SGLang fix added: one more wait per batch on
    the forward stream, implied by the data direction; both are proved (issue
    14's --redundant should name exactly these)."""
    one, both = build("overlap-scheduler", {}), build("overlap-scheduler", {"wait": "oversync"})
    extra = [op for op in both.ops if op.kind is Kind.WAIT and op.event == "sched_state"]
    assert len(extra) == 2 * 2 and len(both.ops) - len(one.ops) == 2 * len(extra)
    assert _verdicts(_report(both, "hybrid")) == PROVED == _verdicts(_report(one, "hybrid"))


# ------------------------------------------------------------------ faults
FAULTS = [(m, f.name) for m in MODELS for f in get(m).faults]
MENTIONS = {
    ("async-decode", "refill-before-copy"): ("prepare_inputs", "pin_in[slot=0]", "h2d"),
    ("async-decode", "read-before-sync"): ("read_token", "out[step=0]", "d2h"),
    ("async-decode", "kv-freed-early"): ("receive_kv", "kv[pos=0:4]", "forward"),
    ("async-decode", "no-record-stream"): ("x0.record_stream(compute)", "block of 'x0' to 'x1'"),
    ("async-decode", "stale-event"): ("forward decode t1", "x1", "h2d"),
    ("overlap-scheduler", "no-wait-stream"): ("prepare_batch", "idx", "resolve_indices"),
}


def test_every_fault_is_pinned_here() -> None:
    assert set(MENTIONS) == set(FAULTS)


@pytest.mark.parametrize(("model", "fault"), FAULTS)
def test_fault_small_all_engines_and_executor(model: str, fault: str) -> None:
    s = build(model, SMALL[model], fault)
    assert get(model).fault(fault).breaks in {p for p, v in BROKEN.items() if v == V}
    check(s, BROKEN, mentions=MENTIONS[(model, fault)])


@pytest.mark.parametrize(("model", "fault"), FAULTS)
def test_fault_at_the_default_size(model: str, fault: str) -> None:
    """Both engines at the default size (tp=2, three steps); the executor's
    state space is too large there."""
    check(build(model, {}, fault), BROKEN, executor=False)


@pytest.mark.parametrize(("model", "params", "fault"), [
    ("async-decode", {"tp": 2, "steps": 1}, None),
    ("async-decode", {"tp": 2, "steps": 1}, "read-before-sync"),
    ("async-decode", {"tp": 1, "steps": 3}, "stale-event"),
    ("overlap-scheduler", {"tp": 2, "steps": 2}, "no-wait-stream"),
])
def test_two_ranks_or_three_steps_with_the_executor(model: str, params: dict[str, int], fault: str | None) -> None:
    """Two TP ranks (an all-reduce per step), or a third step: the executor agrees."""
    check(build(model, params, fault), BROKEN if fault else PROVED)


def test_the_stale_event_wait_binds_to_the_previous_record() -> None:
    """The wait is issued before this step's record, not before any record:
    no no-op warning, the wait is real but on the previous step's copy."""
    s = build("async-decode", {"tp": 1, "steps": 2}, "stale-event")
    ops = list(s.ops)
    waits = [i for i, op in enumerate(ops) if op.kind is Kind.WAIT and op.event == "copied"]
    records = [i for i, op in enumerate(ops) if op.kind is Kind.RECORD and op.event == "copied"]
    assert records[0] < waits[0] < records[1] and records[0] < waits[1] < records[1]
    assert not _report(s, "hybrid").warnings


@pytest.mark.parametrize(("model", "fault"), FAULTS)
def test_faults_need_two_steps_or_the_event(model: str, fault: str) -> None:
    needs = get(model).fault(fault).needs_text
    if "steps>=2" in needs:
        with pytest.raises(UsageError, match="needs"):
            build(model, {"steps": 1}, fault)
    if "inputs=event" in needs:
        with pytest.raises(UsageError, match="needs inputs=event"):
            build(model, {"inputs": "double"}, fault)
