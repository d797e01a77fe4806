"""The stable machine-readable form of a report (``--format json``)."""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..ir import Schedule
from ..result import Counterexample, Report

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
        d["cycle"] = [{"op": s.label(c.op), "waits_for": s.label(c.next_op), "why": c.why}
                      for c in cex.cycle]
    if run is not None:
        d["complete"] = run.complete
        d["run"] = [
            {"id": op.id, "op": s.label(op), "rank": op.rank, "stream": op.stream,
             "start": run.start[op.id], "end": run.end[op.id]}
            for op in sorted(s.ops, key=lambda o: (run.start[o.id] is None, run.start[o.id] or 0, o.id))
        ]
    return d


def report_json(s: Schedule, rep: Report, timings: bool = True) -> dict[str, Any]:
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
    for r in rep.results:
        item: dict[str, Any] = {
            "property": r.property, "verdict": r.verdict.value, "reason": r.reason,
            "obligations": r.obligations, "more": list(r.more),
        }
        if timings:
            item["seconds"] = round(r.seconds, 4)
        if r.counterexample is not None:
            item["counterexample"] = counterexample_json(s, r.counterexample)
        d["results"].append(item)
    if timings:
        d["seconds"] = round(rep.seconds, 4)
        d["timings"] = {k: round(v, 4) for k, v in rep.timings}
    return d
