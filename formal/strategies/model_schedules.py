"""Schedules of the bundled models (``syncproof models``) at small sizes, with
or without one of their named faults: :func:`model_cases`,
:func:`model_schedules` and :func:`buggy_schedules`.

Every model parameter is drawn from the low end of its range (integers from
``lo`` to ``lo + spread``, every choice of a choice parameter); combinations
the model rejects (more stages than layers, ...) and faults whose needs are
not met are not drawn; with a fault, an over-synchronized variant
(``oversync``) is not drawn either (its extra syncs can hide the fault).
A fault is a bug with a known effect: its ``breaks`` names the property it
is written to violate (``syncproof models`` lists them), so a
:class:`ModelCase` with a fault is a schedule with a known answer.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from ..errors import UsageError
from ..ir import Schedule

Value = int | str
# Parameters that pick an over-synchronized variant of a model: at their default when a fault is drawn.
OVERSYNC_PARAMS = ("oversync",)
# (model, fault) -> the parameters under which that fault, though its needs are met, does not break its
# property (found by tests/test_strategies_public.py; the fault's needs should say so): not drawn.
MASKED: dict[tuple[str, str], Callable[[dict[str, Value]], bool]] = {
}


@dataclass(frozen=True)
class ModelCase:
    """One drawn model schedule: which model, parameters and fault built it,
    and (with a fault) the property that fault is written to violate."""

    schedule: Schedule = field(repr=False)
    model: str
    params: tuple[tuple[str, Value], ...]
    fault: str | None = None
    breaks: str | None = None

    @property
    def command(self) -> str:
        """The command line that checks the same schedule."""
        sets = " ".join(f"--set {k}={v}" for k, v in self.params)
        return f"syncproof check --model {self.model} {sets}" + (f" --fault {self.fault}" if self.fault else "")


def _masked(model: str, fault: str, values: dict[str, Value]) -> bool:
    rule = MASKED.get((model, fault))
    return rule is not None and rule(values)


def _registry() -> Any:
    return importlib.import_module("syncproof.models.registry")


def model_names() -> tuple[str, ...]:
    """The bundled models' names."""
    return tuple(m.name for m in _registry().list_models())


@st.composite
def model_cases(draw: st.DrawFn, models: Iterable[str] | None = None, *, fault: bool | None = None,
                spread: int = 1) -> ModelCase:
    """A bundled model at a small size: ``models`` (default: all of them);
    ``fault``: True always one of the model's faults that applies, False
    never, None (default) either; ``spread``: integer parameters are drawn
    from ``lo..lo+spread`` of their range (small schedules: the default 1
    gives tens to a few hundred ops)."""
    reg = _registry()
    names = tuple(models) if models is not None else model_names()
    if not names or isinstance(models, str):
        raise InvalidArgument(f"models must be a non-empty collection of model names, got {models!r}")
    for n in names:
        try:
            reg.get(n)
        except UsageError as exc:
            raise InvalidArgument(str(exc)) from None
    if spread < 0:
        raise InvalidArgument(f"spread must be at least 0, got {spread}")
    spec = reg.get(draw(st.sampled_from(names)))
    params: dict[str, Value] = {}
    for p in spec.params:
        if p.choices:
            params[p.name] = draw(st.sampled_from(p.choices))
        else:
            lo, hi = int(p.lo), int(p.hi)
            params[p.name] = draw(st.integers(lo, min(hi, lo + spread)))
    try:
        _, values = reg.resolve(spec.name, params)
    except UsageError:
        assume(False)
    usable = [f for f in spec.faults if not f.unmet(values) and not _masked(spec.name, f.name, values)]
    with_fault = fault if fault is not None else bool(usable) and draw(st.booleans())
    chosen = None
    if with_fault:
        assume(bool(usable))
        chosen = draw(st.sampled_from(usable))
        # an over-synchronized variant (issue 14) may add the very sync a fault leaves out: tp's step-sync
        # keeps step-early from breaking phase; a fault is drawn on the plain variant only
        for p in spec.params:
            if p.name in OVERSYNC_PARAMS:
                params[p.name] = p.default
    sched = reg.build(spec.name, params, chosen.name if chosen else None)
    return ModelCase(sched, spec.name, tuple(params.items()), chosen.name if chosen else None,
                     chosen.breaks if chosen else None)


def model_schedules(models: Iterable[str] | None = None, *, spread: int = 1) -> st.SearchStrategy[Schedule]:
    """Schedules of the bundled models without faults, at small sizes (see
    :func:`model_cases`)."""
    return model_cases(models, fault=False, spread=spread).map(lambda c: c.schedule)


def buggy_schedules(models: Iterable[str] | None = None, *, spread: int = 1) -> st.SearchStrategy[ModelCase]:
    """Model schedules with one named fault switched on: each case's
    ``breaks`` is the property its fault is written to violate, so a checker
    (or a schedule transformation that must keep bugs visible) can be tested
    against a known answer."""
    return model_cases(models, fault=True, spread=spread)
