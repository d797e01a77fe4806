"""Issue 14's test material, checked by experiment with today's engine: for
every bug/fix/over-synchronized triple of ``tests/oversync_cases.py`` (and the
models' ``oversync`` variants), remove syncs and re-check.

A sync is a ``wait``, a host ``sync`` or a ``barrier`` instance (all its
members at once).  Keeping fewer syncs only removes ordering edges: matching
is unchanged (a barrier instance goes as a whole, on every member), no cycle
appears, and dataflow, race and phase only have more runs to hold in.  So
"keeps every proof" is monotone in the set of syncs kept, and checking every
set of ``minimal_size - 1`` syncs covers every smaller set too (each is
inside one of them).
"""

from __future__ import annotations

import copy
import sys
from collections import defaultdict
from collections.abc import Iterable
from functools import cache
from itertools import combinations
from pathlib import Path

import pytest

from syncproof.engine import check_schedule
from syncproof.ir import Kind, Schedule, schedule_from_dict, schedule_to_dict
from syncproof.models.registry import build
from syncproof.result import Verdict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oversync_cases import CASES, LEVELS, Case  # noqa: E402

Unit = frozenset[str]  # the labels of one sync (one op, or every member of a barrier instance)


def verdicts(s: Schedule) -> dict[str, Verdict]:
    return {r.property: r.verdict for r in check_schedule(s, replay=False).results}


def all_proved(s: Schedule) -> bool:
    return all(v is Verdict.PROVED for v in verdicts(s).values())


def broken(s: Schedule) -> list[str]:
    return sorted(p for p, v in verdicts(s).items() if v is not Verdict.PROVED)


def sync_units(s: Schedule) -> list[Unit]:
    """Every sync of ``s``, in issue order of its first op."""
    out: list[Unit] = []
    bars: dict[tuple[str | None, int], set[str]] = defaultdict(set)
    order: list[tuple[str | None, int]] = []
    for op in s.ops:
        if op.kind in (Kind.WAIT, Kind.SYNC):
            out.append(frozenset({s.label(op)}))
        elif op.kind is Kind.BARRIER:
            key = (op.group, s.seq_numbers[op.id])
            if key not in bars:
                order.append(key)
            bars[key].add(s.label(op))
    return out + [frozenset(bars[k]) for k in order]


def without(s: Schedule, labels: Iterable[str]) -> Schedule:
    """``s`` without the ops labelled ``labels`` (built again from its document)."""
    want = set(labels)
    by_label = {s.label(op): op for op in s.ops}
    assert want <= set(by_label), sorted(want - set(by_label))
    drop: dict[str, set[int]] = defaultdict(set)
    for lab in want:
        op = by_label[lab]
        drop[str(op.rank)].add(op.index)
    d = copy.deepcopy(schedule_to_dict(s))
    for r, idx in drop.items():
        d["ranks"][r] = [o for k, o in enumerate(d["ranks"][r]) if k not in idx]
    return schedule_from_dict(d, f"<{s.name} without {len(want)} ops>")


def keeping(s: Schedule, units: list[Unit], keep: Iterable[Unit]) -> Schedule:
    kept = set(keep)
    return without(s, [lab for u in units if u not in kept for lab in u])


@cache
def oversync(name: str) -> tuple[Schedule, tuple[Unit, ...]]:
    case = _case(name)
    s = case.build("oversync")
    return s, tuple(sync_units(s))


def _case(name: str) -> Case:
    return next(c for c in CASES if c.name == name)


NAMES = [c.name for c in CASES]


# ------------------------------------------------------------------ the cases themselves
def test_the_cases_cover_the_issue() -> None:
    assert {"sglang-two-way", "kv-append-per-layer", "tp-host-sync", "barrier-before-collective", "transitive",
            "either-path"} <= set(NAMES)
    assert len(NAMES) == len(set(NAMES))
    # at least one case where "redundant alone" and "removable together" differ
    assert any(len(oversync(c.name)[1]) - c.minimal_size < len(_units(c, c.redundant)) for c in CASES)


def _units(case: Case, labels: frozenset[str]) -> set[Unit]:
    s, units = oversync(case.name)
    return {u for u in units if u & labels}


@pytest.mark.parametrize("name", NAMES)
def test_labels_name_one_sync_each(name: str) -> None:
    case = _case(name)
    s, units = oversync(name)
    labels = [lab for u in units for lab in u]
    assert len(labels) == len(set(labels)), "a sync label names two ops"
    assert len(units) <= 12, "keep the cases small: the minimality check is brute force"
    every = set(labels)
    assert case.redundant <= every and case.minimal <= every
    for inst in case.barriers:
        assert inst in units, inst
    # a barrier instance is listed whole or not at all
    for u in units:
        assert not (u & case.redundant) or u <= case.redundant
        assert not (u & case.minimal) or u <= case.minimal
    assert case.minimal_size == len(_units(case, case.minimal))


