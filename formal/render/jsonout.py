"""The stable machine-readable form of a report (``--format json``).

Besides the verdicts, a report carries what is needed to draw its
counterexamples again without solving (``syncproof render``): the schedule
itself (``schedule_doc``, in the schedule file format), every counterexample's
run and op ids, and each violated property's repair hint (``repair``).

A deadlock's ``cycle`` lists its links, each op waiting for the next, with
``blocking``: ``""`` for a link that holds in every run, ``"message"`` for one
that holds only when a message is larger than the transport's buffer,
``"progress"`` for one that holds only when two communicators' kernels do
not run side by side.  A value a receiver declares but its sender did not
carry has ``observation.kind == "message"`` (``a`` the receiver, ``b`` the
sender, ``expected`` the declared value, ``seen`` the carried ones)."""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..errors import UsageError
from ..ir import Schedule, schedule_from_dict, schedule_to_dict
from ..result import Counterexample, CycleStep, Observation, PropertyResult, Report, Run, Verdict

JSON_VERSION = 1


def counterexample_json(s: Schedule, cex: Counterexample) -> dict[str, Any]:
    run = cex.run
    d: dict[str, Any] = {
        "property": cex.property,
        "sentence": cex.sentence,
        "culprits": [s.label(o) for o in cex.culprits],
        "culprit_ids": list(cex.culprits),
        "observation": cex.observation.to_json(),
        "replayed": cex.replayed,
    }
    if cex.replay_note:
        d["replay_note"] = cex.replay_note
    if cex.missing_edge is not None:
        a, b = cex.missing_edge
        d["missing_edge"] = {"from": s.label(a), "to": s.label(b), "ids": [a, b]}
    if cex.candidates:
        d["candidate_ranks"] = list(cex.candidates)
    if cex.cycle:
        d["cycle"] = [{"op": s.label(c.op), "waits_for": s.label(c.next_op), "why": c.why,
                       "blocking": c.blocking, "ids": [c.op, c.next_op]} for c in cex.cycle]
    if run is not None:
        d["complete"] = run.complete
        d["run"] = [
            {"id": op.id, "op": s.label(op), "rank": op.rank, "stream": op.stream,
             "start": run.start[op.id], "end": run.end[op.id]}
            for op in sorted(s.ops, key=lambda o: (run.start[o.id] is None, run.start[o.id] or 0, o.id))
        ]
    return d


def report_json(s: Schedule, rep: Report, timings: bool = True, repair: bool = True,
                embed_schedule: bool = True) -> dict[str, Any]:
    """The report as JSON.  ``repair`` adds a ``repair`` hint to every
    violated result (it re-checks an edited copy of the schedule);
    ``embed_schedule`` adds the schedule itself as ``schedule_doc``."""
    d: dict[str, Any] = {
        "format": JSON_VERSION,
        "syncproof": __version__,
        "schedule": rep.schedule,
        "source": rep.source,
        "ops": rep.ops,
        "engine": rep.engine,
        "exit_code": rep.exit_code,
        "warnings": list(rep.warnings),
        "results": [],
    }
    if rep.decided_by:
        d["choices"] = {"assignments": rep.assignments, "decided_by": rep.decided_by}
    for r in rep.results:
        item: dict[str, Any] = {
            "property": r.property, "verdict": r.verdict.value, "reason": r.reason,
            "obligations": r.obligations, "more": list(r.more),
        }
        if timings:
            item["seconds"] = round(r.seconds, 4)
        sr = r.selection if r.selection is not None else s  # a choice schedule: the selected schedule
        if r.assignment:
            item["assignment"] = list(r.assignment_json)
            item["assignment_text"] = r.assignment
        if r.counterexample is not None:
            item["counterexample"] = counterexample_json(sr, r.counterexample)
            if r.selection is not None and embed_schedule:
                item["selection_doc"] = schedule_to_dict(sr)
        if repair and r.verdict is Verdict.VIOLATED:
            from ..engine.repair import hint_for  # re-checks: only when a hint is asked for

            hint = hint_for(sr, r, rep)
            if hint is not None:
                item["repair"] = hint.to_json()
        d["results"].append(item)
    if timings:
        d["seconds"] = round(rep.seconds, 4)
        d["timings"] = {k: round(v, 4) for k, v in rep.timings}
    if embed_schedule:
        d["schedule_doc"] = schedule_to_dict(s)
    return d


# ------------------------------------------------------------ reading back
def counterexample_from_json(d: dict[str, Any], n_ops: int) -> Counterexample:
    """The counterexample of a report's JSON (the inverse of
    :func:`counterexample_json` for what drawing needs)."""
    run = None
    if "run" in d:
        start: list[int | None] = [None] * n_ops
        end: list[int | None] = [None] * n_ops
        for item in d["run"]:
            start[item["id"]], end[item["id"]] = item["start"], item["end"]
        run = Run(tuple(start), tuple(end))
    cycle = tuple(CycleStep(c["ids"][0], c["ids"][1], c.get("why", ""), c.get("blocking", ""))
                  for c in d.get("cycle", ()) if "ids" in c)
    edge = d.get("missing_edge")
    return Counterexample(
        property=d["property"], sentence=d["sentence"], culprits=tuple(d.get("culprit_ids", ())),
        observation=Observation.from_json(d["observation"]), run=run, cycle=cycle,
        missing_edge=(edge["ids"][0], edge["ids"][1]) if edge else None,
        candidates=tuple(d.get("candidate_ranks", ())), replayed=bool(d.get("replayed", False)),
        replay_note=d.get("replay_note", ""),
    )


def read_report_json(doc: dict[str, Any], where: str = "<report>") -> tuple[Schedule, list[dict[str, Any]]]:
    """The schedule embedded in a report and its results (as JSON items).
    Raises :class:`UsageError` for a report written without ``schedule_doc``."""
    if not isinstance(doc, dict) or "results" not in doc:
        raise UsageError(f"{where}: not a syncproof report (expected the JSON that `check --format json`"
                         " or `check --out` writes)")
    if "schedule_doc" not in doc:
        raise UsageError(f"{where}: the report has no embedded schedule (\"schedule_doc\"); it was written by"
                         " an older syncproof: run `syncproof check --out DIR` again")
    s = schedule_from_dict(doc["schedule_doc"], doc.get("source", where))
    return s, list(doc["results"])


def result_stub(item: dict[str, Any], cex: Counterexample | None) -> PropertyResult:
    """A :class:`PropertyResult` rebuilt from a report item (for renderers)."""
    return PropertyResult(item["property"], Verdict(item["verdict"]), item.get("reason", ""), cex,
                          item.get("obligations", 0), tuple(item.get("more", ())))
