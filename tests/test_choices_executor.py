"""The choice engine against the operational executor: for small random
choice schedules, the executor explores the selection of every assignment
(it shares no code with the engine, and knows nothing of choices or of the
reduction); the symbolic method's verdicts must agree with what it finds:

* ``proved`` by the engine: no selection has a run that violates the property;
* ``violated``: the counterexample's selection has such a run.

A ``proved`` where the executor finds a violating run is the worst defect the
project can have: the test fails with the schedule, the property and the
assignment.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from strategies_choices import choice_schedules

from syncproof.engine import check_schedule
from syncproof.executor import StateLimitExceeded, explore
from syncproof.ir import Schedule, dumps
from syncproof.ir.choices import all_assignments
from syncproof.ir.select import select
from syncproof.result import Verdict

PROPS = ("matching", "deadlock", "dataflow", "race", "phase")


def _executor_verdicts(s: Schedule) -> dict[str, tuple[bool | None, str]]:
    """Per property: does some assignment's selection have a violating run
    (None: some selection leaves it undecided, none violates), and under
    which assignment."""
    out: dict[str, tuple[bool | None, str]] = {p: (False, "") for p in PROPS}
    for a in all_assignments(s.choices, s.ranks):
        got = explore(select(s, a).schedule, max_states=20_000).violated
        for p in PROPS:
            v = got.get(p)
            if v is True and out[p][0] is not True:
                out[p] = (True, a.text())
            elif v is None and out[p][0] is False:
                out[p] = (None, a.text())
    return out


def _compare(s: Schedule) -> list[str]:
    try:
        ex = _executor_verdicts(s)
    except StateLimitExceeded:
        return []
    rep = check_schedule(s, choices="symbolic", max_cex=1)
    problems: list[str] = []
    for r in rep.results:
        found, where = ex[r.property]
        if r.verdict is Verdict.PROVED and found is True:
            problems.append(f"{r.property}: the engine proves it ({rep.decided_by}) but the executor finds a"
                            f" violating run under {where}")
        if r.verdict is Verdict.PROVED and found is None:
            problems.append(f"{r.property}: the engine proves it but under {where} the executor cannot decide it")
        if r.verdict is Verdict.VIOLATED:
            assert r.selection is not None
            got = explore(r.selection, max_states=20_000).violated.get(r.property)
            if got is not True:
                problems.append(f"{r.property}: the engine's counterexample (under {r.assignment}) is not a"
                                f" violating run for the executor ({got})")
    return problems


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
@given(choice_schedules(max_space=64, max_ops=12, max_ranks=3))
def test_symbolic_verdicts_agree_with_the_executor(s: Schedule) -> None:
    problems = _compare(s)
    assert not problems, "\n".join(problems) + "\n" + dumps(s)


@pytest.mark.slow
@settings(max_examples=600, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
@given(choice_schedules(max_space=128, max_ops=16, max_ranks=4))
def test_symbolic_verdicts_agree_with_the_executor_many(s: Schedule) -> None:
    problems = _compare(s)
    assert not problems, "\n".join(problems) + "\n" + dumps(s)
