"""Proof obligations: small TOML files that pin a verdict, run by
``syncproof prove`` and by the pytest plugin (``pytest proofs/``).

A file holds one or more ``[[proof]]`` tables::

    [[proof]]
    name = "tp8-decode"                 # unique in the file
    model = "tp"                        # a model (see `syncproof models`) ...
    params = { tp = 8, steps = 8 }
    properties = ["dataflow", "race"]   # optional, default: all five
    expect = "proved"

    [[proof]]
    name = "tp-skip-allreduce"
    model = "tp"
    fault = "skip-allreduce"
    expect = "violated: matching"       # that property must have a counterexample

    [[proof]]
    name = "sp-causal-ring"
    parametric = "sp-causal"            # ... or a parametric proof (all sizes at once)
    params = { variant = "ring" }
    expect = "proved"

Optional keys: ``description``, ``slow = true`` (pytest marks the item slow),
``xfail = "why"`` (a known failure: reported, not counted; if it passes, that
is reported as an error so the marker gets removed), ``engine``, ``timeout``
(seconds per solver call) and ``rlimit``.  A ``[defaults]`` table sets
``engine``/``timeout``/``rlimit`` for every proof of the file.

Every key is checked when the file is loaded, before anything runs: a
malformed file (bad TOML, nesting too deep, a wrong type, an unknown key,
model, parameter, fault or property, a value out of range) is an
:class:`ObligationError` naming the file, the proof and the key.  Model
parameters are range-checked by the model registry, parametric ones against
:data:`PARAMETRIC_PARAMS`.

Loading needs no solver; the engine is imported when an obligation runs.
"""

from __future__ import annotations

import difflib
import importlib
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .apiguard import path as path_arg
from .apiguard import short_repr
from .apiguard import text as text_arg
from .errors import UsageError, UserError
from .inputs import finite_number, read_text
from .result import PROPERTIES, Verdict

PROOF_KEYS = ("name", "model", "parametric", "params", "fault", "properties", "expect", "description", "slow",
              "xfail", "engine", "timeout", "rlimit")
DEFAULT_KEYS = ("engine", "timeout", "rlimit")
# The encodings of syncproof.engine.parametric (named here so that loading needs no solver).
PARAMETRIC = ("sp-causal", "kv-steps", "ep-routing")
#: Their parameters (choices, or an inclusive integer range) and faults, as
#: syncproof.engine.parametric.ENCODINGS declares them (a test keeps the two
#: in step), so that a bad value is refused when the file is loaded.
PARAMETRIC_PARAMS: dict[str, dict[str, tuple[str, ...] | tuple[int, int]]] = {
    "sp-causal": {"variant": ("allgather", "ring")},
    "kv-steps": {},
    "ep-routing": {"ep": (1, 8), "tokens": (1, 64), "capacity": (0, 4096)},
}
PARAMETRIC_FAULTS: dict[str, tuple[str, ...]] = {
    "sp-causal": ("no-wait-kv", "no-wait-local"),
    "kv-steps": ("no-append-wait", "append-before-qkv"),
    "ep-routing": ("padded-read",),
}
#: Bounds of the solver limits (z3 takes timeout in ms and rlimit as unsigned 32-bit integers).
MAX_TIMEOUT_S = 1_000_000.0
MAX_RLIMIT = 2**32 - 1
#: The largest proof file read, in bytes.
MAX_PROOF_BYTES = 4 * 1024**2

# outcome statuses; the first three are failures
REGRESSION, XPASS, ERROR = "regression", "xpass", "error"
OK, XFAIL, UNKNOWN = "ok", "xfail", "unknown"


class ObligationError(UserError):
    """A proof file is malformed."""


@dataclass(frozen=True)
class Obligation:
    path: Path
    name: str
    expect: Verdict
    expect_property: str | None  # for a violation
    model: str | None = None
    parametric: str | None = None
    params: tuple[tuple[str, str | int], ...] = ()
    fault: str | None = None
    properties: tuple[str, ...] = PROPERTIES
    description: str = ""
    slow: bool = False
    xfail: str = ""
    engine: str = "hybrid"
    timeout: float | None = None
    rlimit: int | None = None

    @property
    def id(self) -> str:
        return f"{self.path.name}::{self.name}"

    @property
    def kind(self) -> str:
        return "parametric" if self.parametric else "model"

    @property
    def expect_text(self) -> str:
        return "proved" if self.expect is Verdict.PROVED else f"violated: {self.expect_property}"

    @property
    def target(self) -> str:
        """What is checked, in one phrase: ``tp[tp=8]+skip-allreduce``."""
        base = self.model or self.parametric or "?"
        args = ",".join(f"{k}={v}" for k, v in self.params)
        return base + (f"[{args}]" if args else "") + (f"+{self.fault}" if self.fault else "")


