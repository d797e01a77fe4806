"""Check a schedule with the engine and against the independent executor:
:func:`check_agreement` (returns what it found) and
:func:`assert_agrees_with_executor` (raises ``AssertionError`` on any
disagreement), for a hypothesis test of a user's own schedule generator.

The executor (``syncproof.executor``) simulates the runtime mechanism and
shares no code with the engine.  For every property:

* a **violation** must come with a counterexample that replays on the
  executor (for a schedule with choices: on the selection of the
  counterexample's assignment);
* a **proof** is confirmed by exploring every run on the executor (of every
  assignment's selection): no run may violate the property.  Exploration is
  exhaustive and exponential, so it is bounded (``max_states`` per schedule,
  ``max_assignments`` for choices); a proof it cannot confirm within the
  bound is listed as *unconfirmed*, never as confirmed;
* for a plain schedule the engine's verdict must also be the executor's
  (a property the executor decides is violated exactly when the engine says
  so; one it leaves undecided, after a matching violation, is unknown to the
  engine too), and with ``engines=("hybrid", "z3")`` both engines must agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import SyncproofError
from ..executor import StateLimitExceeded, explore, replay
from ..ir import Schedule, dumps
from ..ir.choices import all_assignments, space_size
from ..ir.select import select
from ..result import PROPERTIES, Report, Verdict


@dataclass(frozen=True)
class Agreement:
    """What :func:`check_agreement` found: the (first engine's) report, the
    properties whose verdict the executor confirmed and those it could not
    (exploration over its bound), and every disagreement, one sentence each."""

    report: Report
    confirmed: tuple[str, ...]
    unconfirmed: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_agreement(schedule: Schedule, *, engines: Iterable[str] = ("hybrid",), max_states: int = 20_000,
                    max_assignments: int = 64) -> Agreement:
    """Check ``schedule`` with each engine of ``engines`` and compare with the
    executor (see the module docstring); never raises for a disagreement."""
    from ..engine import check_schedule

    names = tuple(engines)
    if not names or any(e not in ("hybrid", "z3") for e in names):
        raise ValueError(f"engines must be drawn from 'hybrid' and 'z3', got {names!r}")
    reports = {e: check_schedule(schedule, engine=e) for e in names}
    problems: list[str] = []
    first = reports[names[0]]
    for e in names[1:]:
        for prop in PROPERTIES:
            a, b = first.result(prop), reports[e].result(prop)
            if a.verdict is not b.verdict:
                problems.append(f"{prop}: {names[0]} says {a.verdict.value} ({a.reason}), {e} says"
                                f" {b.verdict.value} ({b.reason})")
    if schedule.choices or any(op.choice is not None for op in schedule.ops):
        confirmed, unconfirmed = _choice_schedule(schedule, reports, max_states, max_assignments, problems)
    else:
        confirmed, unconfirmed = _plain_schedule(schedule, reports, max_states, problems)
    return Agreement(first, confirmed, unconfirmed, tuple(problems))


def assert_agrees_with_executor(schedule: Schedule, *, engines: Iterable[str] = ("hybrid",),
                                max_states: int = 20_000, max_assignments: int = 64) -> Agreement:
    """:func:`check_agreement`, raising ``AssertionError`` (with every
    problem and the schedule in the file format) when anything disagrees."""
    got = check_agreement(schedule, engines=engines, max_states=max_states, max_assignments=max_assignments)
    if got.problems:
        raise AssertionError("\n".join(got.problems) + "\nschedule:\n" + dumps(schedule))
    return got


def _replays(schedule: Schedule, engine: str, report: Report, problems: list[str]) -> list[str]:
    """Every violation has a counterexample that replays; returns the
    properties whose counterexample did."""
    ok: list[str] = []
    for res in report.results:
        if res.verdict is not Verdict.VIOLATED:
            continue
        cex = res.counterexample
        if cex is None:
            problems.append(f"{res.property}: {engine} says violated but gives no counterexample")
            continue
        where = schedule if res.selection is None else res.selection
        if not isinstance(where, Schedule):
            problems.append(f"{res.property}: {engine}'s violation names no selection to replay on")
            continue
        good, why = replay(where, cex)
        if good:
            ok.append(res.property)
        else:
            at = f" (under {res.assignment})" if res.assignment else ""
            problems.append(f"{res.property}: the {engine} counterexample{at} ({cex.sentence}) does not replay:"
                            f" {why}")
    return ok


def _plain_schedule(schedule: Schedule, reports: dict[str, Report], max_states: int,
                    problems: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    replayed: set[str] = set()
    for e, rep in reports.items():
        replayed.update(_replays(schedule, e, rep, problems))
    try:
        found = explore(schedule, max_states=max_states)
    except StateLimitExceeded:
        first = next(iter(reports.values()))
        rest = [r.property for r in first.results if r.property not in replayed]
        return tuple(sorted(replayed)), tuple(rest)
    confirmed: list[str] = []
    for e, rep in reports.items():
        for res in rep.results:
            mine = found.violated.get(res.property)
            if mine is None:
                if res.verdict is not Verdict.UNKNOWN:
                    problems.append(f"{res.property}: {e} says {res.verdict.value}, the executor leaves it"
                                    " undecided (matching violated or no run finishes)")
            elif res.verdict is Verdict.UNKNOWN:
                problems.append(f"{res.property}: {e} says unknown ({res.reason}), the executor says"
                                f" {'violated' if mine else 'holds'}")
            elif (res.verdict is Verdict.VIOLATED) != mine:
                why = found.witnesses.get(res.property, "no run violates it")
                problems.append(f"{res.property}: {e} says {res.verdict.value}, the executor says"
                                f" {'violated' if mine else 'holds'} ({why})")
            elif res.verdict is Verdict.PROVED and res.property not in confirmed:
                confirmed.append(res.property)
    return tuple(sorted(replayed | set(confirmed))), ()


def _choice_schedule(schedule: Schedule, reports: dict[str, Report], max_states: int, max_assignments: int,
                     problems: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    replayed: set[str] = set()
    for e, rep in reports.items():
        replayed.update(_replays(schedule, e, rep, problems))
    first = next(iter(reports.values()))
    proved = [r.property for r in first.results if r.verdict is Verdict.PROVED]
    if not proved:
        return tuple(sorted(replayed)), ()
    if space_size(schedule.choices, schedule.ranks) > max_assignments:
        return tuple(sorted(replayed)), tuple(proved)
    bad: dict[str, str] = {}
    undecided: dict[str, str] = {}
    try:
        for a in all_assignments(schedule.choices, schedule.ranks):
            try:
                sel = select(schedule, a).schedule
            except SyncproofError as exc:
                problems.append(f"the assignment {a.text()} selects no valid schedule: {exc}")
                continue
            got = explore(sel, max_states=max_states).violated
            for p in proved:
                if got.get(p) is True:
                    bad.setdefault(p, a.text())
                elif got.get(p) is None:
                    undecided.setdefault(p, a.text())
    except StateLimitExceeded:
        return tuple(sorted(replayed)), tuple(proved)
    for e, rep in reports.items():
        for res in rep.results:
            if res.verdict is Verdict.PROVED and res.property in bad:
                problems.append(f"{res.property}: {e} proves it, but under {bad[res.property]} the executor"
                                " finds a run that violates it")
            elif res.verdict is Verdict.PROVED and res.property in undecided:
                problems.append(f"{res.property}: {e} proves it, but under {undecided[res.property]} the"
                                " executor cannot decide it (matching violated or no run finishes)")
    confirmed = [p for p in proved if p not in bad and p not in undecided]
    return tuple(sorted(replayed | set(confirmed))), ()
