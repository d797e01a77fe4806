"""The two ways of checking a choice schedule for every assignment against each
other and against references computed here (issue 13, DESIGN.md section 2c).

For random small choice schedules (``strategies_choices.choice_schedules``,
at most 200 assignments):

* the **reference**: every assignment (``all_assignments``) selected
  (``select``) and checked by the plain engine, here in the test; a property
  is violated when some selection violates it, unknown when none does and
  some selection leaves it unknown, proved otherwise.  And for matching a
  second, engine-free reference: ``semantics.matching.match`` of every
  selection.
* ``check_schedule(s, choices="enumerate")`` gives the reference's verdict on
  every property;
* ``choices="symbolic"``, and the symbolic method with its fallback to
  enumeration turned off (``FALLBACK_ENUM_LIMIT = 0``: what it answers on a
  space too large to enumerate, so the reduction itself is what is tested),
  agree with the reference on every property they decide (a ``proved`` where
  the reference has a violation is the worst bug), and on matching with the
  engine-free reference;
* every violated result names its ``assignment`` (``Assignment.text()``)
  and its ``assignment_json`` selects exactly its ``selection`` (a plain
  schedule), on which the plain engine finds the property violated too; its
  counterexample replayed;
* the reduction is exercised: over a fixed set of draws, the pure symbolic
  method decides most (schedule, property) pairs.

On a failure the schedule is printed (``syncproof.ir.loads`` reads it back);
with ``SYNCPROOF_CHOICE_DISAGREEMENTS=<dir>`` set it is also written to
``<dir>/<test>.json`` (what disagreed to ``<dir>/<test>.txt``), overwritten at
every failing call, so that after shrinking the file holds the minimal case.
Minimal cases are kept in ``tests/regressions/choices/`` and rechecked by
``test_regression``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, given, note, settings
from strategies_choices import choice_schedules

from syncproof.ir import Schedule, dumps, load
from syncproof.ir.choices import Assignment, all_assignments
from syncproof.ir.select import select
from syncproof.result import PROPERTIES, PropertyResult, Report, Verdict
from syncproof.semantics.matching import match

try:
    from syncproof.engine import check_schedule
    from syncproof.engine import choices as engine_choices
except ImportError:  # the engine is not there yet
    pytest.skip("syncproof.engine.choices is not available", allow_module_level=True)

DEFAULT_EXAMPLES = 100
SLOW_EXAMPLES = 1000
REGRESSIONS = Path(__file__).parent / "regressions" / "choices"
CASES = sorted(REGRESSIONS.glob("*.json"))
# regression cases whose bug is not fixed yet: file stem -> what is wrong (a strict xfail each)
KNOWN: dict[str, str] = {}  # none open; symbolic-derived-guard-keyerror (a KeyError in _Symbolic._assignment) is fixed


# ---------------------------------------------------------------- references
def reference(s: Schedule) -> dict[str, tuple[Verdict, str]]:
    """Every assignment checked by the plain engine: per property the verdict
    and the first assignment that violates it (or leaves it unknown)."""
    out: dict[str, tuple[Verdict, str]] = {p: (Verdict.PROVED, "") for p in PROPERTIES}
    for a in all_assignments(s.choices, s.ranks):
        rep = check_schedule(select(s, a).schedule)
        for r in rep.results:
            have = out[r.property][0]
            if r.verdict is Verdict.VIOLATED and have is not Verdict.VIOLATED:
                out[r.property] = (Verdict.VIOLATED, a.text())
            elif r.verdict is Verdict.UNKNOWN and have is Verdict.PROVED:
                out[r.property] = (Verdict.UNKNOWN, a.text())
    return out


def mismatching_assignment(s: Schedule) -> Assignment | None:
    """The first assignment whose selection does not match (semantics only,
    no engine), or None."""
    for a in all_assignments(s.choices, s.ranks):
        if match(select(s, a).schedule).problems:
            return a
    return None


def assignment_of(res: PropertyResult) -> Assignment:
    """The Assignment a result's ``assignment_json`` describes."""
    vals: list[tuple[tuple[str, Any], Any]] = []
    for d in res.assignment_json:
        owner = d["rank"] if "rank" in d else d.get("group")
        v = d["value"]
        vals.append(((d["choice"], owner), tuple(v) if isinstance(v, list) else v))
    return Assignment(tuple(vals))


@contextlib.contextmanager
def no_fallback() -> Iterator[None]:
    """The symbolic method as on a space too large to enumerate: where its
    reduction does not apply it answers unknown (instead of enumerating)."""
    old = engine_choices.FALLBACK_ENUM_LIMIT
    engine_choices.FALLBACK_ENUM_LIMIT = 0
    try:
        yield
    finally:
        engine_choices.FALLBACK_ENUM_LIMIT = old


