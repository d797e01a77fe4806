"""Verdicts, runs and counterexamples: plain data shared by the engine, the
executor, the renderers and the CLI.  Nothing here imports the solver."""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

PROPERTIES = ("matching", "deadlock", "dataflow", "race", "phase")


class Verdict(StrEnum):
    PROVED = "proved"
    VIOLATED = "violated"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Run:
    """A concrete execution: ``start[i]``/``end[i]`` of op ``i``.  ``None``
    means the op never started / never finished (the run hangs there).

    ``known`` (a *partial* run, as a large report stores it): the ops whose
    times the run gives; the times of every other op are not stored (their
    ``start``/``end`` are ``None`` here but mean "unknown", not "never").
    Replay rebuilds the missing events (``executor/replay.py``)."""

    start: tuple[int | None, ...]
    end: tuple[int | None, ...]
    known: tuple[int, ...] | None = None

    @property
    def complete(self) -> bool:
        return all(e is not None for e in self.end)

    def to_json(self) -> dict[str, Any]:
        return {"start": list(self.start), "end": list(self.end)}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Run:
        return Run(tuple(d["start"]), tuple(d["end"]))


@dataclass(frozen=True)
class Observation:
    """The wrong thing a replay must reproduce.

    kinds: ``read`` (op read ``region`` expecting ``expected`` but saw
    ``seen``), ``overlap`` (ops ``a`` and ``b`` ran at the same time on
    ``region``), ``order`` (op ``b`` started before op ``a`` ended), ``hang``
    (``blocked`` ops never finish), ``meta`` (an op's metadata breaks a
    phase rule), ``cycle`` (no execution exists: ``ops`` wait on each other).
    """

    kind: str
    a: int | None = None
    b: int | None = None
    region: str = ""
    expected: str = ""
    seen: tuple[str, ...] = ()
    blocked: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        for k in ("a", "b"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.region:
            d["region"] = self.region
        if self.expected:
            d["expected"] = self.expected
        if self.seen:
            d["seen"] = list(self.seen)
        if self.blocked:
            d["blocked"] = list(self.blocked)
        return d

    @staticmethod
    def from_json(d: dict[str, Any]) -> Observation:
        return Observation(
            kind=d["kind"], a=d.get("a"), b=d.get("b"), region=d.get("region", ""),
            expected=d.get("expected", ""), seen=tuple(d.get("seen", ())),
            blocked=tuple(d.get("blocked", ())),
        )


@dataclass(frozen=True)
class CycleStep:
    """One link of a cycle of waits: ``op`` waits for ``next_op`` because ``why``."""

    op: int
    next_op: int
    why: str
    blocking: str = ""  # "message" or "progress" when the link holds only when the runtime blocks


@dataclass(frozen=True)
class Counterexample:
    property: str
    sentence: str
    culprits: tuple[int, ...]
    observation: Observation
    run: Run | None
    cycle: tuple[CycleStep, ...] = ()
    missing_edge: tuple[int, int] | None = None
    candidates: tuple[int, ...] = ()
    replayed: bool = False
    replay_note: str = ""


@dataclass(frozen=True)
class PropertyResult:
    property: str
    verdict: Verdict
    reason: str = ""
    counterexample: Counterexample | None = None
    obligations: int = 0
    more: tuple[str, ...] = ()
    seconds: float = 0.0
    # choice schedules (DESIGN.md section 2c): the assignment the counterexample
    # runs under, and the plain schedule it selects (the counterexample's op ids
    # are that schedule's)
    assignment: str = ""
    assignment_json: tuple[Any, ...] = ()
    selection: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Report:
    schedule: str
    source: str
    ops: int
    results: tuple[PropertyResult, ...]
    engine: str = "z3"
    seconds: float = 0.0
    warnings: tuple[str, ...] = ()
    timings: tuple[tuple[str, float], ...] = field(default=())
    decided_by: str = ""  # choice schedules: how every assignment was covered
    assignments: str = ""  # choice schedules: how many assignments there are ("3^128")

    @property
    def exit_code(self) -> int:
        """0 every checked property proved, 1 a counterexample, 3 unknown."""
        verdicts = {r.verdict for r in self.results}
        if Verdict.VIOLATED in verdicts:
            return 1
        if Verdict.UNKNOWN in verdicts:
            return 3
        return 0

    def result(self, prop: str) -> PropertyResult:
        for r in self.results:
            if r.property == prop:
                return r
        raise KeyError(prop)


@dataclass(frozen=True)
class Hint:
    """A repair hint for one violated property.

    ``status`` is ``proved`` (the re-check of the repaired copy proves the
    property, and breaks nothing that held or could not be checked before),
    ``unproved`` (an edit was tried but the re-check does not prove it, or it
    breaks something; ``text`` says why) or ``no_fix`` (no local edit
    applies; ``text`` says why)."""

    property: str
    status: str
    text: str
    steps: tuple[str, ...] = ()
    recheck: tuple[tuple[str, str], ...] = ()  # property -> verdict on the repaired copy
    repaired: Any = field(default=None, compare=False, repr=False)  # the edited Schedule

    @builtins.property  # (the field ``property`` hides the builtin in this class)
    def proved(self) -> bool:
        return self.status == "proved"

    def line(self) -> str:
        """One line for terminals and pictures."""
        if self.status == "proved":
            return f"repair (proved by re-check): {self.text}"
        if self.status == "unproved":
            return f"repair (unproved): {self.text}"
        return f"repair: {self.text}"

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "proved": self.proved, "text": self.text, "line": self.line(),
                "steps": list(self.steps), "recheck": dict(self.recheck)}
