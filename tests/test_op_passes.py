"""Passes over the ops that the engine makes faster than a plain loop,
against a plain loop: the phase rule's steps (``phase_steps`` keeps one
_Step per class of ops, the sequences named and the step, and merges them),
``Schedule.streams`` (grouped rank by rank) and the event links of
``match`` (found rank by rank).  Each must give what one pass over the ops
in id order gives, on every example, every model and random schedules,
also when the ranks' ops interleave."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncproof.ir import Kind, Schedule, load, schedule_from_dict
from syncproof.semantics.matching import match
from syncproof.semantics.obligations import WAITING_KINDS, lane_of, phase_obligations, phase_steps

ROOT = Path(__file__).resolve().parent.parent
FROM_ROOT = (Kind.BROADCAST, Kind.SCATTER)


def reference(s: Schedule) -> tuple[list[tuple[Any, ...]], dict[object, dict[int, tuple[Any, ...]]]]:
    """The rule itself: for each op in a step, for each sequence it belongs to
    (those it names, or every sequence named anywhere when it names none):
    the last op of its lane that is not a send, the first that does work,
    and the samplers; plus the metadata problems of decode ops, in op order."""
    every = tuple(sorted({q for op in s.ops if op.meta.phase is not None for q in op.meta.seqs})) or ("*",)
    lane = lane_of(s)
    steps: dict[object, dict[int, dict[str, Any]]] = defaultdict(dict)
    probs: list[tuple[Any, ...]] = []
    tokens_of: dict[tuple[object, int], Any] = {}
    for op in s.ops:
        m = op.meta
        if m.phase == "decode":
            if m.sp is not None:
                probs.append(("sp", op.id))
            if m.step is None:
                continue
            t = m.step
        elif m.phase == "prefill":
            t = -1
        else:
            continue
        for q in m.seqs or every:
            g = steps[q].setdefault(t, {"last": {}, "first": {}, "samples": []})
            key = lane(op)
            if op.kind is not Kind.SEND:
                g["last"][key] = op.id
            if key not in g["first"] and op.kind not in WAITING_KINDS \
                    and not (op.kind in FROM_ROOT and op.root != op.rank):
                g["first"][key] = op.id
            if m.sample:
                g["samples"].append(op.id)
            if m.phase == "decode" and m.tokens is not None:
                prev = tokens_of.setdefault((q, t), op)
                if prev.meta.tokens != m.tokens:
                    probs.append(("tokens", op.id, prev.id))
    return probs, {q: {t: (g["last"], g["first"], g["samples"]) for t, g in per.items()} for q, per in steps.items()}


def engine(s: Schedule) -> tuple[list[tuple[Any, ...]], dict[object, dict[int, tuple[Any, ...]]]]:
    obs, groups = phase_steps(s)
    probs = [("sp", ob.op) if ob.other is None else ("tokens", ob.op, ob.other) for ob in obs]
    return probs, {q: {t: (g.last, g.first, g.samples) for t, g in per.items()} for q, per in groups.items()}


def _schedules() -> list[Path]:
    return sorted((ROOT / "examples").rglob("*.json"))


@pytest.mark.parametrize("path", _schedules(), ids=lambda p: p.name)
def test_examples(path: Path) -> None:
    try:
        s = load(path)
    except Exception:  # noqa: BLE001  (a bad-input example)
        pytest.skip("not a loadable schedule")
    assert engine(s) == reference(s)


def test_models() -> None:
    from syncproof.models.registry import build, list_models

    seen = 0
    for spec in list_models():
        s = build(spec.name, {})
        assert engine(s) == reference(s), spec.name
        seen += any(op.meta.phase is not None for op in s.ops)
    assert seen >= 3  # models with phases are among them


KINDS = ("compute", "send", "recv", "record", "broadcast", "wait")


@st.composite
def phased(draw: st.DrawFn) -> Schedule:
    """Two ranks; ops of every kind the rule treats apart, in a few lanes,
    with metadata naming no sequence, one, or several."""
    ranks: dict[str, list[dict[str, Any]]] = {"0": [], "1": []}
    for r in (0, 1):
        for _ in range(draw(st.integers(0, 9))):
            kind = draw(st.sampled_from(KINDS))
            d: dict[str, Any] = {"op": kind, "stream": draw(st.sampled_from(("a", "b")))}
            if kind == "send":
                d["to"] = 1 - r
            elif kind == "recv":
                d["from"] = 1 - r
            elif kind in ("record", "wait"):
                d["event"] = draw(st.sampled_from(("e", "f")))
            elif kind == "broadcast":
                d["group"], d["root"] = "g", draw(st.sampled_from((0, 1)))
            if draw(st.integers(0, 4)):
                phase = draw(st.sampled_from(("prefill", "decode")))
                d["phase"] = phase
                if phase == "decode":
                    if draw(st.integers(0, 5)):
                        d["step"] = draw(st.integers(0, 2))
                    if draw(st.integers(0, 4)) == 0:
                        d["tokens"] = draw(st.sampled_from(("0:1", "1:2")))
                    if draw(st.integers(0, 6)) == 0:
                        d["sp"] = "0/2"
                seqs = draw(st.lists(st.integers(0, 2), max_size=3, unique=True))
                if seqs:
                    d["seqs"] = sorted(seqs)
                if draw(st.integers(0, 3)) == 0:
                    d["sample"] = True
            ranks[str(r)].append(d)
        # every rank records both events at its end (so a wait before any record does nothing)
        ranks[str(r)] += [{"op": "record", "stream": "b", "event": e} for e in ("e", "f")]
    return schedule_from_dict({"syncproof": 2, "groups": {"g": [0, 1]}, "ranks": ranks}, "random")


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(phased())
def test_random_schedules(s: Schedule) -> None:
    assert engine(s) == reference(s)


def test_classes_merge_into_each_sequence() -> None:
    """Ops naming (0, 1), (1,) and no sequence, in one step of one lane: sequence 1's
    step has the latest last op and the earliest first op of all three, and every sampler in op order."""
    ops = [{"op": "compute", "stream": "a", "phase": "decode", "step": 0, "seqs": [0, 1], "sample": True},
           {"op": "compute", "stream": "a", "phase": "decode", "step": 0, "seqs": [1]},
           {"op": "compute", "stream": "a", "phase": "decode", "step": 0, "sample": True},
           {"op": "compute", "stream": "a", "phase": "decode", "step": 0, "seqs": [0, 1], "sample": True},
           {"op": "compute", "stream": "a", "phase": "decode", "step": 1, "seqs": [2]}]
    s = schedule_from_dict({"syncproof": 2, "ranks": {"0": ops}}, "merge")
    _, groups = phase_steps(s)
    one = groups[1][0]
    assert one.first == {(0, "a"): 0} and one.last == {(0, "a"): 3} and one.samples == [0, 2, 3]
    assert groups[0][0].samples == [0, 2, 3] and groups[2][0].samples == [2]
    assert engine(s) == reference(s)
    # and the obligations made of them: step 1 of sequence 2 follows step 0's samplers
    assert any(getattr(ob, "samples", None) == (2,) for ob in phase_obligations(s))


def _streams_by_one_pass(s: Schedule) -> list[tuple[tuple[int, str], tuple[Any, ...]]]:
    out: dict[tuple[int, str], list[Any]] = defaultdict(list)
    for op in s.ops:
        out[(op.rank, op.stream)].append(op)
    return [(k, tuple(v)) for k, v in out.items()]


@settings(max_examples=60, deadline=None, database=None, derandomize=True)
@given(phased(), st.integers(1, 14))
def test_streams_grouped_either_way(s: Schedule, n_streams: int) -> None:
    """Both ways Schedule.streams groups a rank's ops (a pass per stream for a few streams, one
    pass appending to each stream's list for many) give the one-pass order, with up to 14 streams
    on a rank, so that either side of the cut-off is taken."""
    import dataclasses
    from unittest import mock

    import syncproof.ir.schedule as schedule_module

    many = dataclasses.replace(s, ops=tuple(dataclasses.replace(op, stream=f"s{(op.id * 7) % n_streams}")
                                            for op in s.ops))
    for sched in (s, many):
        want = _streams_by_one_pass(sched)
        for few in (0, 1, 8, 100):
            with mock.patch.object(schedule_module, "_FEW_STREAMS", few):
                assert list(dataclasses.replace(sched).streams.items()) == want


@settings(max_examples=100, deadline=None, database=None, derandomize=True)
@given(phased(), st.randoms(use_true_random=False))
def test_streams_are_program_order_in_issue_order(s: Schedule, rnd: Any) -> None:
    """Schedule.streams (grouped rank by rank) gives every (rank, stream) in the order of a pass
    over the ops, also when the ops of the ranks interleave."""
    import dataclasses

    assert list(s.streams.items()) == _streams_by_one_pass(s)
    order = list(s.ops)
    rnd.shuffle(order)  # ranks interleaved; each rank's own order kept
    order.sort(key=lambda op: (op.index, rnd.random()))
    ops = tuple(dataclasses.replace(op, id=i) for i, op in enumerate(order))
    mixed = dataclasses.replace(s, ops=ops)
    assert list(mixed.streams.items()) == _streams_by_one_pass(mixed)
    for sched in (s, mixed):
        m = match(sched)
        assert (list(m.events), list(m.noop_waits)) == _links_by_one_pass(sched)


def _links_by_one_pass(s: Schedule) -> tuple[list[tuple[int, int]], list[int]]:
    """A wait (or an event's synchronize) binds to the latest record of its event on its rank issued
    before it; with none, it does nothing (CUDA): in the order of the waits."""
    latest: dict[tuple[int, str], int] = {}
    links: list[tuple[int, int]] = []
    noop: list[int] = []
    for op in s.ops:
        if op.kind is Kind.RECORD:
            latest[(op.rank, op.event or "")] = op.id
        elif op.kind is Kind.WAIT or (op.kind is Kind.SYNC and op.event is not None):
            rec = latest.get((op.rank, op.event or ""))
            if rec is None:
                noop.append(op.id)
            else:
                links.append((rec, op.id))
    return links, noop
