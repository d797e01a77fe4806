"""Schedules that once split the engines and the executor (found by the
helpers' fuzzing, the litmus work and hand checks): both engines and the
operational executor must give the same verdict on every property, and every
counterexample must replay."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncproof.engine.check import check_schedule
from syncproof.executor import explore
from syncproof.ir import load
from syncproof.result import Verdict

CASES = sorted((Path(__file__).parent / "regressions").glob("*.json"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_engines_and_executor_agree(path: Path) -> None:
    s = load(path)
    seen = explore(s).violated
    for engine in ("hybrid", "z3"):
        rep = check_schedule(s, engine=engine)
        for r in rep.results:
            assert r.verdict is not Verdict.UNKNOWN or seen[r.property] is None, (engine, r.property, r.reason)
            if seen[r.property] is not None:
                assert (r.verdict is Verdict.VIOLATED) == seen[r.property], (engine, r.property, r.reason)
            if r.counterexample is not None:
                assert r.counterexample.replayed, (engine, r.property, r.counterexample.replay_note)


def test_there_are_cases() -> None:
    assert len(CASES) >= 10
