"""The public ``syncproof.strategies``: it needs hypothesis and says so, the
core never imports it, the tests' strategies are the same objects, the
strategies draw what they promise, the agreement helper finds what it must
(and is not vacuous), and the example of docs/strategies.md runs."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import strategies as test_strategies
import strategies_choices as test_strategies_choices
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import syncproof.strategies as public
from syncproof.engine import check_schedule
from syncproof.ir import Kind, ScheduleBuilder, dumps, loads
from syncproof.result import Run, Verdict
from syncproof.strategies import (
    FEATURES,
    ModelCase,
    assert_agrees_with_executor,
    buggy_schedules,
    check_agreement,
    model_cases,
    model_schedules,
    schedules,
)

ROOT = Path(__file__).resolve().parent.parent
QUICK = settings(max_examples=8, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_without_hypothesis_the_import_says_what_to_install() -> None:
    proc = _python("import sys; sys.modules['hypothesis'] = None\n"
                   "try:\n    import syncproof.strategies\nexcept ImportError as e:\n    print('ERR', e)\n")
    assert proc.returncode == 0, proc.stderr
    assert "ERR syncproof.strategies needs hypothesis" in proc.stdout and "pip install 'syncproof[test]'" in proc.stdout


def test_the_core_never_imports_hypothesis() -> None:
    proc = _python("import sys, contextlib, io\n"
                   "import syncproof, syncproof.cli, syncproof.engine, syncproof.executor, syncproof.fanout\n"
                   "from syncproof.models import registry\n"
                   "with contextlib.redirect_stdout(io.StringIO()):\n"
                   "    syncproof.cli.main(['sweep', '--model', 'tp', '--set', 'tp=1', '--set', 'layers=1'])\n"
                   "print(sorted(m for m in sys.modules if m.split('.')[0] == 'hypothesis'))\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    outside = [p for p in (ROOT / "formal").rglob("*.py") if "strategies" not in p.parts
               and re.search(r"^\s*(import|from) hypothesis", p.read_text(encoding="utf-8"), re.M)]
    assert outside == []


def test_the_tests_strategies_are_the_public_ones() -> None:
    assert test_strategies.schedules is public.schedules
    assert test_strategies.ALL_COLLECTIVE_KINDS is public.ALL_COLLECTIVE_KINDS
    assert test_strategies_choices.choice_schedules is public.choice_schedules
    for name in public.__all__:
        assert getattr(public, name) is not None, name


_KINDS_OF = {"compute": {Kind.COMPUTE}, "event": {Kind.RECORD, Kind.WAIT}}


@pytest.mark.parametrize("features", [("compute",), ("compute", "event"), ("event",)])
def test_features_restrict_what_is_drawn(features: tuple[str, ...]) -> None:
    allowed = set().union(*(_KINDS_OF[f] for f in features))

    @QUICK
    @given(schedules(features=features))
    def one(s: object) -> None:
        from syncproof.ir import Schedule

        assert isinstance(s, Schedule)
        kinds = {op.kind for op in s.ops}
        assert kinds <= allowed, (features, kinds)

    one()


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_bad_strategy_arguments_are_hypothesis_errors() -> None:
    for bad in ("compute", (), ("nope",)):
        with pytest.raises(InvalidArgument):
            schedules(features=bad).example()  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        model_cases(models=["no-such-model"]).example()
    assert set(FEATURES) >= {"compute", "p2p", "collective", "put"}


@QUICK
@given(buggy_schedules())
def test_buggy_schedules_break_what_their_fault_says(case: ModelCase) -> None:
    assert case.fault is not None and case.breaks is not None
    rep = check_schedule(case.schedule, [case.breaks])
    assert rep.result(case.breaks).verdict is Verdict.VIOLATED, case.command
    assert case.command.startswith(f"syncproof check --model {case.model}") and f"--fault {case.fault}" in case.command


@QUICK
@given(model_cases(models=["tp", "pp"], fault=False, spread=2))
def test_model_cases_without_faults(case: ModelCase) -> None:
    assert case.fault is None and case.breaks is None and case.model in ("tp", "pp")
    assert loads(dumps(case.schedule)).size == case.schedule.size
    assert dict(case.params).keys() <= {"tp", "pp", "mb", "layers", "phase", "steps", "prompt", "oversync"}


@QUICK
@given(model_schedules(["dp"]))
def test_model_schedules_are_schedules(s: object) -> None:
    from syncproof.ir import Schedule

    assert isinstance(s, Schedule) and s.source == "model dp"


def _crossed() -> object:
    b = ScheduleBuilder("crossed", p2p="rendezvous")
    for me, other in ((0, 1), (1, 0)):
        b.rank(me).send(other, stream="s").recv(other, stream="s")
    return b.build()


def test_agreement_on_a_hang_and_on_its_fix() -> None:
    from syncproof.ir import Schedule

    bad = _crossed()
    assert isinstance(bad, Schedule)
    got = assert_agrees_with_executor(bad, engines=("hybrid", "z3"))
    assert got.report.result("deadlock").verdict is Verdict.VIOLATED
    assert "deadlock" in got.confirmed and got.unconfirmed == ()
    b = ScheduleBuilder("ordered", p2p="rendezvous")
    b.rank(0).send(1, stream="s").recv(1, stream="s")
    b.rank(1).recv(0, stream="s").send(0, stream="s")
    good = assert_agrees_with_executor(b.build())
    assert good.report.exit_code == 0 and set(good.confirmed) == {"matching", "deadlock", "dataflow", "race", "phase"}


def test_agreement_is_not_vacuous(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flipped verdict, a counterexample that does not replay and a missing
    counterexample are each reported; a schedule too big to explore leaves its
    proofs unconfirmed, not confirmed."""
    import syncproof.engine as engine
    from syncproof.ir import Schedule

    bad = _crossed()
    assert isinstance(bad, Schedule)
    real = engine.check_schedule

    def lying(s: Schedule, *args: object, **kw: object) -> object:
        rep = real(s, *args, **kw)  # type: ignore[arg-type]
        return replace(rep, results=tuple(replace(r, verdict=Verdict.PROVED, counterexample=None)
                                          if r.property == "deadlock" else r for r in rep.results))

    monkeypatch.setattr(engine, "check_schedule", lying)
    got = check_agreement(bad)
    assert not got.ok and any(p.startswith("deadlock: hybrid says proved, the executor says violated")
                              for p in got.problems)
    with pytest.raises(AssertionError, match="(?s)deadlock: hybrid says proved.*schedule:"):
        assert_agrees_with_executor(bad)

    def no_cex(s: Schedule, *args: object, **kw: object) -> object:
        rep = real(s, *args, **kw)  # type: ignore[arg-type]
        return replace(rep, results=tuple(replace(r, counterexample=None) for r in rep.results))

    monkeypatch.setattr(engine, "check_schedule", no_cex)
    assert "deadlock: hybrid says violated but gives no counterexample" in check_agreement(bad).problems

    def wrong_run(s: Schedule, *args: object, **kw: object) -> object:
        rep = real(s, *args, **kw)  # type: ignore[arg-type]
        res = rep.result("deadlock")
        assert res.counterexample is not None
        cex = replace(res.counterexample, run=Run((0, 0, 0, 0), (1, 1, 1, 1)))  # every op at once: not a run
        return replace(rep, results=tuple(replace(r, counterexample=cex) if r.property == "deadlock" else r
                                          for r in rep.results))

    monkeypatch.setattr(engine, "check_schedule", wrong_run)
    assert any("does not replay" in p for p in check_agreement(bad).problems)
    monkeypatch.setattr(engine, "check_schedule", real)
    b = ScheduleBuilder("wide")
    for r in (0, 1, 2):
        for i in range(6):
            b.rank(r).compute(f"k{i}", stream=f"s{i % 3}")
    wide = check_agreement(b.build(), max_states=5)
    assert wide.ok and wide.confirmed == () and set(wide.unconfirmed) == {"matching", "deadlock", "dataflow",
                                                                          "race", "phase"}


@settings(max_examples=8, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
@given(st.one_of(schedules(), public.choice_schedules(max_space=16, max_ops=8, max_ranks=3)))
def test_the_helper_agrees_on_the_project_strategies(s: object) -> None:
    from syncproof.ir import Schedule

    assert isinstance(s, Schedule)
    assert_agrees_with_executor(s)


def test_the_docs_example_runs() -> None:
    text = (ROOT / "docs" / "strategies.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    exec(compile(blocks[0], "docs/strategies.md", "exec"), {"__name__": "docs_strategies"})  # noqa: S102
