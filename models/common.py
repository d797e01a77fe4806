"""Shared pieces of the models: parameter and fault descriptions, and a rank
helper that adds CUDA-style events and per-iteration fences.

Models use only ``syncproof.ir``: they build schedules, they never check them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # mypy checks the source tree, where the syncproof package is the folder formal/.
    from formal.errors import UsageError
    from formal.ir import RankBuilder, Schedule, ScheduleBuilder
else:
    from syncproof.errors import UsageError
    from syncproof.ir import RankBuilder, Schedule, ScheduleBuilder

__all__ = ["Dev", "Fault", "ModelSpec", "Param", "RankBuilder", "Schedule", "ScheduleBuilder", "UsageError",
           "at_least", "equals", "meta", "span", "split_even"]

Value = int | str
Params = Mapping[str, Value]
Meta = dict[str, Any]

PHASES = ("prefill", "decode", "both")


# ------------------------------------------------------------------ specs
@dataclass(frozen=True)
class Param:
    """One model parameter: an integer in ``lo..hi`` or one of ``choices``."""

    name: str
    default: Value
    help: str
    lo: int | None = None
    hi: int | None = None
    choices: tuple[str, ...] = ()

    @property
    def range_text(self) -> str:
        if self.choices:
            return "|".join(self.choices)
        return f"{self.lo}..{self.hi}"

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "default": self.default, "help": self.help}
        if self.choices:
            d["choices"] = list(self.choices)
        else:
            d["min"], d["max"] = self.lo, self.hi
        return d


Requirement = tuple[str, Callable[[Params], bool]]


def at_least(name: str, n: int) -> Requirement:
    return (f"{name}>={n}", lambda p: int(p[name]) >= n)


def equals(name: str, v: Value) -> Requirement:
    return (f"{name}={v}", lambda p: p[name] == v)


@dataclass(frozen=True)
class Fault:
    """A named bug a user can switch on; ``breaks`` is the property it must violate."""

    name: str
    help: str
    breaks: str
    needs: tuple[Requirement, ...] = ()

    def unmet(self, p: Params) -> list[str]:
        return [text for text, ok in self.needs if not ok(p)]

    @property
    def needs_text(self) -> str:
        return ", ".join(text for text, _ in self.needs)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "help": self.help, "breaks": self.breaks,
                "needs": [text for text, _ in self.needs]}


@dataclass(frozen=True)
class ModelSpec:
    """A parametric model: a generator of a schedule plus its expected values."""

    name: str
    summary: str
    params: tuple[Param, ...]
    faults: tuple[Fault, ...]
    # builder(schedule name, typed parameters, fault or None)
    builder: Callable[[str, dict[str, Value], str | None], Schedule]
    # Cross-parameter checks: returns why the combination is invalid, or None.
    validate: Callable[[dict[str, Value]], str | None] | None = None
    family: str = ""
    phases: tuple[str, ...] = field(default=("prefill", "decode"))

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def fault(self, name: str) -> Fault:
        for f in self.faults:
            if f.name == name:
                return f
        raise KeyError(name)

    def defaults(self) -> dict[str, Value]:
        return {p.name: p.default for p in self.params}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "summary": self.summary, "family": self.family,
                "phases": list(self.phases),
                "params": [p.to_json() for p in self.params],
                "faults": [f.to_json() for f in self.faults]}


# ------------------------------------------------------------------ helpers
def meta(phase: str | None = None, *, step: int | None = None, layer: int | None = None,
         mb: int | None = None, seqs: list[int] | None = None, tokens: tuple[int, int] | None = None,
         sp: tuple[int, int] | None = None) -> Meta:
    """Builder keyword arguments for an op's metadata."""
    d: Meta = {}
    if phase is not None:
        d["phase"] = phase
    if step is not None:
        d["step"] = step
    if layer is not None:
        d["layer"] = layer
    if mb is not None:
        d["mb"] = mb
    if seqs is not None:
        d["seqs"] = list(seqs)
    if tokens is not None:
        d["tokens"] = f"{tokens[0]}:{tokens[1]}"
    if sp is not None:
        d["sp"] = f"{sp[0]}/{sp[1]}"
    return d


def span(lo: int, hi: int) -> str:
    """An axis interval in region syntax: ``3`` or ``0:4``."""
    return str(lo) if hi == lo + 1 else f"{lo}:{hi}"


