"""Mutation test of the models: remove one sync at a time and see whether the
checker notices.

A *sync removal* keeps the schedule valid: a ``wait`` alone (its ``record``
stays and then orders nothing), a whole collective instance (the k-th
collective of a group on every member, so matching still holds), or a matched
send+recv pair.  Removing a record alone would leave a wait without its
event, and removing one member of a collective or one side of a pair is a
matching bug the checker flags trivially, so neither is interesting here.

Each mutant is checked by the engine and, because the schedules are small,
also explored exhaustively by the independent executor, which reads actual
values in every interleaving: the two must agree on every property.  In
particular every removal that changes what some read sees (an executor
``dataflow`` violation) must be flagged.  Removals that change nothing are
*harmless*: the sync was implied by others (e.g. a per-step fence already
covered by a later wait).

Run ``python tests/test_mutation.py`` for the table of counts.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from syncproof.engine import check_schedule
from syncproof.executor import StateLimitExceeded, explore
from syncproof.ir import Kind, Schedule
from syncproof.ir.fileformat import schedule_from_dict, schedule_to_dict
from syncproof.models.registry import build
from syncproof.result import PROPERTIES, Verdict
from syncproof.semantics.matching import match

# One small configuration per model: every kind of sync it has, few enough
# interleavings for the executor.
FAST = [
    ("tp", {"tp": 2, "layers": 1, "phase": "prefill"}),
    ("kv", {"tp": 1, "layers": 1, "phase": "decode", "steps": 2}),
    ("chunked-prefill", {"chunks": 2, "prompt": 2, "layers": 1, "steps": 1}),
    ("sp", {"sp": 2, "layers": 1, "steps": 1, "chunk": 1}),
    ("sp", {"sp": 2, "layers": 1, "steps": 1, "chunk": 1, "variant": "ring"}),
    ("ep", {"ep": 2, "layers": 1, "phase": "prefill"}),
    ("dpattn-ep", {"ep": 2, "reqs": 1, "layers": 1, "phase": "prefill"}),
    ("paged-kv", {"seqs": 2, "steps": 1, "prompt": 2, "block": 2}),
    ("overlap", {"ranks": 1, "layers": 1}),
    ("overlap", {"ranks": 1, "layers": 1, "comm": "allreduce"}),
]
SLOW = [
    ("sp", {"sp": 3, "layers": 1, "steps": 0, "chunk": 1, "variant": "ring"}),
    ("tp", {"tp": 2, "layers": 1, "phase": "decode", "steps": 2}),
    ("pp", {"pp": 2, "mb": 1, "layers": 2, "phase": "decode", "steps": 2}),
    ("pp", {"pp": 2, "mb": 2, "layers": 2, "phase": "prefill"}),
    ("dp", {"dp": 2, "layers": 1, "phase": "decode", "steps": 2}),
    ("tp-sp", {"tp": 2, "layers": 1, "chunk": 1, "phase": "prefill"}),
    ("overlap", {"ranks": 2, "layers": 1}),
]
# Compositions interleave too freely for the executor (independent stages and replicas):
# their removals are counted with the checker alone.
COUNT_ONLY = [
    ("tp-pp", {"tp": 2, "pp": 2, "mb": 1, "layers": 2, "phase": "decode", "steps": 1}),
    ("tp-pp-dp", {"tp": 1, "pp": 2, "dp": 2, "mb": 1, "layers": 2, "phase": "decode", "steps": 2}),
]


MAX_STATES = 200_000


@dataclass(frozen=True)
class Mutant:
    what: str  # "wait", "collective", "p2p"
    label: str
    schedule: Schedule


def without(s: Schedule, ids: set[int], tag: str) -> Schedule:
    doc = schedule_to_dict(s)
    for r in s.ranks:
        doc["ranks"][str(r)] = [d for op, d in zip(s.by_rank[r], doc["ranks"][str(r)], strict=True)
                                if op.id not in ids]
    doc["name"] = f"{s.name}-{tag}"
    return schedule_from_dict(doc, f"<mutant {tag}>")


def mutants(s: Schedule) -> list[Mutant]:
    m = match(s)
    out: list[Mutant] = []
    for op in s.ops:
        if op.kind is Kind.WAIT:
            out.append(Mutant("wait", s.label(op), without(s, {op.id}, f"w{op.id}")))
    for inst in m.instances:
        out.append(Mutant("collective", s.label(inst.ops[0]), without(s, set(inst.ops), f"c{inst.ops[0]}")))
    for snd, rcv in m.pairs:
        out.append(Mutant("p2p", s.label(snd), without(s, {snd, rcv}, f"p{snd}")))
    return out


@dataclass
class Tally:
    model: str
    ops: int
    kinds: dict[str, list[int]]  # what -> [flagged, harmless]
    disagreements: list[str]
    unexplored: int = 0  # mutants with too many states for the executor


def run_model(name: str, params: dict[str, object], executor: bool = True) -> Tally:
    base = build(name, {k: str(v) for k, v in params.items()}, None)
    assert check_schedule(base).exit_code == 0
    t = Tally(f"{name} {params}", base.size, {"wait": [0, 0], "collective": [0, 0], "p2p": [0, 0]}, [])
    for mu in mutants(base):
        rep = check_schedule(mu.schedule)
        engine = {r.property: r.verdict for r in rep.results}
        flagged = any(v is not Verdict.PROVED for v in engine.values())
        t.kinds[mu.what][0 if flagged else 1] += 1
        if not executor:
            t.unexplored += 1
            continue
        try:
            ex = explore(mu.schedule, max_states=MAX_STATES)
        except StateLimitExceeded:
            t.unexplored += 1
            continue
        for prop in PROPERTIES:
            found = ex.violated[prop]
            if found is None:  # not decided (matching failed): the engine says unknown, not proved
                if engine[prop] is Verdict.PROVED:
                    t.disagreements.append(f"{mu.label}: {prop} proved but undecided by the executor")
                continue
            if found != (engine[prop] is Verdict.VIOLATED):
                t.disagreements.append(f"removing {mu.what} {mu.label}: {prop} engine={engine[prop]}"
                                       f" executor={'violated' if found else 'holds'}")
        if ex.violated["dataflow"] and not flagged:
            t.disagreements.append(f"removing {mu.label} changes a read's value but is not flagged")
    return t


@pytest.mark.parametrize(("name", "params"), FAST, ids=[f"{n}-{i}" for i, (n, _) in enumerate(FAST)])
def test_every_value_changing_removal_is_flagged(name: str, params: dict[str, object]) -> None:
    t = run_model(name, params)
    assert not t.disagreements, "\n".join(t.disagreements[:5])
    assert sum(f for f, _ in t.kinds.values()) > 0


@pytest.mark.slow
@pytest.mark.parametrize(("name", "params"), SLOW, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SLOW)])
def test_every_value_changing_removal_is_flagged_larger(name: str, params: dict[str, object]) -> None:
    t = run_model(name, params)
    assert not t.disagreements, "\n".join(t.disagreements[:5])


@pytest.mark.slow
@pytest.mark.parametrize(("name", "params"), COUNT_ONLY, ids=[n for n, _ in COUNT_ONLY])
def test_compositions_flag_removals(name: str, params: dict[str, object]) -> None:
    t = run_model(name, params, executor=False)
    flagged = sum(f for f, _ in t.kinds.values())
    assert flagged >= 0.8 * sum(f + h for f, h in t.kinds.values())


# The faults of the runtime model v2, small enough for the executor (crossed-comm-order is not: its
# verdict is pinned by tests/test_models.py and proofs/): engine and executor agree on every property.
V2_FAULTS = [
    ("pp", {"pp": 2, "mb": 2, "layers": 2, "phase": "decode", "steps": 2}, "single-stream-p2p"),
    ("pp", {"pp": 2, "mb": 2, "layers": 2, "phase": "decode", "steps": 2}, "one-comm-two-streams"),
    ("pp", {"pp": 2, "mb": 2, "layers": 2, "phase": "prefill"}, "relies-on-rendezvous"),
    ("pp", {"pp": 2, "mb": 2, "layers": 2, "phase": "decode", "steps": 1}, "recv-order-swapped"),
    ("pp", {"pp": 2, "mb": 1, "layers": 2, "phase": "decode", "steps": 2}, "no-send-wait"),
    ("ep", {"ep": 2, "layers": 1, "phase": "prefill", "a2a": "p2p"}, None),
    ("ep", {"ep": 2, "layers": 1, "phase": "prefill", "a2a": "p2p"}, "no-batch"),
]


@pytest.mark.parametrize(("name", "params", "fault"), V2_FAULTS, ids=[f"{n}-{f}" for n, _, f in V2_FAULTS])
def test_v2_faults_agree_with_the_executor(name: str, params: dict[str, object], fault: str | None) -> None:
    s = build(name, {k: str(v) for k, v in params.items()}, fault)
    engine = {r.property: r.verdict for r in check_schedule(s).results}
    ex = explore(s, max_states=MAX_STATES)
    for prop in PROPERTIES:
        found = ex.violated[prop]
        if found is None:
            assert engine[prop] is not Verdict.PROVED, prop
        else:
            assert found == (engine[prop] is Verdict.VIOLATED), prop


def test_mutants_stay_valid_and_matched() -> None:
    s = build("tp", {"tp": "2", "layers": "1", "phase": "prefill"}, None)
    ms = mutants(s)
    assert {m.what for m in ms} == {"wait", "collective"}
    for mu in ms:
        assert not match(mu.schedule).problems, mu.label
        assert mu.schedule.size < s.size


def main() -> None:
    print(f"{'model':<78} {'ops':>5} {'waits f/h':>10} {'colls f/h':>10} {'p2p f/h':>8} disagree unexplored")
    rows = []
    for n, p in FAST + SLOW:
        rows.append(run_model(n, p))
        _line(rows[-1])
    for n, p in COUNT_ONLY:
        rows.append(run_model(n, p, executor=False))
        _line(rows[-1])
    tot = {"wait": [0, 0], "collective": [0, 0], "p2p": [0, 0]}
    for t in rows:
        for key in tot:
            tot[key][0] += t.kinds[key][0]
            tot[key][1] += t.kinds[key][1]
    print(f"total: waits {tot['wait'][0]} flagged / {tot['wait'][1]} harmless, collectives"
          f" {tot['collective'][0]}/{tot['collective'][1]}, p2p pairs {tot['p2p'][0]}/{tot['p2p'][1]}")


def _line(t: Tally) -> None:
    k = t.kinds
    print(f"{t.model:<78} {t.ops:>5} {k['wait'][0]:>5}/{k['wait'][1]:<4} {k['collective'][0]:>5}/"
          f"{k['collective'][1]:<4} {k['p2p'][0]:>3}/{k['p2p'][1]:<4} {len(t.disagreements):>8} {t.unexplored:>10}",
          flush=True)
    for d in t.disagreements[:3]:
        print("    ", d)


if __name__ == "__main__":
    sys.exit(main())