def reports(s: Schedule) -> tuple[dict[str, Report], list[str]]:
    """The report of each method ("reduction": symbolic without its
    fallback), and the methods that raised instead (as problem lines)."""
    out: dict[str, Report] = {}
    crashed: list[str] = []
    for method, how, fallback in (("enumerate", "enumerate", True), ("symbolic", "symbolic", True),
                                  ("reduction", "symbolic", False)):
        try:
            with contextlib.nullcontext() if fallback else no_fallback():
                out[method] = check_schedule(s, choices=how)
        except Exception as exc:  # a crash is a finding: reported with the schedule, not raised
            crashed.append(f"{method} raised {type(exc).__name__}: {exc}")
    return out, crashed


# ---------------------------------------------------------------- the comparison
def witness_problems(s: Schedule, method: str, res: PropertyResult) -> list[str]:
    """What is wrong with a violated result's assignment, selection and counterexample."""
    p = res.property
    out: list[str] = []
    if not res.assignment:
        out.append(f"{p}: {method} says violated but names no assignment")
    sel = res.selection
    if not isinstance(sel, Schedule):
        return out + [f"{p}: {method} says violated but its selection is {type(sel).__name__}, not a Schedule"]
    if sel.choices or any(op.choice is not None for op in sel.ops):
        out.append(f"{p}: {method}'s selection still has choices")
    try:
        a = assignment_of(res)
        again = select(s, a).schedule
    except Exception as exc:  # a broken assignment_json: reported, not raised
        return out + [f"{p}: {method}'s assignment_json {res.assignment_json!r} does not select: {exc}"]
    if a.text() != res.assignment:
        out.append(f"{p}: {method}'s assignment text {res.assignment!r} is not its assignment_json's"
                   f" ({a.text()!r})")
    if dumps(again) != dumps(sel):
        out.append(f"{p}: {method}'s selection is not what its assignment ({a.text()}) selects")
    plain = check_schedule(sel, [p]).result(p)
    if plain.verdict is not Verdict.VIOLATED:
        out.append(f"{p}: {method} says violated under {res.assignment}, the plain engine on that selection says"
                   f" {plain.verdict} ({plain.reason})")
    cex = res.counterexample
    if cex is None:
        out.append(f"{p}: {method} says violated but gives no counterexample")
    elif not cex.replayed:
        out.append(f"{p}: {method}'s counterexample under {res.assignment} did not replay ({cex.replay_note})")
    return out


def disagreements(s: Schedule, stats: Counter[str] | None = None) -> list[str]:
    """Every way the methods and the references disagree on ``s``."""
    ref = reference(s)
    bad = mismatching_assignment(s)
    reps, problems = reports(s)
    for prop in PROPERTIES:
        want, where = ref[prop]
        e = reps["enumerate"].result(prop) if "enumerate" in reps else None
        if e is not None and e.verdict is not want:
            problems.append(f"{prop}: enumerate says {e.verdict} ({e.reason}), the reference says {want}"
                            + (f" under {where}" if where else ""))
        for method in ("symbolic", "reduction"):
            if method not in reps:
                continue
            r = reps[method].result(prop)
            if stats is not None:
                stats[f"{method} {r.verdict}"] += 1
            if r.verdict is Verdict.UNKNOWN:
                continue
            if r.verdict is not want:
                worst = " [PROVED A VIOLATED PROPERTY]" if r.verdict is Verdict.PROVED and \
                    want is Verdict.VIOLATED else ""
                problems.append(f"{prop}: {method} says {r.verdict} ({r.reason}), the reference says {want}"
                                + (f" under {where}" if where else "") + worst)
        if prop == "matching":
            for method in ("enumerate", "symbolic", "reduction"):
                if method not in reps:
                    continue
                r = reps[method].result(prop)
                if r.verdict is Verdict.UNKNOWN:
                    continue
                if (r.verdict is Verdict.VIOLATED) != (bad is not None):
                    problems.append(f"matching: {method} says {r.verdict}, but the selections' matching"
                                    + (f" fails under {bad.text()}" if bad is not None else " holds everywhere"))
    for method, rep in reps.items():
        for r in rep.results:
            if r.verdict is Verdict.VIOLATED:
                problems += witness_problems(s, method, r)
        if stats is not None:
            stats[f"{method} decided by {rep.decided_by.split(':')[0]}"] += 1
            if method == "reduction" and "reduction:" in rep.decided_by:
                stats["reduction applied"] += 1
    return problems


def _save(name: str, text: str, problems: list[str]) -> None:
    where = os.environ.get("SYNCPROOF_CHOICE_DISAGREEMENTS")
    if not where:
        return
    d = Path(where)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.json").write_text(text)
    (d / f"{name}.txt").write_text("\n".join(problems) + "\n")


# Bugs found by this file and not fixed yet: (name, what is wrong, which problem lines it explains).  The
# random runs tolerate their lines (and count them as events); each has a minimal case in KNOWN above.
KNOWN_BUGS: tuple[tuple[str, str, Callable[[str], bool]], ...] = ()


def unexplained(problems: list[str]) -> list[str]:
    left = []
    for p in problems:
        bug = next((name for name, _, applies in KNOWN_BUGS if applies(p)), None)
        if bug is None:
            left.append(p)
        else:
            event(f"known bug: {bug}")
    return left


