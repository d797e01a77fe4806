"""Repair hints: the smallest change that removes a violation, proved by
re-checking.

For a counterexample, :func:`repair_hint` proposes an edit of the schedule,
applies it to a copy (through ``schedule_to_dict`` / ``schedule_from_dict``,
so the copy goes through the same validation as a file) and re-checks the
property with :func:`~syncproof.engine.check.check_schedule`.  It repeats
for the next counterexample of the same property (a missing event is often
missing on every rank) until the property is proved, no edit helps, or
``max_rounds`` is reached.  The hint says "proved" only when the final
re-check proves the property and no property that held before is broken by
the edit.

Edits, by what went wrong:

* an order missing between two streams of one rank (dataflow, race, phase,
  communicator order): ``record`` a fresh event on the first op's stream
  right after it, ``wait`` for it on the second op's stream right before it;
* an order missing between two ranks (phase: a step starts before the
  previous token is sampled): a ``send``/``recv`` pair on a fresh channel
  from right after the first op to right before the second (directly, or
  from a side stream that waits for an event, so that the first rank's
  stream is not held up);
* a cycle of waits (deadlock) through stream order: issue the waiting op
  before the op it is queued behind;
* collectives issued in a different order than the other members
  (matching): swap the culprit with its neighbouring collective on the group.

Anything else (a value nobody writes, metadata that breaks a phase rule, a
read issued before its writer on the same rank) has no local sync fix, and
the hint says so.  This module uses the solver only through
``check_schedule``.
"""

from __future__ import annotations

import builtins
import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import SyncproofError
from ..ir import Schedule, schedule_from_dict, schedule_to_dict
from ..result import PROPERTIES, Counterexample, PropertyResult, Report, Verdict
from .check import check_schedule

MAX_ROUNDS = 8
AUTO_MAX_OPS = 20_000  # report renderers compute hints by themselves up to this size


@dataclass(frozen=True)
class Hint:
    """A repair hint for one violated property.

    ``status`` is ``proved`` (the re-check of the repaired copy proves the
    property, and breaks nothing that held), ``unproved`` (an edit was tried
    but the re-check does not prove it; ``text`` says why) or ``no_fix`` (no
    local edit applies; ``text`` says why)."""

    property: str
    status: str
    text: str
    steps: tuple[str, ...] = ()
    recheck: tuple[tuple[str, str], ...] = ()  # property -> verdict on the repaired copy
    repaired: Schedule | None = field(default=None, compare=False, repr=False)

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


# ------------------------------------------------------------------ edits
@dataclass(frozen=True)
class _Edit:
    """One change, on op ids of the schedule it applies to."""

    kind: str  # "event", "p2p", "p2p_side", "move", "swap"
    a: int
    b: int


def _short(s: Schedule, o: int) -> str:
    label = s.label(o)
    return label.split(": ", 1)[1] if ": " in label else label


def _lane(s: Schedule, o: int) -> str:
    op = s.ops[o]
    return f"r{op.rank}/{op.stream}"


class _Names:
    """Fresh event, channel and stream names for one schedule."""

    def __init__(self, s: Schedule) -> None:
        self.used = {op.event for op in s.ops if op.event} | {op.channel for op in s.ops} | \
            {op.stream for op in s.ops}
        self.k = 0

    def copy(self) -> _Names:
        dup = _Names.__new__(_Names)
        dup.used, dup.k = set(self.used), self.k
        return dup

    def fresh(self, stem: str) -> str:
        while f"{stem}{self.k}" in self.used:
            self.k += 1
        name = f"{stem}{self.k}"
        self.used.add(name)
        return name


def _apply(s: Schedule, edit: _Edit, names: _Names) -> tuple[Schedule, str]:
    """The edited copy of ``s`` and a sentence describing the edit."""
    doc = copy.deepcopy(schedule_to_dict(s))
    a, b = s.ops[edit.a], s.ops[edit.b]
    ra, rb = doc["ranks"][str(a.rank)], doc["ranks"][str(b.rank)]
    if edit.kind == "event":
        ev = names.fresh("fix")
        rb.insert(b.index, {"op": "wait", "stream": b.stream, "event": ev})  # b comes after a: insert it first
        ra.insert(a.index + 1, {"op": "record", "stream": a.stream, "event": ev})
        text = (f"add record({ev}) on {_lane(s, a.id)} right after {_short(s, a.id)}, and wait({ev}) on"
                f" {_lane(s, b.id)} right before {_short(s, b.id)}")
    elif edit.kind in ("p2p", "p2p_side"):
        ch = names.fresh("fix")
        rb.insert(b.index, {"op": "recv", "stream": b.stream, "from": a.rank, "channel": ch})
        if edit.kind == "p2p":
            ra.insert(a.index + 1, {"op": "send", "stream": a.stream, "to": b.rank, "channel": ch})
            text = (f"add send(->{b.rank},{ch}) on {_lane(s, a.id)} right after {_short(s, a.id)}, and"
                    f" recv(<-{a.rank},{ch}) on {_lane(s, b.id)} right before {_short(s, b.id)}")
        else:
            ev, side = names.fresh("fix"), names.fresh("sync")
            ra[a.index + 1 : a.index + 1] = [
                {"op": "record", "stream": a.stream, "event": ev},
                {"op": "wait", "stream": side, "event": ev},
                {"op": "send", "stream": side, "to": b.rank, "channel": ch},
            ]
            text = (f"add record({ev}) on {_lane(s, a.id)} right after {_short(s, a.id)}, a new stream"
                    f" r{a.rank}/{side} that waits for it and sends on channel {ch}, and recv(<-{a.rank},{ch})"
                    f" on {_lane(s, b.id)} right before {_short(s, b.id)}")
    elif edit.kind == "move":  # issue a right before b (same rank, a issued after b)
        moved = ra.pop(a.index)
        ra.insert(b.index, moved)
        text = f"on rank {a.rank}, issue {_short(s, a.id)} before {_short(s, b.id)} (both on {_lane(s, b.id)})"
    elif edit.kind == "swap":
        ra[a.index], ra[b.index] = ra[b.index], ra[a.index]
        text = f"on rank {a.rank}, swap the issue order of {_short(s, a.id)} and {_short(s, b.id)}"
    else:  # pragma: no cover - a programming error
        raise ValueError(edit.kind)
    return schedule_from_dict(doc, s.source), text


