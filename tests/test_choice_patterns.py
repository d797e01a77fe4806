"""The five real patterns of issue 13, as bug/fix pairs through the choice
engine itself (``check_schedule`` on the choice schedule): each bug is found
with the assignment named and the rank-local choice that causes it, each fix
is proved for every assignment, by enumeration where the space is small and
by the symbolic method where it is not (the two must agree)."""

from __future__ import annotations

from typing import Any

import pytest

from syncproof.engine import check_schedule
from syncproof.ir.choices import space_size
from syncproof.models.registry import build
from syncproof.result import PROPERTIES, Verdict

# (pattern, model, params small enough to enumerate, params that force the symbolic method, fault, the
# rank-local choice the bug branches on)
PATTERNS: list[tuple[str, str, dict[str, Any], dict[str, Any], str, str]] = [
    ("an idle DP-attention rank skips the MLP-sync all_gather", "dpattn-ep-states",
     {"dp": 3, "layers": 1}, {"dp": 8, "layers": 1}, "idle-skips-mlp-sync", "state"),
    ("the overlap switch comes from the rank's own batch, not the gathered flags", "overlap-switch",
     {"dp": 3}, {"dp": 12}, "overlap-local", "state"),
    ("a grammar abort changes how many forward collectives one DP rank issues", "grammar-abort",
     {"dp": 2, "steps": 1}, {"dp": 10, "steps": 1}, "abort-local", "aborted"),
    ("each TP rank accepts its own number of speculative tokens", "spec-decode",
     {"tp": 2, "k": 3}, {"tp": 6, "k": 3}, "accept-local", "accept_0"),
    ("a chunked-MoE count vector patched only at the local rank's entry", "moe-routing",
     {"ep": 2, "dispatch": "agrs"}, {"ep": 4, "dispatch": "agrs"}, "counts-patched-local", "tokens"),
]
IDS = [p[1] + ":" + p[4] for p in PATTERNS]


def _method(rep: Any) -> str:
    return rep.decided_by.split(":", 1)[0]


@pytest.mark.parametrize("pattern", PATTERNS, ids=IDS)
@pytest.mark.parametrize("size", ["small", "large"])
def test_the_bug_is_found_with_its_assignment(pattern: tuple[Any, ...], size: str) -> None:
    _, model, small, large, fault, local = pattern
    s = build(model, small if size == "small" else large, fault)
    rep = check_schedule(s, choices="auto" if size == "small" else "symbolic")
    assert _method(rep) == ("enumeration" if size == "small" else "symbolic"), rep.decided_by
    m = rep.result("matching")
    assert m.verdict is Verdict.VIOLATED, (m.verdict, m.reason)
    assert m.assignment and "rank" in m.assignment
    assert m.selection is not None and m.counterexample is not None
    assert m.counterexample.replayed, m.counterexample.replay_note
    # the sentence names the rank-local choice the branch reads
    assert local.split("_")[0] in m.counterexample.sentence and "rank-local" in m.counterexample.sentence
    # the counterexample is a run of the selected schedule: its plain check fails the same way
    plain = check_schedule(m.selection, ("matching",))
    assert plain.result("matching").verdict is Verdict.VIOLATED


@pytest.mark.parametrize("pattern", PATTERNS, ids=IDS)
@pytest.mark.parametrize("size", ["small", "large"])
def test_the_fix_is_proved_for_every_assignment(pattern: tuple[Any, ...], size: str) -> None:
    _, model, small, large, _, _ = pattern
    s = build(model, small if size == "small" else large, None)
    rep = check_schedule(s, choices="auto" if size == "small" else "symbolic")
    assert _method(rep) == ("enumeration" if size == "small" else "symbolic"), rep.decided_by
    for r in rep.results:
        assert r.verdict is Verdict.PROVED, (r.property, r.verdict, r.reason, rep.decided_by)
    assert "assignments" in rep.results[0].reason


@pytest.mark.parametrize("pattern", PATTERNS, ids=IDS)
def test_enumeration_and_symbolic_agree_on_the_small_size(pattern: tuple[Any, ...]) -> None:
    _, model, small, _, fault, _ = pattern
    for f in (None, fault):
        s = build(model, small, f)
        assert space_size(s.choices, s.ranks) <= 4096
        en = check_schedule(s, choices="enumerate")
        sy = check_schedule(s, choices="symbolic")
        for a, b in zip(en.results, sy.results, strict=True):
            if b.verdict is Verdict.UNKNOWN:
                assert a.verdict is not Verdict.PROVED or b.reason, b.property
                continue
            assert a.verdict is b.verdict, (f, a.property, a.verdict, b.verdict, b.reason)


def test_a_128_rank_dp_ep_schedule_is_proved_for_every_state_of_every_rank() -> None:
    """Issue 13: a correct 128-rank DP+EP schedule with a rank-local state per
    rank, proved for all 3^128 assignments (the time is in the benchmark,
    ``syncproof bench --choices``, not asserted here)."""
    s = build("dpattn-ep-states", {"dp": 128, "layers": 1}, None)
    assert space_size(s.choices, s.ranks) == 3 ** 128
    rep = check_schedule(s, PROPERTIES)
    assert rep.decided_by.startswith("symbolic"), rep.decided_by
    assert [r.verdict for r in rep.results] == [Verdict.PROVED] * len(PROPERTIES), [
        (r.property, r.reason) for r in rep.results]
    bug = check_schedule(build("dpattn-ep-states", {"dp": 128, "layers": 1}, "idle-skips-mlp-sync"))
    m = bug.result("matching")
    assert m.verdict is Verdict.VIOLATED
    # one rank stands out: the others wait for it
    assert "wait for rank" in m.counterexample.sentence or "waits for rank" in m.counterexample.sentence  # type: ignore[union-attr]


def test_a_huge_range_is_never_listed_unknown_not_a_crash() -> None:
    """A job-wide choice over 10^11 values read by a guard: its values are not
    listed (a MemoryError before), so what cannot be decided is unknown."""
    from syncproof.engine import check_schedule
    from syncproof.ir import loads
    from syncproof.result import Verdict

    s = loads('{"syncproof": 2, "name": "bigrange", "groups": {"g": [0, 1]}, "buffers": {"x": []},'
              ' "choices": {"n": {"scope": "job", "range": [0, 100000000000]}},'
              ' "ranks": {"0": [{"op": "compute", "stream": "c", "name": "a", "writes": {"x": "A"},'
              ' "when": "n > 5"}], "1": [{"op": "compute", "stream": "c", "name": "b", "writes": {"x": "B"}}]}}')
    rep = check_schedule(s)
    got = {r.property: r for r in rep.results}
    assert got["matching"].verdict is Verdict.PROVED
    assert got["dataflow"].verdict is Verdict.UNKNOWN and "more than 4096" in got["dataflow"].reason
