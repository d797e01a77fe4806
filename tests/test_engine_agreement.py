"""The two engines agree, property for property, on the models and on the proofs suite.

``check_schedule(..., engine="hybrid")`` decides most obligations on the precedence graph;
``engine="z3"`` sends every obligation through the solver.  Each test below runs both on one schedule
and the same properties, and fails if, for some property,

* the verdicts differ (PROVED / VIOLATED / UNKNOWN);
* both say VIOLATED but a counterexample is missing or did not replay on the executor
  (``PropertyResult.counterexample.replayed``);
* both say UNKNOWN for a reason other than "not checked: ..." (matching failed or the schedule
  deadlocks, so no complete execution exists to check the other properties on);
* z3 gives up on one side only (a solver limit: "solver gave up ...") in the default run.  In the slow
  run that one is tolerated, and counted: each is a ``Z3GaveUp`` warning in pytest's warnings summary.
  No solver limit is set here, so none is expected.

Schedules: every model's default schedule and each of its named faults (ids ``tp:default``,
``tp:skip-allreduce``), and every non-parametric obligation of ``proofs/*.toml`` with the obligation's
parameters, fault and properties (ids ``proofs/tp.toml::tp8-decode8``).  An obligation that checks
exactly a model's default schedule shares its test (id ``kv:default=proofs/kv.toml::kv-default``).
Parametric obligations prove a family of sizes at once and are not schedules: they are left out.

Runtime model v2 settings.  The models are written with the schedule defaults (``p2p: "any"``,
``progress: "any"``): message and progress edges are *blocking* edges, counted for deadlock only.  So that
the other settings are compared on schedules of real size too, every model case of the default run (a
model's default or fault, not a proof obligation) is also checked with ``p2p: "rendezvous"`` (message
edges become data edges: every property sees them) and with ``p2p: "eager"`` + ``progress: "concurrent"``
(every blocking edge dropped): ids ``tp:default@rendezvous``, ``tp:default@eager+concurrent``.

Both engines run with ``max_cex=1``: a property is VIOLATED as soon as one counterexample is found, so
the verdict does not depend on ``max_cex``, and z3 is spared the search for further violations.

Cost.  The hybrid engine takes under 1.1 s on every schedule here; z3 alone is the cost.  With the z3 engine's
cone encoding (0.5.0; docs/semantics.md, "The z3 engine's encoding") both engines together took, measured on the
project's 2-core machine (shared, under load), 0.01-1.7 s per schedule up to 300 ops, 0.1-7.8 s from 300 to 600
ops, 0.1-6.1 s from 600 to 1,300 ops, and 0.5-26 s above (up to 15,732 ops; the slowest,
``proofs/ep.toml::ep8-4layers-decode8``, 4,536 ops, where reads have many writers of their value).  Every slow case
together took 137 s.  (With the whole-formula encoding of 0.2-0.4, z3 took up to 90 s from 175 ops on and did not
finish in 150-600 s on 29 of them, which were skipped.)  So:

* default run (``-m 'not slow'``): the schedules of at most ``DEFAULT_MAX_OPS`` = 300 ops (about 50 s with the v2
  settings variants).  Each test checks its schedule's size first, so a case that grows past the threshold fails
  until it is listed in ``SLOW_OPS``;
* ``-m slow``: the cases in ``SLOW_OPS`` (their op counts as measured): every schedule over 300 ops, and
  ``Z3_HEAVY`` (cases under the threshold that z3 is slow on: none now);
* ``TOO_SLOW`` (marked slow and skipped with the reason, so ``-m slow`` lists and counts them) is empty: no
  schedule is left out.  ``SLOW_BUDGET_S`` = 60 s per schedule is the bound a case must stay under to be run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from syncproof.engine import check_schedule
from syncproof.ir import Schedule
from syncproof.models import registry
from syncproof.proofs import discover, load
from syncproof.result import PROPERTIES, PropertyResult, Report, Verdict

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_MAX_OPS = 300
NOT_CHECKED = "not checked:"  # the reason of a structural UNKNOWN (see formal/engine/check.py)
GAVE_UP = "solver gave up"  # the reason of an UNKNOWN from a solver limit

SLOW_BUDGET_S = 60  # per schedule, both engines, as measured: over it, a schedule is left out of the slow run too
# Below DEFAULT_MAX_OPS, yet slow for z3 alone: none since the cone encoding (proofs/tp.toml::tp1, 117 ops, took
# about 30 s with the whole-formula encoding; 0.3 s now).
Z3_HEAVY: set[str] = set()

# The cases run only under -m slow (keyed by their first id), with their number of ops as measured: every case
# over DEFAULT_MAX_OPS, and Z3_HEAVY.
SLOW_OPS: dict[str, int] = {
    "kv:default": 473, "kv:no-append-wait": 472, "kv:append-before-qkv": 472, "kv:wrong-position": 473,
    "kv:step-early": 472, "tp-pp:default": 974, "tp-pp:no-wait-allreduce": 973, "tp-pp:no-wait-partial": 973,
    "tp-pp:skip-allreduce": 973, "tp-pp:no-recv-wait": 975, "tp-pp:shared-recv-buffer": 974,
    "tp-pp:single-stream-p2p": 882, "tp-pp:crossed-comm-order": 974, "tp-pp:one-comm-two-streams": 974,
    "tp-pp:relies-on-rendezvous": 991, "tp-pp:swapped-mb-order": 974, "tp-pp:step-early": 973, "tp-pp-dp:default": 1292,
    "tp-pp-dp:no-wait-allreduce": 1291, "tp-pp-dp:no-wait-partial": 1291, "tp-pp-dp:skip-allreduce": 1291,
    "tp-pp-dp:no-recv-wait": 1293, "tp-pp-dp:shared-recv-buffer": 1292, "tp-pp-dp:single-stream-p2p": 1108,
    "tp-pp-dp:crossed-comm-order": 1292, "tp-pp-dp:one-comm-two-streams": 1292, "tp-pp-dp:relies-on-rendezvous": 1309,
    "tp-pp-dp:swapped-mb-order": 1292, "tp-pp-dp:gather-before-sample": 1291, "tp-pp-dp:skip-gather": 1289,
    "tp-pp-dp:no-step-wait": 1291, "tp-pp-dp:step-early": 1291, "ep:default": 396, "ep:no-wait-router": 395,
    "ep:no-wait-dispatch": 395, "ep:no-wait-combine": 395, "ep:skip-a2a": 395,
    "proofs/chunked-prefill.toml::chunked-8x4-decode8": 320, "proofs/chunked-prefill.toml::chunked-tp4": 1013,
    "proofs/dp.toml::dp8-decode8": 944, "proofs/dpattn-ep.toml::dpattn-ep8-3reqs": 801,
    "proofs/ep.toml::ep8-decode8": 1296, "proofs/ep.toml::ep8-4layers-decode8": 4536,
    "proofs/ep.toml::ep8-prefill": 504, "proofs/ep.toml::ep4-a2a-p2p": 636, "proofs/ep.toml::ep8-a2a-p2p-decode4": 2720,
    "proofs/ep.toml::ep-no-batch": 636, "proofs/kv.toml::kv-tp8-decode8": 2019, "proofs/kv.toml::kv-decode-only": 764,
    "proofs/overlap.toml::overlap-a2a-8ranks-prefill": 960, "proofs/overlap.toml::overlap-allreduce-8ranks": 1152,
    "proofs/pp.toml::pp4-mb4-decode8": 2128, "proofs/pp.toml::pp4-mb4-decode-only": 1228,
    "proofs/pp.toml::pp8-mb8-decode8": 8480, "proofs/sp.toml::sp8-ring": 454,
    "proofs/tp-pp-dp.toml::tp2-pp2-dp2-mb4-decode4": 4440, "proofs/tp-pp-dp.toml::tp2-pp4-dp2-mb4-decode8": 15256,
    "proofs/tp-pp-dp.toml::tp1-pp4-dp4": 1456, "proofs/tp-pp-dp.toml::tp-pp-dp-no-wait-allreduce": 827,
    "proofs/tp-pp-dp.toml::tp-pp-dp-no-wait-partial": 827, "proofs/tp-pp-dp.toml::tp-pp-dp-skip-allreduce": 827,
    "proofs/tp-pp-dp.toml::tp-pp-dp-no-recv-wait": 829, "proofs/tp-pp-dp.toml::tp-pp-dp-shared-recv-buffer": 828,
    "proofs/tp-pp-dp.toml::tp-pp-dp-no-send-wait": 413, "proofs/tp-pp-dp.toml::tp-pp-dp-single-stream-p2p": 724,
    "proofs/tp-pp-dp.toml::tp-pp-dp-swapped-mb-order": 828, "proofs/tp-pp-dp.toml::tp-pp-dp-gather-before-sample": 827,
    "proofs/tp-pp-dp.toml::tp-pp-dp-skip-gather": 825, "proofs/tp-pp-dp.toml::tp-pp-dp-no-step-wait": 827,
    "proofs/tp-pp-dp.toml::tp-pp-dp-step-early": 827, "proofs/tp-pp-dp.toml::tp-pp-dp-crossed-comm-order": 828,
    "proofs/tp-pp-dp.toml::tp-pp-dp-one-comm-two-streams": 828,
    "proofs/tp-pp-dp.toml::tp-pp-dp-relies-on-rendezvous": 837,
    "proofs/tp-pp-dp.toml::tp-pp-dp-recv-order-swapped": 372, "proofs/tp-pp.toml::tp4-pp4-mb4": 4668,
    "proofs/tp-pp.toml::tp8-pp2-mb2": 2318, "proofs/tp-pp.toml::tp8-pp4-mb4": 15732,
    "proofs/tp-pp.toml::tp2-pp4-decode8": 3300, "proofs/tp-pp.toml::tp-pp-no-wait-allreduce": 391,
    "proofs/tp-pp.toml::tp-pp-no-wait-partial": 391, "proofs/tp-pp.toml::tp-pp-skip-allreduce": 391,
    "proofs/tp-pp.toml::tp-pp-no-recv-wait": 393, "proofs/tp-pp.toml::tp-pp-shared-recv-buffer": 392,
    "proofs/tp-pp.toml::tp-pp-single-stream-p2p": 340, "proofs/tp-pp.toml::tp-pp-swapped-mb-order": 392,
    "proofs/tp-pp.toml::tp-pp-step-early": 391, "proofs/tp-pp.toml::tp-pp-crossed-comm-order": 392,
    "proofs/tp-pp.toml::tp-pp-one-comm-two-streams": 392, "proofs/tp-pp.toml::tp-pp-relies-on-rendezvous": 401,
    "proofs/tp-sp.toml::tp-sp8-prefill": 523, "proofs/tp-sp.toml::tp-sp8-decode8": 1819,
    "proofs/tp.toml::tp8-decode8": 2755, "proofs/tp.toml::tp8-decode-only": 2170,
}

# Cases left out of the slow run too (marked slow and skipped, so -m slow lists and counts them), with what the two
# engines took on them.  None since the z3 engine's cone encoding (0.5.0): every schedule runs.
TOO_SLOW: dict[str, str] = {}


# The v2 settings each fast model case is also checked under (see the module docstring).
SETTINGS: dict[str, tuple[str, str]] = {  # (p2p, progress)
    "rendezvous": ("rendezvous", "any"),
    "eager+concurrent": ("eager", "concurrent"),
}


def with_setting(s: Schedule, setting: str) -> Schedule:
    p2p, progress = SETTINGS[setting]
    return replace(s, p2p=p2p, progress=progress)


class Z3GaveUp(UserWarning):
    """z3 hit a solver limit on a property the hybrid engine decided (tolerated in the slow run only)."""


@dataclass(frozen=True)
class Case:
    """One schedule, and the model cases and obligations that check exactly it (same model, parameters with
    defaults filled in, fault and properties): ``proofs/kv.toml::kv-default`` is ``kv:default``."""

    ids: tuple[str, ...]
    model: str
    params: tuple[tuple[str, str | int], ...]
    fault: str | None
    properties: tuple[str, ...]

    @property
    def key(self) -> str:
        return self.ids[0]

    @property
    def id(self) -> str:
        return "=".join(self.ids)

    def build(self) -> Schedule:
        s: Schedule = registry.build(self.model, dict(self.params), self.fault)
        return s


def default_faults(spec: Any) -> list[Any]:
    """The faults of a model that its default parameters admit (a fault that needs other sizes, such as
    ``pp``'s ``no-send-wait`` with ``mb=1``, is checked through its obligation in proofs/ instead)."""
    defaults = spec.defaults()
    return [f for f in spec.faults if not f.unmet(defaults)]


def _requests() -> list[tuple[str, str, tuple[tuple[str, str | int], ...], str | None, tuple[str, ...]]]:
    """(id, model, params, fault, properties): each model's default and faults, then each non-parametric
    obligation of proofs/*.toml."""
    out: list[tuple[str, str, tuple[tuple[str, str | int], ...], str | None, tuple[str, ...]]] = []
    for spec in registry.list_models():
        out.append((f"{spec.name}:default", spec.name, (), None, PROPERTIES))
        out += [(f"{spec.name}:{f.name}", spec.name, (), f.name, PROPERTIES) for f in default_faults(spec)]
    for path in discover([ROOT / "proofs"]):
        for ob in load(path):
            if ob.parametric is None and ob.model is not None:
                out.append((f"proofs/{ob.id}", ob.model, ob.params, ob.fault, ob.properties))
    return out


def cases() -> list[Case]:
    merged: dict[tuple[object, ...], Case] = {}
    for cid, model, params, fault, props in _requests():
        _, values = registry.resolve(model, dict(params), fault)
        ordered = tuple(p for p in PROPERTIES if p in props)
        key = (model, tuple(sorted(values.items())), fault, ordered)
        if key in merged:
            merged[key] = replace(merged[key], ids=(*merged[key].ids, cid))
        else:
            merged[key] = Case((cid,), model, params, fault, ordered)
    return list(merged.values())


CASES = cases()


def _param(case: Case) -> Any:
    if case.key in TOO_SLOW:
        why = (f"{case.id} left out: {SLOW_OPS[case.key]} ops, {TOO_SLOW[case.key]}; the slow run takes the"
               f" schedules decided within {SLOW_BUDGET_S} s")
        return pytest.param(case, id=case.id, marks=[pytest.mark.slow, pytest.mark.skip(reason=why)])
    if case.key in SLOW_OPS:
        return pytest.param(case, id=case.id, marks=pytest.mark.slow)
    return pytest.param(case, id=case.id)


def _line(case: Case, prop: str, h: PropertyResult, z: PropertyResult, what: str) -> str:
    return (f"{case.id}: {prop}: {what}; hybrid {h.verdict}" + (f" ({h.reason})" if h.reason else "")
            + f", z3 {z.verdict}" + (f" ({z.reason})" if z.reason else ""))


def disagreements(case: Case, hyb: Report, z3r: Report, *, slow: bool) -> list[str]:
    """What is wrong between the two reports, one line each (empty: they agree)."""
    want = [p for p in PROPERTIES if p in case.properties]
    got_h, got_z = [r.property for r in hyb.results], [r.property for r in z3r.results]
    if got_h != want or got_z != want:
        return [f"{case.id}: properties checked: hybrid {got_h}, z3 {got_z}, asked for {want}"]
    out: list[str] = []
    for h, z in zip(hyb.results, z3r.results, strict=True):
        prop = h.property
        if h.verdict is not z.verdict:
            if slow and z.verdict is Verdict.UNKNOWN and z.reason.startswith(GAVE_UP):
                warnings.warn(Z3GaveUp(_line(case, prop, h, z, "z3 hit a solver limit")), stacklevel=2)
                continue
            out.append(_line(case, prop, h, z, "the verdicts differ"))
        elif h.verdict is Verdict.VIOLATED:
            for name, r in (("hybrid", h), ("z3", z)):
                cex = r.counterexample
                if cex is None:
                    out.append(f"{case.id}: {prop}: {name} says violated but gives no counterexample")
                elif cex.replayed is not True:
                    out.append(f"{case.id}: {prop}: the {name} counterexample did not replay ({cex.replay_note})")
        elif h.verdict is Verdict.UNKNOWN and not (h.reason.startswith(NOT_CHECKED)
                                                   and z.reason.startswith(NOT_CHECKED)):
            out.append(_line(case, prop, h, z, "unknown on both sides, not because of matching or deadlock"))
    return out


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_engines_agree(case: Case) -> None:
    slow = case.key in SLOW_OPS
    s = case.build()
    if not slow:
        assert len(s.ops) <= DEFAULT_MAX_OPS, (
            f"{case.id} has {len(s.ops)} ops, over DEFAULT_MAX_OPS={DEFAULT_MAX_OPS}: list it in SLOW_OPS")
    hyb = check_schedule(s, case.properties, engine="hybrid", max_cex=1)
    z3r = check_schedule(s, case.properties, engine="z3", max_cex=1)
    problems = disagreements(case, hyb, z3r, slow=slow)
    assert not problems, "the engines disagree:\n" + "\n".join(problems)


def _settings_params() -> list[Any]:
    return [pytest.param(c, name, id=f"{c.id}@{name}") for c in CASES for name in SETTINGS
            if c.key not in SLOW_OPS and not c.key.startswith("proofs/")]


@pytest.mark.parametrize(("case", "setting"), _settings_params())
def test_engines_agree_under_v2_settings(case: Case, setting: str) -> None:
    s = with_setting(case.build(), setting)
    assert len(s.ops) <= DEFAULT_MAX_OPS, (
        f"{case.id} has {len(s.ops)} ops, over DEFAULT_MAX_OPS={DEFAULT_MAX_OPS}: list it in SLOW_OPS")
    hyb = check_schedule(s, case.properties, engine="hybrid", max_cex=1)
    z3r = check_schedule(s, case.properties, engine="z3", max_cex=1)
    problems = disagreements(case, hyb, z3r, slow=False)
    assert not problems, f"the engines disagree ({setting}):\n" + "\n".join(problems)


def test_the_settings_change_what_is_checked() -> None:
    """The settings variants are not vacuous: a schedule whose pipeline hangs only once messages block
    deadlocks under "rendezvous" (with its other properties left unchecked, as no run finishes), and under
    "eager" + "concurrent" (every blocking edge dropped) proves deadlock-free."""
    from syncproof.ir import ScheduleBuilder

    b = ScheduleBuilder("crossed-sends")
    for me, other in ((0, 1), (1, 0)):
        b.rank(me).send(other, stream="s").recv(other, stream="s")
    s = b.build()
    rdv = check_schedule(with_setting(s, "rendezvous"), engine="hybrid", max_cex=1)
    eager = check_schedule(with_setting(s, "eager+concurrent"), engine="hybrid", max_cex=1)
    assert rdv.result("deadlock").verdict is Verdict.VIOLATED
    assert rdv.result("dataflow").reason.startswith(NOT_CHECKED)
    assert eager.result("deadlock").verdict is Verdict.PROVED


def test_the_case_list_is_complete_and_the_tables_are_current() -> None:
    ids = [i for c in CASES for i in c.ids]
    assert len(ids) == len(set(ids)), "two cases share an id"
    for spec in registry.list_models():
        assert f"{spec.name}:default" in ids
        assert all(f"{spec.name}:{f.name}" in ids for f in default_faults(spec)), spec.name
    obligations = [ob for p in discover([ROOT / "proofs"]) for ob in load(p)]
    schedules = [f"proofs/{ob.id}" for ob in obligations if not ob.parametric]
    assert schedules and len(schedules) < len(obligations), "expected both kinds of obligation in proofs/"
    assert set(schedules) <= set(ids)
    assert len(ids) == len(schedules) + sum(1 + len(default_faults(spec)) for spec in registry.list_models())
    keys = {c.key for c in CASES}
    assert not set(SLOW_OPS) - keys, "SLOW_OPS names a case that no longer exists (or is not the first of its ids)"
    assert not set(TOO_SLOW) - set(SLOW_OPS), "every TOO_SLOW case must be listed in SLOW_OPS"
    assert set(SLOW_OPS) >= Z3_HEAVY
    assert all(n > DEFAULT_MAX_OPS for i, n in SLOW_OPS.items() if i not in Z3_HEAVY)


def _with(rep: Report, prop: str, **changes: Any) -> Report:
    """``rep`` with the result of ``prop`` changed (``counterexample_replayed=`` for the counterexample's flag)."""
    results = []
    for r in rep.results:
        if r.property == prop:
            if "counterexample_replayed" in changes:
                assert r.counterexample is not None
                changes["counterexample"] = replace(r.counterexample,
                                                    replayed=changes.pop("counterexample_replayed"))
            r = replace(r, **changes)
        results.append(r)
    return replace(rep, results=tuple(results))


def test_the_comparison_reports_what_it_should() -> None:
    """The checker of this file is not vacuous: a different verdict, a counterexample that did not
    replay and an unexplained UNKNOWN are reported; a solver limit only in the slow run, and counted;
    a structural UNKNOWN on both sides is not reported."""
    case = next(c for c in CASES if c.key == "paged-kv:early-reuse")
    bad = check_schedule(case.build(), case.properties, engine="hybrid", max_cex=1)
    good = check_schedule(registry.build("paged-kv", {}), case.properties, engine="hybrid", max_cex=1)
    assert bad.result("dataflow").verdict is Verdict.VIOLATED and good.result("dataflow").verdict is Verdict.PROVED
    assert disagreements(case, bad, bad, slow=False) == []
    assert any("dataflow: the verdicts differ" in line for line in disagreements(case, bad, good, slow=True))
    unreplayed = _with(bad, "dataflow", counterexample_replayed=False)
    assert any("the z3 counterexample did not replay" in line
               for line in disagreements(case, bad, unreplayed, slow=False))
    assert any("the hybrid counterexample did not replay" in line
               for line in disagreements(case, unreplayed, bad, slow=False))
    no_cex = _with(bad, "race", counterexample=None)
    assert any("race: z3 says violated but gives no counterexample" in line
               for line in disagreements(case, bad, no_cex, slow=False))
    limit = _with(good, "dataflow", verdict=Verdict.UNKNOWN, reason=f"{GAVE_UP} (timeout)")
    assert any("the verdicts differ" in line for line in disagreements(case, good, limit, slow=False))
    with pytest.warns(Z3GaveUp, match="dataflow: z3 hit a solver limit"):
        assert disagreements(case, good, limit, slow=True) == []
    assert any("hybrid unknown" in line for line in disagreements(case, limit, good, slow=True))
    assert any("unknown on both sides" in line for line in disagreements(case, limit, limit, slow=True))
    skip = next(c for c in CASES if c.key == "proofs/dp.toml::dp-skip-gather")
    s = skip.build()
    hyb = check_schedule(s, skip.properties, engine="hybrid", max_cex=1)
    z3r = check_schedule(s, skip.properties, engine="z3", max_cex=1)
    assert hyb.result("matching").verdict is Verdict.VIOLATED
    assert hyb.result("dataflow").verdict is Verdict.UNKNOWN and hyb.result("dataflow").reason.startswith(NOT_CHECKED)
    assert disagreements(skip, hyb, z3r, slow=False) == []