def check_agreement(s: Schedule, name: str) -> None:
    text = dumps(s)
    note(text)
    problems = disagreements(s)
    if problems:
        _save(name, text, problems)
    left = unexplained(problems)
    assert not left, "\n".join(left) + "\nschedule:\n" + text


# ---------------------------------------------------------------- the tests
@settings(max_examples=DEFAULT_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(s=choice_schedules())
def test_methods_agree_with_the_reference(s: Schedule) -> None:
    check_agreement(s, "default")


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(s=choice_schedules())
def test_methods_agree_with_the_reference_many(s: Schedule) -> None:
    check_agreement(s, "many")


def _collect(n: int) -> tuple[Counter[str], Counter[str]]:
    """Over ``n`` derandomized draws: the verdicts of each method and the
    references (per (schedule, property)), and what decided each report."""
    stats: Counter[str] = Counter()
    ref_stats: Counter[str] = Counter()

    @settings(max_examples=n, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(s=choice_schedules())
    def run(s: Schedule) -> None:
        ref_stats["schedules"] += 1
        for prop, (v, _) in reference(s).items():
            ref_stats[f"{prop} {v}"] += 1
        try:
            with no_fallback():
                rep = check_schedule(s, choices="symbolic")
        except Exception as exc:  # a known crash (KNOWN_BUGS): counted, the rest is for the agreement test
            stats[f"crashed {type(exc).__name__}"] += 1
            return
        for r in rep.results:
            stats[f"{r.property} {r.verdict}"] += 1
            stats[f"all {r.verdict}"] += 1
        stats["reduction applied" if "reduction:" in rep.decided_by else
              "diverged" if rep.result("matching").verdict is Verdict.VIOLATED else "reduction refused"] += 1

    run()
    return stats, ref_stats


# the pure symbolic method (no fallback) decides at least this share of (schedule, property) pairs
MIN_DECIDED_SHARE = 0.6


def test_the_reduction_is_exercised() -> None:
    """The generator gives both verdicts of every property in the reference,
    and the symbolic method without its fallback decides most of them: the
    reduction applies to a good share of the schedules (not only the
    divergent ones, decided by z3 alone)."""
    stats, ref = _collect(60)
    for prop in PROPERTIES:
        assert ref[f"{prop} {Verdict.VIOLATED}"] >= 1, (prop, ref)
        assert ref[f"{prop} {Verdict.PROVED}"] >= 1, (prop, ref)
    total = sum(stats[f"all {v}"] for v in Verdict)
    decided = total - stats[f"all {Verdict.UNKNOWN}"]
    assert decided >= MIN_DECIDED_SHARE * total, (stats, ref)
    assert stats["reduction applied"] >= 10, stats
    assert stats["diverged"] >= 5, stats


def test_the_comparison_reports_what_it_should() -> None:
    """The comparison is not vacuous: a result with a wrong verdict, no
    assignment, a selection of another assignment, or no counterexample is
    each reported."""
    from dataclasses import replace

    from syncproof.ir import ScheduleBuilder

    b = ScheduleBuilder("diverge")
    b.group("all", [0, 1])
    b.choice("state", scope="rank", values=["idle", "decode"])
    for r in (0, 1):
        b.rank(r).all_reduce("all", stream="s", when="state == decode")
    s = b.build()
    rep = check_schedule(s, choices="enumerate")
    m = rep.result("matching")
    assert m.verdict is Verdict.VIOLATED
    assert witness_problems(s, "enumerate", m) == []
    assert any("names no assignment" in p for p in witness_problems(s, "x", replace(m, assignment="")))
    assert any("no counterexample" in p for p in witness_problems(s, "x", replace(m, counterexample=None)))
    other = next(a for a in all_assignments(s.choices, s.ranks) if not match(select(s, a).schedule).problems)
    wrong = replace(m, assignment_json=tuple(other.to_json()))
    assert any("is not its assignment_json's" in p for p in witness_problems(s, "x", wrong))
    moved = replace(m, selection=select(s, other).schedule)
    got = witness_problems(s, "x", moved)
    assert any("is not what its assignment" in p for p in got) and any("the plain engine" in p for p in got)
    assert mismatching_assignment(s) is not None


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem, marks=[pytest.mark.xfail(strict=True,
                                  reason=KNOWN[p.stem])] if p.stem in KNOWN else []) for p in CASES])
def test_regression(path: Path) -> None:
    """The minimal cases found by this file: every method agrees with the references."""
    s = load(path)
    problems = disagreements(s)
    assert not problems, "\n".join(problems)


def test_default_run_is_fast_enough() -> None:
    """A sample of the default draws checks in well under the default run's budget (about 30 s for 100)."""
    t0 = time.perf_counter()
    n = [0]

    @settings(max_examples=10, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(s=choice_schedules())
    def run(s: Schedule) -> None:
        n[0] += 1
        disagreements(s)

    run()
    assert (time.perf_counter() - t0) / max(n[0], 1) < 1.0