def _order_edits(s: Schedule, a: int, b: int) -> tuple[list[_Edit], str]:
    """Edits that make ``a`` end before ``b`` starts, or why none exists."""
    oa, ob = s.ops[a], s.ops[b]
    if oa.rank == ob.rank:
        if oa.stream == ob.stream:
            return [], (f"{_short(s, b)} is queued before {_short(s, a)} on {_lane(s, a)}; no sync can"
                        " reorder one stream: move it in issue order")
        if oa.index > ob.index:
            return [], (f"on rank {oa.rank}, {_short(s, b)} is issued before {_short(s, a)}, so an event"
                        " recorded after the latter cannot be waited for before the former (such a wait"
                        " is a no-op); issue them in the other order first")
        return [_Edit("event", a, b)], ""
    return [_Edit("p2p", a, b), _Edit("p2p_side", a, b)], ""


def _candidates(s: Schedule, cex: Counterexample) -> tuple[list[_Edit], str]:
    """Candidate edits for one counterexample, best first, or why none exists."""
    prop = cex.property
    if prop == "matching":
        edits: list[_Edit] = []
        for c in cex.culprits:
            op = s.ops[c]
            if not op.kind.is_collective:
                continue
            same = [o for o in s.by_rank[op.rank] if o.kind.is_collective and o.group == op.group]
            i = next(k for k, o in enumerate(same) if o.id == c)
            if i + 1 < len(same):
                edits.append(_Edit("swap", c, same[i + 1].id))
            if i > 0:
                edits.append(_Edit("swap", same[i - 1].id, c))
        return edits, "" if edits else "no reorder of the culprit's collectives applies; see the matching sentence"
    if cex.cycle:
        edits = []
        for st in cex.cycle:
            x, y = s.ops[st.op], s.ops[st.next_op]
            if st.why.startswith("stream order") and x.rank == y.rank and x.index > y.index:
                edits.append(_Edit("move", x.id, y.id))
        return edits, "" if edits else "the cycle has no stream-order link that a reorder could break"
    if cex.missing_edge is None:
        if cex.observation.kind == "meta":
            return [], "the op's own metadata breaks the phase rule; no sync changes that"
        if cex.observation.kind == "read":
            return [], "nothing on this rank writes the expected value before the read; a sync cannot create it"
        return [], "the counterexample names no missing order to add"
    a, b = cex.missing_edge
    edits, why = _order_edits(s, a, b)
    if cex.observation.kind == "overlap":  # either order removes an overlap
        more, _ = _order_edits(s, b, a)
        edits += more
        if edits:
            why = ""
    return edits, why


def _first_cex(rep: Report, prop: str) -> Counterexample | None:
    r = rep.result(prop)
    return r.counterexample if r.verdict is Verdict.VIOLATED else None


def repair_hint(schedule: Schedule, result: PropertyResult, *, report: Report | None = None,
                engine: str = "hybrid", max_rounds: int = MAX_ROUNDS) -> Hint | None:
    """A repair hint for a violated ``result`` of ``schedule``, or ``None``
    when the result is not violated.  ``report`` (the report ``result`` came
    from) saves re-checking the original schedule for the other verdicts."""
    cex = result.counterexample
    if result.verdict is not Verdict.VIOLATED or cex is None:
        return None
    prop = result.property
    current, names = schedule, _Names(schedule)
    steps: list[str] = []
    for _ in range(max_rounds):
        edits, why = _candidates(current, cex)
        if not edits:
            if not steps:
                return Hint(prop, "no_fix", f"no local fix: {why}")
            return _unproved(prop, steps, f"after {len(steps)} change(s) {prop} is still violated and {why}:"
                             f" {cex.sentence}")
        progress = None
        for edit in edits:
            trial = names.copy()
            try:
                cand, text = _apply(current, edit, trial)
            except SyncproofError:
                continue
            rep = check_schedule(cand, (prop,), engine=engine, replay=False, max_cex=1)
            verdict = rep.result(prop).verdict
            nxt = _first_cex(rep, prop)
            # progress: proved, or this counterexample is gone and another one is next
            if verdict is Verdict.PROVED or (nxt is not None and nxt.sentence != cex.sentence):
                names = trial
                progress = (cand, text, verdict, nxt)
                break
        if progress is None:
            tried = "; ".join(_describe(current, e) for e in edits)
            return _unproved(prop, steps, f"tried {tried}, but the re-check still finds: {cex.sentence}")
        current, text, verdict, nxt = progress
        steps.append(text)
        if verdict is Verdict.PROVED:
            return _final(schedule, current, prop, steps, report, engine)
        assert nxt is not None
        cex = nxt
    return _unproved(prop, steps, f"{prop} is still violated after {max_rounds} changes: {cex.sentence}")