@pytest.mark.parametrize("name", NAMES)
def test_bug_fix_oversync_verdicts(name: str) -> None:
    case = _case(name)
    bug, fix, over = (case.build(level) for level in LEVELS)
    assert case.breaks in broken(bug), verdicts(bug)
    assert all_proved(fix), verdicts(fix)
    assert all_proved(over), verdicts(over)
    # the levels differ only in their syncs: the fix's are a subset of the oversync's,
    # and the bug has fewer than the fix
    fix_syncs = {lab for u in sync_units(fix) for lab in u}
    over_syncs = {lab for u in sync_units(over) for lab in u}
    bug_syncs = {lab for u in sync_units(bug) for lab in u}
    assert fix_syncs <= over_syncs and fix_syncs != over_syncs
    assert len(bug_syncs) < len(fix_syncs)
    # what the oversync version adds is redundant (it may make more of the fix's syncs redundant)
    assert over_syncs - fix_syncs <= case.redundant


@pytest.mark.parametrize("name", NAMES)
def test_each_sync_is_redundant_or_needed_as_listed(name: str) -> None:
    case = _case(name)
    s, units = oversync(name)
    for u in units:
        alone = without(s, u)
        if u <= case.redundant:
            assert all_proved(alone), (sorted(u), verdicts(alone))
        else:
            assert broken(alone), f"{sorted(u)} is listed as needed but its removal keeps every proof"


@pytest.mark.parametrize("name", NAMES)
def test_minimal_set_is_proved_and_no_smaller_set_is(name: str) -> None:
    case = _case(name)
    s, units = oversync(name)
    keep = _units(case, case.minimal)
    assert all_proved(keeping(s, list(units), keep)), sorted(map(sorted, keep))
    k = case.minimal_size
    for smaller in combinations(units, k - 1):
        assert broken(keeping(s, list(units), smaller)), f"{sorted(map(sorted, smaller))} keeps every proof"


def test_redundant_alone_is_not_removable_together_in_the_pair_cases() -> None:
    for name in ("either-path", "tp-host-sync-either"):
        case = _case(name)
        s, units = oversync(name)
        assert broken(without(s, case.redundant)), name


# ------------------------------------------------------------------ the models' oversync variants
VARIANTS = [
    # model, the variant's parameters, a predicate on the op: the syncs the variant adds
    ("kv", {"oversync": "layer-wait"}, lambda op: op.kind is Kind.WAIT and op.event.startswith("append_done")),
    ("pp", {"oversync": "barrier-before-send"}, lambda op: op.kind is Kind.BARRIER),
    ("tp", {"oversync": "step-sync"}, lambda op: op.kind is Kind.SYNC),
    ("overlap-scheduler", {"wait": "oversync"}, lambda op: op.kind is Kind.WAIT and op.event == "sched_state"),
]


@pytest.mark.parametrize(("model", "params", "added"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_model_variant_adds_only_redundant_syncs(model: str, params: dict[str, str], added: object) -> None:
    assert callable(added)
    default, over = build(model, {}), build(model, params)
    assert all_proved(default) and all_proved(over)
    units = sync_units(over)
    extra = [u for u in units if any(added(op) for op in over.ops if over.label(op) in u)]
    assert extra and len(units) - len(extra) == len(sync_units(default))
    for u in extra:  # each alone
        assert all_proved(without(over, u)), sorted(u)
    assert all_proved(without(over, [lab for u in extra for lab in u]))  # and all together


def test_kv_layer_wait_leaves_the_step_fence_needed() -> None:
    """The layer-boundary waits cover every layer's append but the last one's:
    the per-step fence stays needed (so --redundant names only the added waits)."""
    over = build("kv", {"oversync": "layer-wait", "steps": 2, "phase": "decode", "tp": 1})
    fences = [op for op in over.ops if op.kind is Kind.WAIT and op.event.startswith("done")]
    assert fences
    for op in fences:
        assert broken(without(over, [over.label(op)])), over.label(op)


def test_tp_step_sync_and_the_fence_are_each_redundant_alone_not_together() -> None:
    """A host sync at the end of every step duplicates the next step's fence
    waits: each is redundant alone; removing both breaks the proofs."""
    over = build("tp", {"oversync": "step-sync", "phase": "decode", "steps": 2})
    syncs = [over.label(op) for op in over.ops if op.kind is Kind.SYNC]
    fences = [over.label(op) for op in over.ops if op.kind is Kind.WAIT and op.event.startswith("done")]
    assert syncs and fences
    for lab in syncs + fences:
        assert all_proved(without(over, [lab])), lab
    assert all_proved(without(over, syncs)) and all_proved(without(over, fences))
    assert broken(without(over, syncs + fences))


def test_pp_barrier_also_implies_the_recv_slot_waits() -> None:
    """With two microbatches, the barrier of the next microbatch (joined by the
    next stage after it computed the previous one) orders the recv into a slot
    after the slot's last read: each recv-slot wait (``act_read``) is redundant
    alone too, though never together with every barrier."""
    over = build("pp", {"oversync": "barrier-before-send"})
    slot_waits = [over.label(op) for op in over.ops if op.kind is Kind.WAIT and op.event.startswith("act_read")]
    bars = [over.label(op) for op in over.ops if op.kind is Kind.BARRIER]
    assert slot_waits and bars
    for lab in slot_waits:
        assert all_proved(without(over, [lab])), lab
    assert all_proved(without(over, slot_waits))
    assert broken(without(over, slot_waits + bars))
