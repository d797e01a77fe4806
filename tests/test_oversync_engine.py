"""Issue 14's done-when on the bug/fix/over-synchronized triples of
``oversync_cases``: ``find_redundant`` names exactly the syncs that are
redundant alone, each claim confirmed by re-check, and ``minimize`` returns a
proved schedule with no more syncs than the hand-minimal set."""

from __future__ import annotations

import pytest
from oversync_cases import CASES, Case

from syncproof.engine import check_schedule
from syncproof.engine.redundant import find_redundant, minimize
from syncproof.result import Verdict


def _labels(case: Case, labels: set[str]) -> set[str]:
    """A barrier instance is one sync: name it by its first member's label."""
    out = set(labels)
    for inst in case.barriers:
        if inst & out:
            out -= inst
            out.add(min(inst))
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_redundant_names_exactly_the_unneeded_syncs(case: Case) -> None:
    s = case.build("oversync")
    rr = find_redundant(s)
    got: set[str] = set()
    for v in rr.redundant:
        assert v.confirmed, v
        got |= {s.label(o) for o in v.sync.ops}
    assert _labels(case, got) == _labels(case, set(case.redundant)), (sorted(got), sorted(case.redundant))
    for v in rr.verdicts:
        if not v.redundant:
            assert v.needed_for and v.why, v
    # the fix has no redundant sync that the oversync added
    assert len(find_redundant(case.build("fix")).redundant) < len(rr.redundant)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_minimize_keeps_no_more_than_the_hand_minimal_set(case: Case) -> None:
    s = case.build("oversync")
    m = minimize(s)
    assert m.optimal
    assert len(m.kept) <= case.minimal_size, ([k.label for k in m.kept], case.minimal_size)
    assert all(r.verdict is Verdict.PROVED for r in m.report.results)
    # the written schedule stands alone: loaded, validated and proved from scratch
    again = check_schedule(m.schedule)
    assert all(r.verdict is Verdict.PROVED for r in again.results)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_bug_is_not_made_redundant(case: Case) -> None:
    """In the bug the property is violated: the report says so instead of
    judging syncs against it."""
    rr = find_redundant(case.build("bug"))
    assert case.breaks not in rr.proved
