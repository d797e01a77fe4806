"""Issue 13's growth benchmark at its smallest size: the correct DP+EP
schedule (idle ranks run a dummy forward) is proved for all 3^8 assignments,
the broken one (an idle rank skips the MLP-sync all_gather) is a matching
violation with the assignment that shows it."""

from __future__ import annotations

import pytest


def test_choices_growth_smoke() -> None:
    from syncproof.bench.choices import run_choices_growth

    rows = {row["broken"]: row for row in run_choices_growth((8,))}
    assert {row["shape"] for row in rows.values()} == {"dummy"}
    correct, broken = rows[False], rows[True]
    assert correct["ranks"] == broken["ranks"] == 8
    assert correct["assignments"] == broken["assignments"] == "3^8"
    assert correct["verdict"] == "proved", correct
    assert broken["verdict"].startswith("violated: matching"), broken
    assert broken["properties"]["matching"] == "violated"
    assert "state=idle" in broken["assignment"], broken["assignment"]
    assert correct["decided_by"] and broken["decided_by"]


def test_the_gathered_shape_covers_pairs_of_ranks_under_a_derived_value() -> None:
    """The other fix (skip the step together when no rank is busy): a derived
    value guards the collectives and every busy rank samples its token, so
    the reduction needs rows for pairs of ranks under that value."""
    from syncproof.bench.choices import run_choices_growth

    rows = {row["broken"]: row for row in run_choices_growth((8,), shapes=("gathered",))}
    assert rows[False]["verdict"] == "proved", rows[False]
    assert "reduction" in rows[False]["decided_by"], rows[False]["decided_by"]
    assert rows[True]["verdict"].startswith("violated: matching"), rows[True]


def test_generator_shapes() -> None:
    from syncproof.bench.choices import dp_ep_states
    from syncproof.ir.choices import space_size

    s = dp_ep_states(16)
    assert set(s.group_map) == {"dp", "ep0", "ep1"}
    assert space_size(s.choices, s.ranks) == 3 ** 16
    assert len(dp_ep_states(16, broken=True).ops) > len(s.ops)
    with pytest.raises(ValueError):
        dp_ep_states(12)
