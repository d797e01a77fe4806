"""The stable machine-readable form of a report (``--format json``).

Besides the verdicts, a report carries what is needed to draw its
counterexamples again without solving (``syncproof render``): the schedule
(embedded as ``schedule_doc`` up to :data:`EMBED_MAX_OPS` ops; above that a
``schedule_ref`` names the schedule file and its sha256, so the report grows
with the answer, not with the schedule), every counterexample's run and op
ids, and each violated property's repair hint (``repair``, computed once by
the command and handed in: this module never computes one).

A large schedule's counterexample stores a *partial* run
(``run_partial``): the times of the ops its picture and trace show and of
every op a replay of it looks at (``executor.replay.replay_needs``); the
replay rebuilds the other events (see ``Run.known``).

A deadlock's ``cycle`` lists its links, each op waiting for the next, with
``blocking``: ``""`` for a link that holds in every run, ``"message"`` for one
that holds only when a message is larger than the transport's buffer,
``"progress"`` for one that holds only when two communicators' kernels do
not run side by side.  A value a receiver declares but its sender did not
carry has ``observation.kind == "message"`` (``a`` the receiver, ``b`` the
sender, ``expected`` the declared value, ``seen`` the carried ones).

Reading a report back (:func:`read_report_json`, :func:`counterexample_from_json`)
checks every field it uses: a wrong type, a missing field, an op id out of
range, a run of the wrong length or a schedule file whose hash differs is a
:class:`~syncproof.errors.ScheduleError` naming the file and the field."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ScheduleError
from ..inputs import decode_text, read_bytes
from ..ir import Schedule, loads, schedule_from_dict, schedule_to_dict
from ..result import Counterexample, CycleStep, Hint, Observation, PropertyResult, Report, Run, Verdict

JSON_VERSION = 1
#: Above this many ops a report references its schedule instead of embedding
#: it, and stores each counterexample's run for its cone only.
EMBED_MAX_OPS = 5000
#: The largest time or op id a report may give (JSON numbers beyond it are refused).
MAX_REPORT_INT = 2**53


def file_ref(path: str | Path, data: bytes | None = None) -> dict[str, Any]:
    """A ``schedule_ref`` to a schedule file: its absolute path and the
    sha256 of its bytes (read again here unless ``data`` is given)."""
    p = Path(path)
    if data is None:
        data = read_bytes(p, "a schedule file (JSON, format v1)")
    return {"path": os.path.abspath(p), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def model_ref(model: str, params: Mapping[str, str], fault: str | None) -> dict[str, Any]:
    """A ``schedule_ref`` to a model-built schedule (no file: ``check --out``
    writes the schedule beside the report and references that file instead)."""
    return {"model": model, "params": dict(params), "fault": fault}


def counterexample_json(s: Schedule, cex: Counterexample, keep: Collection[int] | None = None) -> dict[str, Any]:
    """A counterexample as JSON; ``keep``: store the run's times for these ops
    only (a partial run; default every op)."""
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
        ids = keep if keep is not None else run.known
        if ids is not None:
            ops = [s.ops[o] for o in sorted(set(ids))]
            d["run_partial"] = {"ops": len(s.ops), "stored": len(ops)}
        else:
            ops = list(s.ops)
        d["run"] = [
            {"id": op.id, "op": s.label(op), "rank": op.rank, "stream": op.stream,
             "start": run.start[op.id], "end": run.end[op.id]}
            for op in sorted(ops, key=lambda o: (run.start[o.id] is None, run.start[o.id] or 0, o.id))
        ]
    return d


def report_json(s: Schedule, rep: Report, timings: bool = True, hints: Mapping[str, Hint] | None = None, *,
                ref: Mapping[str, Any] | None = None, cones: Mapping[str, Collection[int]] | None = None,
                embed_max_ops: int | None = None, full_runs: bool = False) -> dict[str, Any]:
    """The report as JSON.  ``hints`` (property -> repair hint, computed once
    by the caller) adds a ``repair`` item to those results.

    Up to ``embed_max_ops`` (default :data:`EMBED_MAX_OPS`) ops the schedule is embedded (``schedule_doc``)
    and runs are stored whole; above, ``ref`` (:func:`file_ref` or
    :func:`model_ref`) is written as ``schedule_ref`` and each
    counterexample's run keeps the ops ``cones[property]`` (by default
    ``cone.stored_ops``), or every op with ``full_runs``."""
    from .cone import stored_ops  # (imports the executor's replay needs: only when a report is written)

    small = len(s.ops) <= (EMBED_MAX_OPS if embed_max_ops is None else embed_max_ops)
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
        cex = r.counterexample
        if cex is not None:
            keep: Collection[int] | None = None
            if not small and not full_runs and cex.run is not None:
                keep = cones[r.property] if cones and r.property in cones else stored_ops(sr, cex)
            item["counterexample"] = counterexample_json(sr, cex, keep)
            if r.selection is not None and small:
                item["selection_doc"] = schedule_to_dict(sr)
        hint = hints.get(r.property) if hints else None
        if hint is not None and r.verdict is Verdict.VIOLATED:
            item["repair"] = hint.to_json()
        d["results"].append(item)
    if timings:
        d["seconds"] = round(rep.seconds, 4)
        d["timings"] = {k: round(v, 4) for k, v in rep.timings}
    if small:
        d["schedule_doc"] = schedule_to_dict(s)
    else:
        d["schedule_ref"] = dict(ref) if ref is not None else {"missing": "no schedule file to reference"}
    return d


# ------------------------------------------------------------ reading back
def _fail(where: str, field: str, what: str) -> ScheduleError:
    return ScheduleError(f"field {field}: {what}", where)


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "a number",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _obj(v: Any, where: str, field: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _fail(where, field, f"expected an object, got {_kind(v)}")
    return v


def _list(v: Any, where: str, field: str) -> list[Any]:
    if not isinstance(v, list):
        raise _fail(where, field, f"expected a list, got {_kind(v)}")
    return v


def _str(v: Any, where: str, field: str) -> str:
    if not isinstance(v, str):
        raise _fail(where, field, f"expected a string, got {_kind(v)}")
    return v


def _int(v: Any, where: str, field: str, lo: int = 0, hi: int = MAX_REPORT_INT) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _fail(where, field, f"expected an integer, got {_kind(v)}")
    if not lo <= v < hi:
        raise _fail(where, field, f"{v} is out of range ({lo} to {hi - 1})")
    return v


def _opt_int(v: Any, where: str, field: str) -> int | None:
    return None if v is None else _int(v, where, field)


def _op_id(v: Any, n_ops: int, where: str, field: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _fail(where, field, f"expected an op id (an integer), got {_kind(v)}")
    if not 0 <= v < n_ops:
        raise _fail(where, field, f"op id {v} is out of range (the schedule has {n_ops} ops)")
    return v


def _strs(v: Any, where: str, field: str) -> tuple[str, ...]:
    return tuple(_str(x, where, f"{field}[{i}]") for i, x in enumerate(_list(v, where, field)))


def observation_from_json(v: Any, n_ops: int, where: str, field: str = "observation") -> Observation:
    d = _obj(v, where, field)
    ops = {k: (_op_id(d[k], n_ops, where, f"{field}.{k}") if d.get(k) is not None else None) for k in ("a", "b")}
    return Observation(
        kind=_str(d.get("kind"), where, f"{field}.kind"), a=ops["a"], b=ops["b"],
        region=_str(d.get("region", ""), where, f"{field}.region"),
        expected=_str(d.get("expected", ""), where, f"{field}.expected"),
        seen=_strs(d.get("seen", []), where, f"{field}.seen"),
        blocked=tuple(_op_id(x, n_ops, where, f"{field}.blocked[{i}]")
                      for i, x in enumerate(_list(d.get("blocked", []), where, f"{field}.blocked"))),
    )


def _pair(v: Any, n_ops: int, where: str, field: str) -> tuple[int, int]:
    ids = _list(v, where, field)
    if len(ids) != 2:
        raise _fail(where, field, f"expected 2 op ids, got {len(ids)}")
    return _op_id(ids[0], n_ops, where, f"{field}[0]"), _op_id(ids[1], n_ops, where, f"{field}[1]")


def _run_from_json(d: dict[str, Any], n_ops: int, where: str, field: str) -> Run:
    items = _list(d["run"], where, f"{field}.run")
    partial = d.get("run_partial")
    if partial is not None:
        _obj(partial, where, f"{field}.run_partial")
    elif len(items) != n_ops:
        raise _fail(where, f"{field}.run", f"the run gives {len(items)} ops but the schedule has {n_ops}"
                    " (and the report does not mark it run_partial)")
    start: list[int | None] = [None] * n_ops
    end: list[int | None] = [None] * n_ops
    seen: set[int] = set()
    for i, raw in enumerate(items):
        f = f"{field}.run[{i}]"
        item = _obj(raw, where, f)
        o = _op_id(item.get("id"), n_ops, where, f"{f}.id")
        if o in seen:
            raise _fail(where, f"{f}.id", f"op {o} appears twice in the run")
        seen.add(o)
        st, en = _opt_int(item.get("start"), where, f"{f}.start"), _opt_int(item.get("end"), where, f"{f}.end")
        if en is not None and (st is None or en < st):
            raise _fail(where, f, f"op {o} ends at {en} but starts at {st}")
        start[o], end[o] = st, en
    return Run(tuple(start), tuple(end), tuple(sorted(seen)) if partial is not None else None)


def counterexample_from_json(d: Any, n_ops: int, where: str = "<report>",
                             field: str = "counterexample") -> Counterexample:
    """The counterexample of a report's JSON (the inverse of
    :func:`counterexample_json` for what drawing needs); every field is
    checked (a ScheduleError names ``where`` and the field)."""
    d = _obj(d, where, field)
    run = _run_from_json(d, n_ops, where, field) if "run" in d else None
    cycle = []
    for i, c in enumerate(_list(d.get("cycle", []), where, f"{field}.cycle")):
        c = _obj(c, where, f"{field}.cycle[{i}]")
        if "ids" not in c:
            continue
        a, b = _pair(c["ids"], n_ops, where, f"{field}.cycle[{i}].ids")
        cycle.append(CycleStep(a, b, _str(c.get("why", ""), where, f"{field}.cycle[{i}].why"),
                               _str(c.get("blocking", ""), where, f"{field}.cycle[{i}].blocking")))
    edge = d.get("missing_edge")
    missing = _pair(_obj(edge, where, f"{field}.missing_edge").get("ids"), n_ops, where,
                    f"{field}.missing_edge.ids") if edge is not None else None
    return Counterexample(
        property=_str(d.get("property"), where, f"{field}.property"),
        sentence=_str(d.get("sentence"), where, f"{field}.sentence"),
        culprits=tuple(_op_id(x, n_ops, where, f"{field}.culprit_ids[{i}]")
                       for i, x in enumerate(_list(d.get("culprit_ids", []), where, f"{field}.culprit_ids"))),
        observation=observation_from_json(d.get("observation"), n_ops, where, f"{field}.observation"),
        run=run, cycle=tuple(cycle), missing_edge=missing,
        candidates=tuple(_int(x, where, f"{field}.candidate_ranks[{i}]") for i, x in
                         enumerate(_list(d.get("candidate_ranks", []), where, f"{field}.candidate_ranks"))),
        replayed=d.get("replayed") is True,
        replay_note=_str(d.get("replay_note", ""), where, f"{field}.replay_note"),
    )


def _referenced_schedule(doc: dict[str, Any], where: str, report_dir: Path | None) -> Schedule:
    ref = _obj(doc["schedule_ref"], where, "schedule_ref")
    if "model" in ref and "path" not in ref:
        raise _fail(where, "schedule_ref", f"the schedule was built by model {ref.get('model')!r} and not saved;"
                    " run `syncproof check --model ... --out DIR` to write it beside the report")
    if "path" not in ref:
        raise _fail(where, "schedule_ref", "the report names no schedule file (field path)")
    path = Path(_str(ref["path"], where, "schedule_ref.path"))
    want = _str(ref.get("sha256"), where, "schedule_ref.sha256")
    tries = [report_dir / path.name] if report_dir is not None and not path.is_absolute() else []
    rel = ref.get("relative")
    if isinstance(rel, str) and report_dir is not None:
        tries.insert(0, report_dir / rel)
    tries.append(path)
    chosen = next((p for p in tries if p.is_file()), path)
    data = read_bytes(chosen, "the schedule file the report references")
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise ScheduleError(f"field schedule_ref.sha256: {chosen} has sha256 {got}, not the {want} the report"
                            " was written for (the schedule changed since it was checked)", where)
    return loads(decode_text(data, str(chosen)), str(chosen))


def read_report_json(doc: Any, where: str = "<report>", report_dir: Path | None = None
                     ) -> tuple[Schedule, list[dict[str, Any]]]:
    """The schedule of a report (embedded, or the file its ``schedule_ref``
    names, checked against its sha256) and its results (as JSON items).
    A malformed report is a ScheduleError naming ``where`` and the field."""
    if not isinstance(doc, dict) or "results" not in doc:
        raise ScheduleError("not a syncproof report (expected the JSON that `check --format json` or"
                            " `check --out` writes: an object with results)", where)
    results = _list(doc["results"], where, "results")
    for i, item in enumerate(results):
        _obj(item, where, f"results[{i}]")
    if "schedule_doc" in doc:
        s = schedule_from_dict(_obj(doc["schedule_doc"], where, "schedule_doc"),
                               f"{where}: schedule_doc")
    elif "schedule_ref" in doc:
        s = _referenced_schedule(doc, where, report_dir)
    else:
        raise ScheduleError("the report has no schedule (neither \"schedule_doc\" nor \"schedule_ref\"); it"
                            " was written by an older syncproof: run `syncproof check --out DIR` again", where)
    return s, list(results)


def result_stub(item: dict[str, Any], cex: Counterexample | None, where: str = "<report>") -> PropertyResult:
    """A :class:`PropertyResult` rebuilt from a report item (for renderers)."""
    verdict = _str(item.get("verdict"), where, "verdict")
    if verdict not in {v.value for v in Verdict}:
        raise _fail(where, "verdict", f"{verdict!r} is not proved, violated or unknown")
    return PropertyResult(_str(item.get("property"), where, "property"), Verdict(verdict),
                          _str(item.get("reason", ""), where, "reason"), cex,
                          _int(item.get("obligations", 0), where, "obligations"),
                          _strs(item.get("more", []), where, "more"))