def split_even(total: int, parts: int) -> list[tuple[int, int]]:
    """``total`` items in ``parts`` contiguous, non-empty pieces, as even as possible."""
    base, extra = divmod(total, parts)
    out, lo = [], 0
    for k in range(parts):
        hi = lo + base + (1 if k < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


def drop_layer(m: Meta) -> Meta:
    return {k: v for k, v in m.items() if k not in ("layer", "sp")}


class Dev:
    """One rank of a model: a :class:`RankBuilder` plus event bookkeeping.

    ``sync(src, dst)`` records an event on stream ``src`` and makes ``dst``
    wait for it.  Work issued to a stream other than ``compute`` marks that
    stream *pending* until ``compute`` waits for an event recorded after it.
    ``close(key)`` records an event on every pending stream (the end of an
    iteration); ``open(key)`` makes ``compute`` wait for those events (the
    start of the next iteration of the same sequence), so every op of one
    decode step ends before the next step starts on this rank and buffers
    used by the previous step's communication can be reused.
    """

    def __init__(self, rb: RankBuilder) -> None:
        self.rb = rb
        self.rank = rb.rank
        self._n = 0
        self.pending: dict[str, bool] = {}
        self.fences: dict[object, list[tuple[str, str]]] = {}

    # -- events ----------------------------------------------------------
    def event(self, tag: str) -> str:
        self._n += 1
        return f"{tag}.{self._n}"

    def sync(self, src: str, dst: str, tag: str, m: Meta, *, skip_wait: bool = False) -> str:
        """Record on ``src``, wait on ``dst`` (unless ``skip_wait``: a fault).
        Nothing is needed between ops of one stream."""
        if src == dst:
            return ""
        e = self.event(tag)
        self.rb.record(e, stream=src, **drop_layer(m))
        if not skip_wait:
            self.rb.wait(e, stream=dst, **drop_layer(m))
            if dst == "compute":
                self.pending[src] = False
        return e

    def record(self, stream: str, tag: str, m: Meta) -> str:
        e = self.event(tag)
        self.rb.record(e, stream=stream, **drop_layer(m))
        return e

    def wait(self, event: str, stream: str, m: Meta) -> None:
        self.rb.wait(event, stream=stream, **drop_layer(m))

    def _work(self, stream: str) -> None:
        if stream != "compute":
            self.pending[stream] = True

    # -- ops ---------------------------------------------------------------
    def compute(self, name: str, m: Meta, *, stream: str = "compute", reads: dict[str, str] | None = None,
                writes: dict[str, str] | None = None, sample: bool = False) -> None:
        self._work(stream)
        extra: Meta = {"sample": True} if sample else {}
        self.rb.compute(name, stream=stream, reads=dict(reads or {}), writes=dict(writes or {}), **m, **extra)

    def coll(self, kind: str, group: str, m: Meta, *, stream: str = "comm", reads: dict[str, str] | None = None,
             writes: dict[str, str] | None = None, size: int | None = None, root: int | None = None,
             name: str | None = None) -> None:
        self._work(stream)
        self.rb.collective(kind, group, stream=stream, reads=dict(reads or {}), writes=dict(writes or {}),
                           size=size, root=root, name=name, **m)

    def send(self, to: int, m: Meta, *, stream: str, channel: str, reads: dict[str, str],
             size: int | None = None) -> None:
        self._work(stream)
        self.rb.send(to, stream=stream, channel=channel, reads=dict(reads), size=size, **m)

    def recv(self, frm: int, m: Meta, *, stream: str, channel: str, writes: dict[str, str],
             size: int | None = None) -> None:
        # A recv only waits; compute still has to sync with it before reading.
        self._work(stream)
        self.rb.recv(frm, stream=stream, channel=channel, writes=dict(writes), size=size, **m)

    # -- iteration fences --------------------------------------------------
    def close(self, key: object, m: Meta) -> None:
        """End of an iteration: record an event on every pending stream."""
        evs = self.fences.setdefault(key, [])
        for stream, pending in sorted(self.pending.items()):
            if pending:
                evs.append((stream, self.record(stream, "done", m)))
                self.pending[stream] = False

    def open(self, key: object, m: Meta, *, skip: tuple[str, ...] = ()) -> None:
        """Start of the next iteration of ``key``: compute waits for its fences,
        except on the streams in ``skip`` (a fault)."""
        for stream, e in self.fences.pop(key, []):
            if stream not in skip:
                self.wait(e, "compute", m)