@dataclass(frozen=True)
class Outcome:
    obligation: Obligation
    status: str
    got: str  # "proved", "violated: dataflow, race", "unknown: ..."
    detail: str = ""
    seconds: float = 0.0
    ops: int | None = None
    verdicts: tuple[tuple[str, str], ...] = field(default=())

    @property
    def failed(self) -> bool:
        return self.status in (REGRESSION, XPASS, ERROR)

    def to_json(self) -> dict[str, Any]:
        ob = self.obligation
        return {"id": ob.id, "kind": ob.kind, "target": ob.target, "expect": ob.expect_text, "got": self.got,
                "status": self.status, "detail": self.detail, "seconds": round(self.seconds, 3), "ops": self.ops,
                "verdicts": dict(self.verdicts)}


# ------------------------------------------------------------------ loading
def _registry() -> Any:
    return importlib.import_module("syncproof.models.registry")


def _hint(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _expect(text: object, where: str) -> tuple[Verdict, str | None]:
    if not isinstance(text, str):
        raise ObligationError(f"{where}: expect must be \"proved\" or \"violated: PROPERTY\", got"
                              f" {short_repr(text)}")
    t = text.strip()
    if t == "proved":
        return Verdict.PROVED, None
    if t.startswith("violated"):
        prop = t.removeprefix("violated").lstrip(" :").strip()
        if prop not in PROPERTIES:
            raise ObligationError(f"{where}: expect {short_repr(text)} must name the violated property, one of"
                                  f" {', '.join(PROPERTIES)}{_hint(prop, PROPERTIES)}")
        return Verdict.VIOLATED, prop
    raise ObligationError(f"{where}: expect must be \"proved\" or \"violated: PROPERTY\", got {short_repr(text)}")


def parse(text: str, path: Path) -> list[Obligation]:
    """The obligations of one file's text; raises ObligationError naming the file and proof."""
    text = text_arg(text, "parse", "text")
    path = path_arg(path, "parse", "path")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ObligationError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ObligationError(f"{path}: not valid TOML: arrays or inline tables nested too deeply") from None
    for key in doc:
        if key not in ("proof", "defaults"):
            raise ObligationError(f"{path}: unknown top-level key {short_repr(key)}{_hint(key, ('proof', 'defaults'))};"
                                  " a proof file holds [[proof]] tables and an optional [defaults] table")
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ObligationError(f"{path}: [defaults] must be a table")
    for key in defaults:
        if key not in DEFAULT_KEYS:
            raise ObligationError(f"{path}: [defaults] takes {', '.join(DEFAULT_KEYS)}, not {short_repr(key)}")
    proofs = doc.get("proof", [])
    if not isinstance(proofs, list) or not all(isinstance(p, dict) for p in proofs):
        raise ObligationError(f"{path}: write each obligation as a [[proof]] table")
    out: list[Obligation] = []
    seen: set[str] = set()
    for n, raw in enumerate(proofs):
        name = raw.get("name")
        where = f"{path}: proof {short_repr(name)}" if isinstance(name, str) else f"{path}: proof #{n + 1}"
        if not isinstance(name, str) or not name.strip():
            raise ObligationError(f"{where}: every proof needs a name = \"...\"")
        if name in seen:
            raise ObligationError(f"{where}: the name is used twice in this file")
        seen.add(name)
        for key in raw:
            if key not in PROOF_KEYS:
                raise ObligationError(f"{where}: unknown key {short_repr(key)}{_hint(key, PROOF_KEYS)}")
        merged = {**defaults, **raw}
        out.append(_obligation(path, name, merged, where))
    return out


def _obligation(path: Path, name: str, raw: dict[str, Any], where: str) -> Obligation:
    model, parametric = raw.get("model"), raw.get("parametric")
    if (model is None) == (parametric is None):
        raise ObligationError(f"{where}: give exactly one of model = \"...\" or parametric = \"...\"")
    params = raw.get("params", {})
    if not isinstance(params, dict) or not all(isinstance(v, (int, str)) and not isinstance(v, bool)
                                               for v in params.values()):
        raise ObligationError(f"{where}: params must be a table of integers and strings, e.g."
                              " params = { tp = 4, phase = \"decode\" }")
    fault = raw.get("fault")
    if fault is not None and not isinstance(fault, str):
        raise ObligationError(f"{where}: fault must be a string, got {short_repr(fault)}")
    expect, prop = _expect(raw.get("expect"), where)
    props = raw.get("properties", list(PROPERTIES))
    if not isinstance(props, list) or not props or any(not isinstance(p, str) or p not in PROPERTIES
                                                       for p in props):
        raise ObligationError(f"{where}: properties must be a non-empty list drawn from {', '.join(PROPERTIES)}")
    if prop is not None and prop not in props:
        raise ObligationError(f"{where}: expect names {prop!r}, which is not among the checked properties")
    engine = raw.get("engine", "hybrid")
    if not isinstance(engine, str) or engine not in ("hybrid", "z3"):
        raise ObligationError(f"{where}: engine must be \"hybrid\" or \"z3\", got {short_repr(engine)}")
    timeout, rlimit = raw.get("timeout"), raw.get("rlimit")
    if timeout is not None and (not finite_number(timeout) or not 0 < timeout <= MAX_TIMEOUT_S):
        raise ObligationError(f"{where}: timeout must be a positive number of seconds, at most"
                              f" {MAX_TIMEOUT_S:.0f}, got {short_repr(timeout)}")
    if rlimit is not None and (isinstance(rlimit, bool) or not isinstance(rlimit, int)
                               or not 0 < rlimit <= MAX_RLIMIT):
        raise ObligationError(f"{where}: rlimit must be a positive integer, at most {MAX_RLIMIT},"
                              f" got {short_repr(rlimit)}")
    for key in ("description", "xfail"):
        if not isinstance(raw.get(key, ""), str):
            raise ObligationError(f"{where}: {key} must be a string, got {short_repr(raw.get(key))}")
    if not isinstance(raw.get("slow", False), bool):
        raise ObligationError(f"{where}: slow must be true or false, got {short_repr(raw.get('slow'))}")
    try:
        if model is not None:
            if not isinstance(model, str):
                raise ObligationError(f"{where}: model must be a string, got {short_repr(model)}")
            _registry().resolve(model, params, fault)
        else:
            if "properties" in raw:
                raise ObligationError(f"{where}: a parametric proof has its own property; drop properties")
            if not isinstance(parametric, str) or parametric not in PARAMETRIC:
                raise ObligationError(f"{where}: unknown parametric proof {short_repr(parametric)}"
                                      f"{_hint(str(parametric), PARAMETRIC)}; choose from {', '.join(PARAMETRIC)}")
            params = _parametric_params(parametric, params, fault, where)
    except UsageError as exc:
        raise ObligationError(f"{where}: {exc}") from None
    return Obligation(path=path, name=name, expect=expect, expect_property=prop, model=model, parametric=parametric,
                      params=tuple(params.items()), fault=fault, properties=tuple(props),
                      description=raw.get("description", ""), slow=raw.get("slow", False),
                      xfail=raw.get("xfail", ""), engine=engine,
                      timeout=float(timeout) if timeout is not None else None, rlimit=rlimit)


def _parametric_params(name: str, params: dict[str, int | str], fault: str | None,
                       where: str) -> dict[str, int | str]:
    """The parameters of parametric proof ``name``, checked against
    :data:`PARAMETRIC_PARAMS` (and its fault against :data:`PARAMETRIC_FAULTS`)."""
    known = PARAMETRIC_PARAMS[name]
    if fault is not None and fault not in PARAMETRIC_FAULTS[name]:
        raise ObligationError(f"{where}: parametric proof {name} has no fault {short_repr(fault)}"
                              f"{_hint(fault, PARAMETRIC_FAULTS[name])}; its faults:"
                              f" {', '.join(PARAMETRIC_FAULTS[name]) or 'none'}")
    out: dict[str, int | str] = {}
    for key, value in params.items():
        spec = known.get(key)
        if spec is None:
            raise ObligationError(f"{where}: params: parametric proof {name} has no parameter {short_repr(key)}"
                                  f"{_hint(key, known)}; it takes: {', '.join(known) or 'none'}")
        if spec and isinstance(spec[0], str):
            if value not in spec:
                raise ObligationError(f"{where}: params.{key} = {short_repr(value)} is not one of"
                                      f" {', '.join(str(c) for c in spec)}")
            out[key] = value
            continue
        lo, hi = spec
        assert isinstance(lo, int) and isinstance(hi, int)
        if not isinstance(value, int):
            raise ObligationError(f"{where}: params.{key} takes an integer in {lo}..{hi}, got {short_repr(value)}")
        if not lo <= value <= hi:
            raise ObligationError(f"{where}: params.{key} = {short_repr(value)} is out of range {lo}..{hi}")
        out[key] = value
    return out


def load(path: str | Path) -> list[Obligation]:
    """The obligations of one proof file, read through :mod:`syncproof.inputs`
    (a regular file of at most :data:`MAX_PROOF_BYTES`, UTF-8)."""
    p = path_arg(path, "load")
    try:
        text = read_text(p, "a syncproof proof file (TOML)", MAX_PROOF_BYTES)
    except UserError as exc:
        raise ObligationError(str(exc)) from None
    return parse(text, p)


def discover(paths: Iterable[str | Path]) -> list[Path]:
    """Proof files: the given files, and ``*.toml`` under the given directories (sorted)."""
    if isinstance(paths, (str, bytes)) or not isinstance(paths, Iterable):
        raise UsageError(f"discover(): paths must be a list of paths, got {short_repr(paths)}")
    out: list[Path] = []
    for raw in paths:
        p = path_arg(raw, "discover", "each path")
        try:
            if p.is_dir():
                out += sorted(q for q in p.rglob("*.toml") if q.is_file())
            elif p.exists():
                out.append(p)  # a file; load() refuses a pipe or a device by name
            else:
                raise ObligationError(f"{p}: no such file or directory")
        except OSError as exc:
            raise ObligationError(f"{p}: cannot read: {exc.strerror or exc}") from None
    return out


# ------------------------------------------------------------------ running
def run(ob: Obligation) -> Outcome:
    """Check one obligation and compare with its expectation."""
    t0 = time.perf_counter()
    try:
        if ob.parametric:
            out = _run_parametric(ob)
        else:
            out = _run_model(ob)
    except UserError as exc:
        return Outcome(ob, ERROR, "error", str(exc), time.perf_counter() - t0)
    secs = time.perf_counter() - t0
    status = out[0]
    if ob.xfail:
        status = XPASS if status == OK else XFAIL
    return Outcome(ob, status, out[1], out[2], secs, out[3], out[4])


_LIMIT = "solver gave up"


def _run_model(ob: Obligation) -> tuple[str, str, str, int | None, tuple[tuple[str, str], ...]]:
    from .engine import check_schedule

    sched = _registry().build(ob.model, dict(ob.params), ob.fault)
    rep = check_schedule(sched, ob.properties, engine=ob.engine, timeout=ob.timeout, rlimit=ob.rlimit)
    verdicts = tuple((r.property, r.verdict.value) for r in rep.results)
    bad = [r for r in rep.results if r.verdict is Verdict.VIOLATED]
    unk = [r for r in rep.results if r.verdict is Verdict.UNKNOWN]
    got = "proved" if not bad and not unk else \
        f"violated: {', '.join(r.property for r in bad)}" if bad else "unknown"
    if ob.expect is Verdict.PROVED:
        if bad:
            cex = bad[0].counterexample
            return REGRESSION, got, cex.sentence if cex else bad[0].reason, sched.size, verdicts
        if unk:
            return UNKNOWN, got, f"{unk[0].property}: {unk[0].reason}", sched.size, verdicts
        return OK, got, "", sched.size, verdicts
    res = rep.result(str(ob.expect_property))
    if res.verdict is Verdict.VIOLATED:
        cex = res.counterexample
        return OK, got, cex.sentence if cex else "", sched.size, verdicts
    if res.verdict is Verdict.UNKNOWN and res.reason.startswith(_LIMIT):
        return UNKNOWN, got, f"{res.property}: {res.reason}", sched.size, verdicts
    why = f"{res.property} is {res.verdict.value}" + (f" ({res.reason})" if res.reason else "")
    if bad:
        why += f"; violated instead: {bad[0].property}"
        if bad[0].counterexample:
            why += f": {bad[0].counterexample.sentence}"
    return REGRESSION, got, why, sched.size, verdicts


def _run_parametric(ob: Obligation) -> tuple[str, str, str, int | None, tuple[tuple[str, str], ...]]:
    from .engine.parametric import prove

    if ob.rlimit:
        res = prove(str(ob.parametric), dict(ob.params), ob.fault, timeout=ob.timeout, rlimit=ob.rlimit)
    else:
        res = prove(str(ob.parametric), dict(ob.params), ob.fault, timeout=ob.timeout)
    verdicts = ((res.prop, res.verdict.value),)
    got = res.verdict.value if res.verdict is not Verdict.VIOLATED else f"violated: {res.prop}"
    detail = res.reason or res.claim
    if res.verdict is Verdict.UNKNOWN:
        return UNKNOWN, "unknown", detail, None, verdicts
    want = ob.expect is Verdict.PROVED or ob.expect_property == res.prop
    if res.verdict is ob.expect and want:
        return OK, got, detail, None, verdicts
    return REGRESSION, got, detail, None, verdicts


def exit_code(outcomes: list[Outcome]) -> int:
    """0 all as expected, 1 a regression (or an xfail that passes), 2 a bad obligation, 3 unknown."""
    statuses = {o.status for o in outcomes}
    if ERROR in statuses:
        return 2
    if REGRESSION in statuses or XPASS in statuses:
        return 1
    if UNKNOWN in statuses:
        return 3
    return 0