def _describe(s: Schedule, edit: _Edit) -> str:
    _, text = _apply(s, edit, _Names(s))
    return text


def _same_shape(text: str) -> tuple[str, tuple[str, ...]]:
    """A step with its rank numbers and fresh names blanked, and the ranks."""
    ranks = tuple(dict.fromkeys(re.findall(r"\br(\d+)/", text) + re.findall(r"on rank (\d+)", text)))
    shape = re.sub(r"\br\d+/", "r*/", text)
    shape = re.sub(r"on rank \d+", "on rank *", shape)
    shape = re.sub(r"\b(fix|sync)\d+\b", r"\1*", shape)
    shape = re.sub(r"(->|<-)\d+", r"\1*", shape)
    return shape, ranks


def _join(steps: Sequence[str]) -> str:
    """The steps as one sentence; a step that repeats the previous one on
    other ranks is folded into "the same on rank N"."""
    out: list[str] = []
    prev_shape: str | None = None
    for step in steps:
        shape, ranks = _same_shape(step)
        if shape == prev_shape and len(ranks) == 1:
            out[-1] += f"; the same on rank {ranks[0]}"
        else:
            out.append(step)
            prev_shape = shape
    return "; then ".join(out)


def _unproved(prop: str, steps: Sequence[str], why: str) -> Hint:
    text = _join(steps) + f" ({why})" if steps else why
    return Hint(prop, "unproved", text, tuple(steps))


def _final(original: Schedule, repaired: Schedule, prop: str, steps: list[str], report: Report | None,
           engine: str) -> Hint:
    """Re-check every property of the repaired copy; the hint is proved when
    ``prop`` is and nothing that held on the original is broken."""
    rep = check_schedule(repaired, PROPERTIES, engine=engine, replay=False, max_cex=1)
    verdicts = tuple((r.property, r.verdict.value) for r in rep.results)
    not_proved = [q for q, v in verdicts if v != "proved" and q != prop]
    broken: list[str] = []
    if not_proved:
        if report is not None:
            before = {r.property: r.verdict for r in report.results}
            missing = [q for q in not_proved if q not in before]
        else:
            before, missing = {}, not_proved
        if missing:
            orig = check_schedule(original, missing, engine=engine, replay=False, max_cex=1)
            before.update({r.property: r.verdict for r in orig.results})
        broken = [q for q in not_proved if before.get(q) is Verdict.PROVED]
    text = _join(steps)
    if rep.result(prop).verdict is not Verdict.PROVED:
        return Hint(prop, "unproved", f"{text} (the full re-check does not prove {prop})", tuple(steps),
                    verdicts, repaired)
    if broken:
        return Hint(prop, "unproved", f"{text} (this proves {prop} but breaks {', '.join(broken)})",
                    tuple(steps), verdicts, repaired)
    still = [q for q, v in verdicts if v != "proved"]
    tail = f"; still not proved: {', '.join(still)}" if still else "; every property is then proved"
    return Hint(prop, "proved", f"{text} (re-check proves {prop}{tail})", tuple(steps), verdicts, repaired)


# ------------------------------------------------------- for the renderers
_CACHE: dict[tuple[int, int, int], tuple[Schedule, PropertyResult, Hint | None]] = {}


def hint_for(schedule: Schedule, result: PropertyResult, report: Report | None = None,
             max_ops: int = AUTO_MAX_OPS) -> Hint | None:
    """:func:`repair_hint`, remembered for the last few results so that the
    text, JSON and picture of one report compute it once.  Above ``max_ops``
    ops it returns a hint that says it was not attempted (call
    :func:`repair_hint` directly)."""
    if result.verdict is not Verdict.VIOLATED or result.counterexample is None:
        return None
    key = (id(schedule), id(result), max_ops)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is schedule and hit[1] is result:
        return hit[2]
    if len(schedule.ops) > max_ops:
        hint: Hint | None = Hint(result.property, "unproved",
                                 f"not attempted: the schedule has {len(schedule.ops)} ops (automatic hints"
                                 f" stop at {max_ops}); call syncproof.engine.repair.repair_hint")
    else:
        hint = repair_hint(schedule, result, report=report, engine=report.engine if report else "hybrid")
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[key] = (schedule, result, hint)
    return hint
