"""The model registry: look models up by name, parse and validate their
parameters (strings from the command line), and build their schedules.

    from syncproof.models.registry import build, list_models
    s = build("tp", {"tp": "4", "steps": "8"}, fault=None)
    s = build("pp", {"pp": "2", "mb": "2"}, fault="single-stream-p2p")
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace

from . import choices, dense, host, moe, overlap, paged, sp
from .common import ModelSpec, Param, Schedule, UsageError, Value

_ALL: tuple[ModelSpec, ...] = (dense.MODELS + sp.MODELS + moe.MODELS + paged.MODELS + overlap.MODELS
                               + host.MODELS + choices.MODELS)
MODELS: dict[str, ModelSpec] = {m.name: m for m in _ALL}

# An integer parameter is written in ASCII digits: int() would also take "٣"
# (3), "1_000" and 5000-digit strings (its ValueError names no parameter).
_INT = re.compile(r"[+-]?[0-9]{1,40}")


def _hint(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _short(value: object) -> str:
    """A value for a message: a huge integer or string is cut short."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def list_models() -> list[ModelSpec]:
    """Every model: name, summary, parameters (defaults, ranges), faults (with the property each breaks)."""
    return list(_ALL)


def get(name: str) -> ModelSpec:
    if not isinstance(name, str):
        raise UsageError(f"a model name is a string, got {_short(name)}; `syncproof models` lists them")
    try:
        return MODELS[name]
    except KeyError:
        raise UsageError(f"unknown model {_short(name)}{_hint(name, MODELS)}; `syncproof models` lists them"
                         f" ({', '.join(MODELS)})") from None


def _parse(model: str, p: Param, raw: Value) -> Value:
    if p.choices:
        text = str(raw).strip()
        if text not in p.choices:
            raise UsageError(f"model {model}: {p.name}={_short(text)} is not one of {', '.join(p.choices)}"
                             f"{_hint(text, p.choices)}")
        return text
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise UsageError(f"model {model}: {p.name} takes an integer in {p.range_text}, got {_short(raw)}")
    if isinstance(raw, int):
        v = raw
    else:
        text = raw.strip()
        if not _INT.fullmatch(text) or not text.isascii():
            raise UsageError(f"model {model}: {p.name} takes an integer in {p.range_text} (ASCII digits),"
                             f" got {_short(raw)}")
        v = int(text)
    assert p.lo is not None and p.hi is not None
    if not p.lo <= v <= p.hi:
        raise UsageError(f"model {model}: {p.name}={_short(v)} is out of range {p.range_text}")
    return v


def parse_value(name: str, key: str, raw: Value) -> Value:
    """One parameter value of model ``name``, parsed and range-checked."""
    spec = get(name)
    names = [p.name for p in spec.params]
    if not isinstance(key, str):
        raise UsageError(f"model {name}: a parameter is named by a string, got {_short(key)}")
    if key not in names:
        raise UsageError(f"model {name} has no parameter {_short(key)}{_hint(key, names)}; its parameters:"
                         f" {', '.join(names)}")
    return _parse(name, spec.param(key), raw)


def resolve(name: str, params: Mapping[str, Value], fault: str | None = None) -> tuple[ModelSpec, dict[str, Value]]:
    """The model and its typed parameters (defaults filled in); raises UsageError
    for an unknown model, parameter or fault, a value out of range, an invalid
    combination, or a fault that does not apply to these parameters."""
    spec = get(name)
    if not isinstance(params, Mapping):
        raise UsageError(f"model {name}: parameters are a mapping of name to value, got {_short(params)}")
    if fault is not None and not isinstance(fault, str):
        raise UsageError(f"model {name}: a fault is named by a string, got {_short(fault)}")
    values = spec.defaults()
    for key, raw in params.items():
        values[key] = parse_value(name, key, raw)
    if spec.validate is not None:
        why = spec.validate(values)
        if why:
            raise UsageError(f"model {name}: {why}")
    if fault is not None:
        faults = [f.name for f in spec.faults]
        if fault not in faults:
            raise UsageError(f"model {name} has no fault {_short(fault)}{_hint(fault, faults)}; its faults:"
                             f" {', '.join(faults) or 'none'}")
        unmet = spec.fault(fault).unmet(values)
        if unmet:
            raise UsageError(f"model {name}: fault {fault!r} needs {', '.join(unmet)}"
                             f" (got {', '.join(f'{k}={v}' for k, v in values.items())})")
    return spec, values


def schedule_name(name: str, values: Mapping[str, Value], fault: str | None) -> str:
    spec = get(name)
    defaults = spec.defaults()
    changed = [f"{k}={v}" for k, v in values.items() if defaults.get(k) != v]
    text = name + (f"[{','.join(changed)}]" if changed else "")
    return text + (f"+{fault}" if fault else "")


def build(name: str, params: Mapping[str, Value], fault: str | None = None) -> Schedule:
    """Build model ``name`` with ``params`` (strings from the command line, or
    ints) and optionally one of its named faults."""
    spec, values = resolve(name, params, fault)
    sched = spec.builder(schedule_name(name, values, fault), values, fault)
    # say where the schedule comes from in reports (instead of "<builder ...>")
    return replace(sched, source=f"model {name}")
