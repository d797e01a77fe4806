"""Captured schedules against the operational executor (issue 15): the small
programs of ``test_capture_core``, bug and fix, captured on CPU; the
executor explores every interleaving of each captured schedule and must
find a violation exactly where the engine does.  (The examples under
``examples/pytorch/`` are too large to explore exhaustively; their
counterexamples are replayed on the executor instead, see
``test_capture_examples.py``.)"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from test_capture_core import async_all_reduce, freed_without_record_stream, pinned_refill, side_stream  # noqa: E402

import syncproof.capture as cap  # noqa: E402
from syncproof.engine import check_schedule  # noqa: E402
from syncproof.executor import StateLimitExceeded, explore  # noqa: E402
from syncproof.result import Verdict  # noqa: E402

PROGRAMS = [side_stream, freed_without_record_stream, pinned_refill, async_all_reduce]


@pytest.mark.parametrize("fix", [False, True], ids=["bug", "fix"])
@pytest.mark.parametrize("program", PROGRAMS, ids=[p.__name__ for p in PROGRAMS])
def test_the_executor_agrees_with_the_engine_on_captured_schedules(program: object, fix: bool) -> None:
    world = 2 if program is async_all_reduce else 1
    s = cap.capture(program, world, fix)  # type: ignore[arg-type]
    rep = check_schedule(s)
    try:
        found = explore(s, max_states=200_000).violated
    except StateLimitExceeded:
        pytest.skip(f"{len(s.ops)} ops: too many states to explore")
    for r in rep.results:
        want = r.verdict is Verdict.VIOLATED
        assert found.get(r.property) is want, (r.property, r.verdict, found)
