"""The choice models (models/choices.py): for small sizes, every assignment of
the choices is selected and checked as a plain schedule.  The correct schedule
is proved for every assignment; every fault is violated, with the property it
names, for some assignment, and each fault's test names one such assignment
(and one that still passes, where there is one)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from syncproof.engine import check_schedule
from syncproof.ir import Kind, Schedule
from syncproof.ir.choices import Assignment, Value, all_assignments, default_assignment, space_size
from syncproof.ir.select import select
from syncproof.models.registry import build, get, list_models
from syncproof.proofs import load
from syncproof.result import PROPERTIES

ROOT = Path(__file__).resolve().parent.parent
CHOICE_MODELS = ("dpattn-ep-states", "overlap-switch", "grammar-abort", "spec-decode", "moe-routing")

# (model, params) small enough to enumerate every assignment in well under a second
SMALL: list[tuple[str, dict[str, Value]]] = [
    ("dpattn-ep-states", {"dp": 3, "layers": 1}),
    ("dpattn-ep-states", {"dp": 2, "layers": 2}),
    ("overlap-switch", {"dp": 3, "layers": 1}),
    ("grammar-abort", {"dp": 2, "steps": 2}),
    ("spec-decode", {"tp": 2, "k": 3, "steps": 2}),
    ("moe-routing", {"ep": 2, "cap": 2}),
    ("moe-routing", {"ep": 2, "cap": 1, "dispatch": "agrs"}),
]
FAULT_PARAMS: dict[str, dict[str, Value]] = {
    "idle-skips-mlp-sync": {"dp": 3, "layers": 1},
    "idle-no-wait": {"dp": 2, "layers": 1},
    "overlap-local": {"dp": 3, "layers": 1},
    "abort-local": {"dp": 2, "steps": 2},
    "accept-local": {"tp": 2, "k": 3, "steps": 1},
    "counts-patched-local": {"ep": 2, "cap": 1, "dispatch": "agrs"},
    "recv-counts-guessed": {"ep": 2, "cap": 1},
}


def verdicts(s: Schedule, a: Assignment) -> dict[str, str]:
    rep = check_schedule(select(s, a).schedule)
    return {r.property: r.verdict.value for r in rep.results}


def sentences(s: Schedule, a: Assignment, prop: str) -> str:
    res = check_schedule(select(s, a).schedule, [prop]).result(prop)
    assert res.counterexample is not None, (prop, a.text())
    return res.counterexample.sentence


def assign(s: Schedule, values: Mapping[tuple[str, int | str | None], Value | tuple[Value, ...]]) -> Assignment:
    """The default assignment with ``values`` (keyed by (choice, owner)) put in."""
    base = default_assignment(s.choices, s.ranks)
    known = dict(base.values)
    assert set(values) <= set(known), set(values) - set(known)
    return Assignment(tuple((k, values.get(k, v)) for k, v in base.values))


def ranks(name: str, per_rank: Mapping[int, Value | tuple[Value, ...]]) -> dict[tuple[str, int | str | None],
                                                                             Value | tuple[Value, ...]]:
    return {(name, r): v for r, v in per_rank.items()}


# ------------------------------------------------------------------ the registry
def test_every_choice_model_is_registered_with_faults() -> None:
    names = {m.name for m in list_models()}
    assert set(CHOICE_MODELS) <= names
    for name in CHOICE_MODELS:
        spec = get(name)
        assert spec.family == "choices" and spec.faults
        assert all(f.breaks in PROPERTIES for f in spec.faults)
        s = build(name, {})
        assert s.choices, name
        assert any(op.choice is not None for op in s.ops), name
    assert set(FAULT_PARAMS) == {f.name for name in CHOICE_MODELS for f in get(name).faults}


# ------------------------------------------------------------------ every assignment
@pytest.mark.parametrize(("model", "params"), SMALL, ids=[f"{m}-{p}" for m, p in SMALL])
def test_the_fix_is_proved_for_every_assignment(model: str, params: dict[str, Value]) -> None:
    s = build(model, params)
    n = 0
    for a in all_assignments(s.choices, s.ranks):
        assert verdicts(s, a) == dict.fromkeys(PROPERTIES, "proved"), a.text()
        n += 1
    assert n == space_size(s.choices, s.ranks) > 1


def _faults() -> list[tuple[str, str]]:
    return [(name, f.name) for name in CHOICE_MODELS for f in get(name).faults]


@pytest.mark.parametrize(("model", "fault"), _faults())
def test_each_fault_is_violated_for_some_assignment(model: str, fault: str) -> None:
    """With the property the fault names; and not for every assignment: the bug needs ranks that differ."""
    s = build(model, FAULT_PARAMS[fault], fault)
    want = get(model).fault(fault).breaks
    broken = proved = 0
    for a in all_assignments(s.choices, s.ranks):
        v = verdicts(s, a)
        if v[want] == "violated":
            broken += 1
        elif set(v.values()) == {"proved"}:
            proved += 1
    assert broken and proved, (broken, proved)


# ------------------------------------------------------------------ one named assignment per fault
def test_idle_skips_mlp_sync_hangs_fifteen_of_sixteen_ranks() -> None:
    s = build("dpattn-ep-states", {"dp": 16, "layers": 1}, "idle-skips-mlp-sync")
    a = assign(s, ranks("state", {r: "idle" if r == 3 else "decode" for r in range(16)}))
    assert a.text() == "ranks 0-2, 4-15: state=decode; rank 3: state=idle"
    assert verdicts(s, a)["matching"] == "violated"
    text = sentences(s, a, "matching")
    assert text.startswith("rank 3 skips all_gather #0") and text.endswith("wait for rank 3")
    assert "ranks 0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 wait" in text
    busy = assign(s, ranks("state", dict.fromkeys(range(16), "prefill")))
    assert verdicts(s, busy) == dict.fromkeys(PROPERTIES, "proved")
    fixed = build("dpattn-ep-states", {"dp": 16, "layers": 1})
    assert verdicts(fixed, a) == dict.fromkeys(PROPERTIES, "proved")


def test_idle_no_wait_reads_before_the_dummy_attention() -> None:
    s = build("dpattn-ep-states", {"dp": 2, "layers": 1}, "idle-no-wait")
    a = assign(s, ranks("state", {0: "idle", 1: "prefill"}))
    v = verdicts(s, a)
    assert v["matching"] == "proved" and v["dataflow"] == "violated" and v["race"] == "violated"
    text = sentences(s, a, "dataflow")
    assert "r0/comm: all_gather#0(dp) mlp_sync" in text and "attn_dummy" in text
    assert verdicts(s, assign(s, ranks("state", {0: "decode", 1: "prefill"}))) == dict.fromkeys(PROPERTIES, "proved")


def test_overlap_local_splits_on_one_rank_only() -> None:
    s = build("overlap-switch", {"dp": 2, "layers": 1}, "overlap-local")
    a = assign(s, ranks("state", {0: "decode", 1: "prefill"}))
    assert verdicts(s, a)["matching"] == "violated"
    text = sentences(s, a, "matching")
    assert "size 2048" in text and "size 4096" in text
    # every rank decoding: all overlap, and the schedule is fine
    assert verdicts(s, assign(s, ranks("state", {0: "decode", 1: "decode"}))) == dict.fromkeys(PROPERTIES, "proved")
    fixed = build("overlap-switch", {"dp": 2, "layers": 1})
    assert {c.name: c.scope for c in fixed.choices} == {"state": "rank", "all_decode": "group"}
    assert verdicts(fixed, a) == dict.fromkeys(PROPERTIES, "proved")


def test_abort_local_skips_the_forward_on_the_aborting_rank() -> None:
    s = build("grammar-abort", {"dp": 2, "steps": 1}, "abort-local")
    a = assign(s, ranks("aborted", {0: (False,), 1: (True,)}))
    assert a.text() == "rank 0: aborted=[false]; rank 1: aborted=[true]"
    assert verdicts(s, a)["matching"] == "violated"
    assert sentences(s, a, "matching").startswith("rank 1 never issues collective #0 on group 'dp'")
    fixed = build("grammar-abort", {"dp": 2, "steps": 1})
    assert verdicts(fixed, a) == dict.fromkeys(PROPERTIES, "proved")
    # in the fix, the aborting step has no forward collective on any rank
    sel = select(fixed, a).schedule
    assert {op.name for op in sel.ops if op.kind.is_collective} == {"sync_abort_0"}


def test_accept_local_sizes_the_extend_all_reduce_per_rank() -> None:
    s = build("spec-decode", {"tp": 2, "k": 3, "steps": 1}, "accept-local")
    a = assign(s, ranks("accept_0", {0: 1, 1: 2}))
    assert verdicts(s, a)["matching"] == "violated"
    text = sentences(s, a, "matching")
    assert "size 4096" in text and "size 8192" in text
    fixed = build("spec-decode", {"tp": 2, "k": 3, "steps": 1})
    (acc,) = fixed.choices
    assert (acc.scope, acc.groups, acc.via) == ("group", ("tp",), "bcast_accept_0")
    for a in all_assignments(fixed.choices, fixed.ranks):  # one value for the group: the broadcast's
        sizes = {op.size for op in select(fixed, a).schedule.ops if op.name == "extend_allreduce"}
        assert len(sizes) == 1


def test_counts_patched_local_disagrees_unless_every_rank_is_full() -> None:
    s = build("moe-routing", {"ep": 2, "cap": 1, "dispatch": "agrs"}, "counts-patched-local")
    a = assign(s, ranks("tokens", {0: (0, 1), 1: (1, 1)}))
    assert verdicts(s, a)["matching"] == "violated"
    assert "counts [1, 2]" in sentences(s, a, "matching")
    full = assign(s, ranks("tokens", {0: (1, 1), 1: (1, 1)}))  # the stale padded count happens to be right
    assert verdicts(s, full) == dict.fromkeys(PROPERTIES, "proved")
    fixed = build("moe-routing", {"ep": 2, "cap": 1, "dispatch": "agrs"})
    gathers = [op.counts for op in select(fixed, a).schedule.ops if op.name == "dispatch"]
    assert gathers == [(1, 2), (1, 2)]


def test_recv_counts_guessed_breaks_on_an_asymmetric_routing() -> None:
    s = build("moe-routing", {"ep": 2, "cap": 1}, "recv-counts-guessed")
    a = assign(s, ranks("tokens", {0: (0, 0), 1: (1, 0)}))
    assert verdicts(s, a)["matching"] == "violated"
    text = sentences(s, a, "matching")
    assert "sends 0 elements to rank 1" in text and "expects 1 from rank 0" in text
    symmetric = assign(s, ranks("tokens", {0: (1, 1), 1: (1, 0)}))
    assert verdicts(s, symmetric) == dict.fromkeys(PROPERTIES, "proved")


# ------------------------------------------------------------------ sizes
def test_large_groups_stay_small_per_rank() -> None:
    """dp=128: a constant number of ops per rank, no split counts (nothing grows with the group)."""
    per_rank = {"dpattn-ep-states": 43, "overlap-switch": 41, "grammar-abort": 36}
    for name, n in per_rank.items():
        s = build(name, {"dp": 128})
        assert {len(s.by_rank[r]) for r in s.ranks} == {n}, name
        assert not any(op.counts or op.recv_counts or (op.choice and op.choice.counts) for op in s.ops), name
    s = build("dpattn-ep-states", {"dp": 512, "layers": 1})
    assert len(s.ops) == 512 * 22
    assert all(op.choice is None or op.choice.size is None for op in s.ops if op.kind is Kind.ALL_TO_ALL)


def test_every_fault_and_default_has_an_obligation() -> None:
    obs = load(ROOT / "proofs" / "choices.toml")
    clean = {o.model for o in obs if not o.fault and o.expect_text == "proved"}
    assert clean >= set(CHOICE_MODELS)
    broken = {(o.model, o.fault): o.expect_property for o in obs if o.fault}
    for model, fault in _faults():
        assert broken.get((model, fault)) == get(model).fault(fault).breaks, (model, fault)
